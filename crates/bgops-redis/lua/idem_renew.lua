-- Extends the current claim's lease (never past the record's TTL), only for the current
-- token. KEYS: record. ARGV: token, lease_ms
-- Returns {'ok', new lease expiry ms} | {'not_found'} | {'lease_lost'}
local rec = KEYS[1]
local now = now_ms()
local cur = redis.call('HMGET', rec, 'status', 'token', 'expires')
if not cur[1] then return {'not_found'} end
local expires = tonumber(cur[3])
if not expires then return corrupt(rec, 'field expires is missing or not a number') end
if expires <= now then return {'not_found'} end
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[1] then return {'lease_lost'} end
local new_exp = math.min(now + tonumber(ARGV[2]), expires)
redis.call('HSET', rec, 'lease', ms(new_exp))
return {'ok', ms(new_exp)}
