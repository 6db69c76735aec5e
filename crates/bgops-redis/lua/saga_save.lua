-- Fenced compare-and-set of a saga plus its history events, in one step. Lease times come
-- from the server's clock only.
-- KEYS: saga, history. ARGV: base, fence, expected version, doc, status, owner? (none
--       releases the lease), fence of the lease to store, renew_ms ('' keeps the stored
--       expiry), history events...
-- Returns {'ok', lease expiry ms | ''} | {'not_found'} | {'lease_lost'} |
--         {'version_conflict', found}
local rec, hist, base = KEYS[1], KEYS[2], ARGV[1]
local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list')
if bad then return bad end
local cur = redis.call('HMGET', rec, 'status', 'lfence', 'version', 'tenant', 'created',
  'fence_max', 'id', 'lexp')
if not cur[1] then return {'not_found'} end
local version, created = tonumber(cur[3]), tonumber(cur[5])
local stored_fence, fence_max = tonumber(cur[2] or '0'), tonumber(cur[6] or '0')
if not version or not created or not cur[4] or not cur[7] or not stored_fence
    or not fence_max then
  return corrupt(rec, 'version, created, tenant, id, lfence or fence_max missing or bad')
end
if stored_fence ~= tonumber(ARGV[2]) then return {'lease_lost'} end
if version ~= tonumber(ARGV[3]) then return {'version_conflict', ms(version)} end
local status = ARGV[5]
local owner = opt(ARGV[6])
local lexp = nil
if owner then
  if ARGV[8] ~= '' then
    lexp = now_ms() + tonumber(ARGV[8])
  elseif cur[8] then
    lexp = tonumber(cur[8])
    if not lexp then return corrupt(rec, 'field lexp is not a number') end
  else
    -- No lease stored and none renewed: the new one is already expired.
    lexp = now_ms()
  end
end
bad = saga_index_check(base, cur[1], status, cur[4])
if bad then return bad end
-- Everything read is checked: the writes cannot fail half way.
redis.call('HSET', rec, 'doc', ARGV[4], 'status', status, 'version', version + 1)
if owner then
  local new_max = math.max(fence_max, tonumber(ARGV[7]))
  redis.call('HSET', rec, 'lowner', owner, 'lfence', ARGV[7], 'lexp', ms(lexp),
    'fence_max', new_max)
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
if lexp then return {'ok', ms(lexp)} end
return {'ok', ''}
