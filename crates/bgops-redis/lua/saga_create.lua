-- Insert-if-absent of a saga, deduplicated by id and by tenant + idempotency key; its
-- first history events are stored in the same step.
-- KEYS: saga (hash), history (list), key mapping (string; the saga key again when there is
--       no idempotency key), then the 16 indexes (saga_common.lua)
-- ARGV: id, doc, status, tenant, has_ikey ('1' | '0'), idempotency_key, created_ms,
--       version, owner (or ''), fence, lease_ms, history events...
-- Returns {'created', lease_expires_ms | ''} | {'existing', HGETALL}
local rec, hist, keymap = KEYS[1], KEYS[2], KEYS[3]
local ix = saga_indexes(4)
local has_ikey = ARGV[5] == '1'
local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list')
if bad then return bad end
if redis.call('EXISTS', rec) == 1 then return {'existing', redis.call('HGETALL', rec)} end
if has_ikey then
  bad = wrong_type(keymap, 'string')
  if bad then return bad end
  -- The mapping holds the other saga's hash key (written by this script from KEYS).
  local other = redis.call('GET', keymap)
  if other then
    bad = wrong_type(other, 'hash')
    if bad then return bad end
    if redis.call('EXISTS', other) == 1 then
      return {'existing', redis.call('HGETALL', other)}
    end
  end
end
bad = check_zsets(saga_touched(ix, nil, ARGV[3]))
if bad then return bad end
-- Everything read is checked: the writes below cannot fail half way.
local lexp = nil
local fields = {'id', ARGV[1], 'doc', ARGV[2], 'status', ARGV[3], 'tenant', ARGV[4],
  'created', ARGV[7], 'version', ARGV[8], 'fence_max', ARGV[10]}
if ARGV[9] ~= '' then
  lexp = now_ms() + tonumber(ARGV[11])
  for _, v in ipairs({'lowner', ARGV[9], 'lfence', ARGV[10], 'lexp', ms(lexp)}) do
    fields[#fields + 1] = v
  end
end
if has_ikey then
  fields[#fields + 1] = 'ikey'
  fields[#fields + 1] = ARGV[6]
end
redis.call('HSET', rec, unpack(fields))
if has_ikey then redis.call('SET', keymap, rec) end
saga_index_add(ix, rec, ARGV[3], tonumber(ARGV[7]), lexp)
if #ARGV >= 12 then redis.call('RPUSH', hist, unpack(ARGV, 12)) end
if lexp then return {'created', ms(lexp)} end
return {'created', ''}
