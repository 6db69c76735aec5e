-- Counts index members whose score (an expiry in ms) is still in the future, by server
-- time. KEYS: index (zset). Returns the count.
return redis.call('ZCOUNT', KEYS[1], '(' .. ms(now_ms()), '+inf')
