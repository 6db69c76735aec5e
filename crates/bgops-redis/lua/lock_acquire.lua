-- Takes a lock if free, with a fencing number that rises with every acquisition.
-- KEYS: lock (string: owner token), fence counter, bucket's held index (zset)
-- ARGV: token, ttl_ms, name. Returns {'ok', fence, expires_ms} | {'held'}
-- Everything read is checked before the first write (Lua does not roll back): a corrupt
-- counter or index must not leave a lock held by nobody.
local lock, fence_key, held = KEYS[1], KEYS[2], KEYS[3]
local bad = wrong_type(lock, 'string') or wrong_type(fence_key, 'string')
  or wrong_type(held, 'zset')
if bad then return bad end
if redis.call('EXISTS', lock) == 1 then return {'held'} end
local last = redis.call('GET', fence_key)
if last and not tonumber(last) then return corrupt(fence_key, 'not a counter: ' .. last) end
local now = now_ms()
local ttl = tonumber(ARGV[2])
redis.call('SET', lock, ARGV[1], 'PX', ttl)
local fence = redis.call('INCR', fence_key)
redis.call('ZADD', held, now + ttl, ARGV[3])
return {'ok', fence, ms(now + ttl)}
