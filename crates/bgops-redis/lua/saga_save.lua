-- Fenced compare-and-set of a saga plus its history entries, in one step.
-- KEYS: saga, history. ARGV: base, fence, expected version, doc, status, owner?, fence of
--       the lease to store, its expiry ms, history entries...
-- Returns {'ok'} | {'not_found'} | {'lease_lost'} | {'version_conflict', found}
local rec, hist, base = KEYS[1], KEYS[2], ARGV[1]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
local cur = redis.call('HMGET', rec, 'status', 'lfence', 'version', 'tenant', 'created',
  'fence_max', 'id')
if not cur[1] then return {'not_found'} end
local version, created = tonumber(cur[3]), tonumber(cur[5])
if not version or not created or not cur[4] or not cur[7] then
  return corrupt(rec, 'version, created, tenant or id missing')
end
if tonumber(cur[2] or '0') ~= tonumber(ARGV[2]) then return {'lease_lost'} end
if version ~= tonumber(ARGV[3]) then return {'version_conflict', ms(version)} end
local status = ARGV[5]
redis.call('HSET', rec, 'doc', ARGV[4], 'status', status, 'version', version + 1)
local lexp = nil
local owner = opt(ARGV[6])
if owner then
  lexp = tonumber(ARGV[8])
  local fence_max = math.max(tonumber(cur[6] or '0') or 0, tonumber(ARGV[7]))
  redis.call('HSET', rec, 'lowner', owner, 'lfence', ARGV[7], 'lexp', ARGV[8],
    'fence_max', fence_max)
else
  redis.call('HDEL', rec, 'lowner', 'lfence', 'lexp')
end
if cur[1] ~= status then
  saga_index_remove(base, cur[7], cur[1], cur[4])
  saga_index_add(base, cur[7], status, cur[4], created, lexp)
elseif active_status(status) then
  -- Same status, same tenant: only the recovery score (the lease expiry) can move.
  redis.call('ZADD', base .. 'active', lexp or 0, cur[7])
end
if #ARGV >= 9 then redis.call('RPUSH', hist, unpack(ARGV, 9)) end
return {'ok'}
