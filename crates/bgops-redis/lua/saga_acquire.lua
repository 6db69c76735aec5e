-- Takes a saga's executor lease unless another owner holds a live one; the fence rises
-- above every earlier one and the version is incremented.
-- KEYS: saga, active index. ARGV: owner, lease_ms.
-- Returns {'ok', HGETALL} | {'held'} | {'not_found'}
local rec, active = KEYS[1], KEYS[2]
local bad = wrong_type(rec, 'hash') or wrong_type(active, 'zset')
if bad then return bad end
local cur = redis.call('HMGET', rec, 'status', 'lowner', 'lexp', 'fence_max', 'version')
if not cur[1] then return {'not_found'} end
local now = now_ms()
local version, fence_max = tonumber(cur[5]), tonumber(cur[4] or '0')
if not version or not fence_max then
  return corrupt(rec, 'version or fence_max missing or not a number')
end
local held_until = 0
if cur[2] then
  held_until = tonumber(cur[3])
  if not held_until then return corrupt(rec, 'field lexp is missing or not a number') end
end
if cur[2] and cur[2] ~= ARGV[1] and held_until > now then return {'held'} end
local fence = fence_max + 1
local exp = now + tonumber(ARGV[2])
redis.call('HSET', rec, 'lowner', ARGV[1], 'lfence', fence, 'lexp', ms(exp),
  'fence_max', fence, 'version', version + 1)
if active_status(cur[1]) then redis.call('ZADD', active, exp, rec) end
return {'ok', redis.call('HGETALL', rec)}
