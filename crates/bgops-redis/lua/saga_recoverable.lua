-- Running or compensating sagas whose lease expired (or that have none), by server time.
-- KEYS: active index. ARGV: limit. Returns saga hash keys (keys.rs turns them into ids).
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
