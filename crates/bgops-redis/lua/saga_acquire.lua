-- Takes a saga's executor lease unless another owner holds a live one; the fence rises
-- above every earlier one and the version is incremented.
-- KEYS: saga. ARGV: base, owner, lease_ms. Returns {'ok', HGETALL} | {'held'} | {'not_found'}
local rec, base = KEYS[1], ARGV[1]
local bad = wrong_type(rec, 'hash') or wrong_type(base .. 'active', 'zset')
if bad then return bad end
local cur = redis.call('HMGET', rec, 'status', 'lowner', 'lexp', 'fence_max', 'version', 'id')
if not cur[1] then return {'not_found'} end
local now = now_ms()
local version, fence_max = tonumber(cur[5]), tonumber(cur[4] or '0')
if not version or not fence_max or not cur[6] then
  return corrupt(rec, 'version, fence_max or id missing or not a number')
end
local held_until = 0
if cur[2] then
  held_until = tonumber(cur[3])
  if not held_until then return corrupt(rec, 'field lexp is missing or not a number') end
end
if cur[2] and cur[2] ~= ARGV[2] and held_until > now then return {'held'} end
local fence = fence_max + 1
local exp = now + tonumber(ARGV[3])
redis.call('HSET', rec, 'lowner', ARGV[2], 'lfence', fence, 'lexp', ms(exp),
  'fence_max', fence, 'version', version + 1)
if active_status(cur[1]) then redis.call('ZADD', base .. 'active', exp, cur[6]) end
return {'ok', redis.call('HGETALL', rec)}
