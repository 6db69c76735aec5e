-- Extends the current claim's lease, only for the current token.
-- KEYS: record, bucket index. ARGV: token, lease_ms, grace_ms
-- Returns {'ok', new lease expiry ms} | {'not_found'} | {'lease_lost'}
local rec, idx = KEYS[1], KEYS[2]
local now = now_ms()
local cur = redis.call('HMGET', rec, 'status', 'token', 'expires')
if not cur[1] then return {'not_found'} end
local expires = tonumber(cur[3])
if not expires then return corrupt(rec, 'field expires is missing or not a number') end
if expires <= now then return {'not_found'} end
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[1] then return {'lease_lost'} end
local new_exp = now + tonumber(ARGV[2])
local keep = math.min(new_exp + tonumber(ARGV[3]), expires)
redis.call('HSET', rec, 'lease', ms(new_exp), 'keep', ms(keep))
redis.call('PEXPIREAT', rec, keep)
redis.call('ZADD', idx, new_exp, rec)
return {'ok', ms(new_exp)}
