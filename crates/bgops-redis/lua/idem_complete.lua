-- Records the outcome, only for the current token (one round trip).
-- KEYS: record, bucket index. ARGV: token, status (completed|failed), result?, error?
-- Returns {'ok', HGETALL} | {'not_found'} | {'lease_lost'}
local rec, idx = KEYS[1], KEYS[2]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
local now = now_ms()
local cur = redis.call('HMGET', rec, 'status', 'token', 'expires')
if not cur[1] then return {'not_found'} end
local expires = tonumber(cur[3])
if not expires then return corrupt(rec, 'field expires is missing or not a number') end
if expires <= now then return {'not_found'} end
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[1] then return {'lease_lost'} end
redis.call('HSET', rec, 'status', ARGV[2], 'completed', ms(now), 'keep', ms(expires))
redis.call('HDEL', rec, 'token', 'lease', 'result', 'error')
local result, err = opt(ARGV[3]), opt(ARGV[4])
if result then redis.call('HSET', rec, 'result', result) end
if err then redis.call('HSET', rec, 'error', err) end
-- Completed, it lives for its full TTL (counted from creation).
redis.call('PEXPIREAT', rec, expires)
redis.call('ZADD', idx, expires, rec)
return {'ok', redis.call('HGETALL', rec)}
