-- Insert-if-absent of a saga, deduplicated by id and by tenant + idempotency key; its
-- first history events are stored in the same step.
-- KEYS: saga (hash), history (list)
-- ARGV: base, id, doc, status, tenant, idempotency_key?, created_ms, version, owner?,
--       fence, lease_ms, history events...
-- Returns {'created', lease_expires_ms | ''} | {'existing', HGETALL}
local rec, hist, base = KEYS[1], KEYS[2], ARGV[1]
local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list')
if bad then return bad end
if redis.call('EXISTS', rec) == 1 then return {'existing', redis.call('HGETALL', rec)} end
local ikey = opt(ARGV[6])
local keymap
if ikey then
  keymap = base .. 'key:' .. enc(ARGV[5]) .. ':' .. ikey
  bad = wrong_type(keymap, 'string')
  if bad then return bad end
  local other = redis.call('GET', keymap)
  if other then
    local other_rec = base .. 's:' .. other
    bad = wrong_type(other_rec, 'hash')
    if bad then return bad end
    if redis.call('EXISTS', other_rec) == 1 then
      return {'existing', redis.call('HGETALL', other_rec)}
    end
  end
end
bad = saga_index_check(base, ARGV[4], ARGV[4], ARGV[5])
if bad then return bad end
local lexp = nil
local fields = {'id', ARGV[2], 'doc', ARGV[3], 'status', ARGV[4], 'tenant', ARGV[5],
  'created', ARGV[7], 'version', ARGV[8], 'fence_max', ARGV[10]}
local owner = opt(ARGV[9])
if owner then
  lexp = now_ms() + tonumber(ARGV[11])
  for _, v in ipairs({'lowner', owner, 'lfence', ARGV[10], 'lexp', ms(lexp)}) do
    fields[#fields + 1] = v
  end
end
if ikey then
  fields[#fields + 1] = 'ikey'
  fields[#fields + 1] = ikey
end
redis.call('HSET', rec, unpack(fields))
if ikey then redis.call('SET', keymap, ARGV[2]) end
saga_index_add(base, ARGV[2], ARGV[4], ARGV[5], tonumber(ARGV[7]), lexp)
if #ARGV >= 12 then redis.call('RPUSH', hist, unpack(ARGV, 12)) end
if lexp then return {'created', ms(lexp)} end
return {'created', ''}
