-- Insert-if-absent of a saga, deduplicated by id and by tenant + idempotency key.
-- KEYS: saga (hash), history (list)
-- ARGV: base, id, doc, status, tenant, idempotency_key?, created_ms, version, owner?,
--       fence, lease_expires_ms
-- Returns {'created' | 'existing', HGETALL}
local rec, base = KEYS[1], ARGV[1]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
if redis.call('EXISTS', rec) == 1 then return {'existing', redis.call('HGETALL', rec)} end
local ikey = opt(ARGV[6])
local keymap
if ikey then
  keymap = base .. 'key:' .. enc(ARGV[5]) .. ':' .. ikey
  local other = redis.call('GET', keymap)
  if other then
    local other_rec = base .. 's:' .. other
    if redis.call('EXISTS', other_rec) == 1 then
      return {'existing', redis.call('HGETALL', other_rec)}
    end
  end
end
redis.call('HSET', rec, 'id', ARGV[2], 'doc', ARGV[3], 'status', ARGV[4], 'tenant', ARGV[5],
  'created', ARGV[7], 'version', ARGV[8], 'fence_max', ARGV[10])
local lexp = nil
local owner = opt(ARGV[9])
if owner then
  redis.call('HSET', rec, 'lowner', owner, 'lfence', ARGV[10], 'lexp', ARGV[11])
  lexp = tonumber(ARGV[11])
end
if ikey then
  redis.call('HSET', rec, 'ikey', ikey)
  redis.call('SET', keymap, ARGV[2])
end
saga_index_add(base, ARGV[2], ARGV[4], ARGV[5], tonumber(ARGV[7]), lexp)
return {'created', redis.call('HGETALL', rec)}
