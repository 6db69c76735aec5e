-- Fenced compare-and-set of a saga plus its history events, in one step. Lease times come
-- from the server's clock only.
-- KEYS: saga, history, then the 16 indexes of its tenant (saga_common.lua)
-- ARGV: fence, expected version, doc, status, tenant, owner ('' releases the lease),
--       fence of the lease to store, renew_ms ('' keeps the stored expiry), events...
-- Returns {'ok', lease expiry ms | ''} | {'not_found'} | {'lease_lost'} |
--         {'version_conflict', found} | {'tenant_changed', stored tenant}
local rec, hist = KEYS[1], KEYS[2]
local ix = saga_indexes(3)
local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list')
if bad then return bad end
local cur = redis.call('HMGET', rec, 'status', 'lfence', 'version', 'tenant', 'created',
  'fence_max', 'lexp')
if not cur[1] then return {'not_found'} end
local version, created = tonumber(cur[3]), tonumber(cur[5])
local stored_fence, fence_max = tonumber(cur[2] or '0'), tonumber(cur[6] or '0')
if not version or not created or not cur[4] or not stored_fence or not fence_max
    or not SAGA_STATUS[cur[1]] then
  return corrupt(rec, 'status, version, created, tenant, lfence or fence_max missing or bad')
end
if stored_fence ~= tonumber(ARGV[1]) then return {'lease_lost'} end
if version ~= tonumber(ARGV[2]) then return {'version_conflict', ms(version)} end
if cur[4] ~= ARGV[5] then return {'tenant_changed', cur[4]} end
local status = ARGV[4]
local owner = ARGV[6]
local lexp = nil
if owner ~= '' then
  if ARGV[8] ~= '' then
    lexp = now_ms() + tonumber(ARGV[8])
  elseif cur[7] then
    lexp = tonumber(cur[7])
    if not lexp then return corrupt(rec, 'field lexp is not a number') end
  else
    -- No lease stored and none renewed: the new one is already expired.
    lexp = now_ms()
  end
end
bad = check_zsets(saga_touched(ix, cur[1], status))
if bad then return bad end
-- Everything read is checked: the writes below cannot fail half way.
if owner ~= '' then
  local new_max = math.max(fence_max, tonumber(ARGV[7]))
  redis.call('HSET', rec, 'doc', ARGV[3], 'status', status, 'version', version + 1,
    'lowner', owner, 'lfence', ARGV[7], 'lexp', ms(lexp), 'fence_max', new_max)
else
  redis.call('HSET', rec, 'doc', ARGV[3], 'status', status, 'version', version + 1)
  redis.call('HDEL', rec, 'lowner', 'lfence', 'lexp')
end
if cur[1] ~= status then
  saga_index_move(ix, rec, cur[1], status, created, lexp)
else
  -- Same status, same tenant: only the recovery score (the lease expiry) or the
  -- retention score (a write to a finished saga, e.g. its lease released) can move.
  saga_index_state(ix, rec, status, status, lexp)
end
if #ARGV >= 9 then redis.call('RPUSH', hist, unpack(ARGV, 9)) end
if lexp then return {'ok', ms(lexp)} end
return {'ok', ''}
