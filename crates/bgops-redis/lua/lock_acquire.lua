-- Takes a lock if free, with a fencing number that rises with every acquisition.
-- KEYS: lock (string: owner token), fence counter, bucket's held index (zset)
-- ARGV: token, ttl_ms, name. Returns {'ok', fence, expires_ms} | {'held'}
local lock, fence_key, held = KEYS[1], KEYS[2], KEYS[3]
local bad = wrong_type(lock, 'string')
if bad then return bad end
local now = now_ms()
local ttl = tonumber(ARGV[2])
if not redis.call('SET', lock, ARGV[1], 'NX', 'PX', ttl) then return {'held'} end
local fence = redis.call('INCR', fence_key)
redis.call('ZADD', held, now + ttl, ARGV[3])
return {'ok', fence, ms(now + ttl)}
