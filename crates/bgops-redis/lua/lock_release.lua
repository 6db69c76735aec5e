-- Compare-and-delete: releases a lock only for its owner.
-- KEYS: lock, held index. ARGV: token, name. Returns 1 | 0
local lock, held = KEYS[1], KEYS[2]
local bad = wrong_type(lock, 'string') or wrong_type(held, 'zset')
if bad then return bad end
if redis.call('GET', lock) ~= ARGV[1] then return 0 end
redis.call('DEL', lock)
redis.call('ZREM', held, ARGV[2])
return 1
