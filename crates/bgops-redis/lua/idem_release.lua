-- Deletes an in-flight claim, only for the current token.
-- KEYS: record, bucket index. ARGV: token. Returns 'ok' | 'not_found' | 'lease_lost'
local rec, idx = KEYS[1], KEYS[2]
local now = now_ms()
local cur = redis.call('HMGET', rec, 'status', 'token', 'expires')
if not cur[1] then return 'not_found' end
local expires = tonumber(cur[3])
if not expires then return corrupt(rec, 'field expires is missing or not a number') end
if expires <= now then return 'not_found' end
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[1] then return 'lease_lost' end
-- The index first: if it is corrupt, this fails before anything is written.
local removed = redis.pcall('ZREM', idx, rec)
if type(removed) == 'table' and removed.err then return corrupt(idx, removed.err) end
redis.call('DEL', rec)
return 'ok'
