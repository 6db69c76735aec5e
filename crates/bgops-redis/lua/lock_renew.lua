-- Extends a lock, only for its owner. KEYS: lock, held index. ARGV: token, ttl_ms, name
-- Returns {'ok', expires_ms} | {'lost'}
local lock, held = KEYS[1], KEYS[2]
local bad = wrong_type(lock, 'string') or wrong_type(held, 'zset')
if bad then return bad end
local now = now_ms()
if redis.call('GET', lock) ~= ARGV[1] then return {'lost'} end
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', lock, ttl)
redis.call('ZADD', held, now + ttl, ARGV[3])
return {'ok', ms(now + ttl)}
