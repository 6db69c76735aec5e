-- Records the outcome, only for the current token, even after its lease ran out as long
-- as nobody took over; repeated by the completing token it answers the same receipt and
-- changes nothing. (One round trip.)
-- KEYS: record. ARGV: token, status (completed | failed), then the outcome's fields as
-- name/value pairs (result, error, payload; the payload is raw bytes).
-- Returns {'ok', completed_ms, expires_ms} | {'not_found'} | {'lease_lost'}
-- A key of another type fails HMGET with WRONGTYPE before anything is written.
local rec = KEYS[1]
local now = now_ms()
local cur = redis.call('HMGET', rec, 'status', 'token', 'expires', 'completed')
if not cur[1] then return {'not_found'} end
local expires = tonumber(cur[3])
if not expires then return corrupt(rec, 'field expires is missing or not a number') end
if expires <= now then return {'not_found'} end
if cur[2] ~= ARGV[1] then return {'lease_lost'} end
if cur[1] == 'completed' or cur[1] == 'failed' then
  local completed = tonumber(cur[4])
  if not completed then return corrupt(rec, 'field completed is missing or not a number') end
  return {'ok', completed, expires}
end
if cur[1] ~= 'in_progress' then return corrupt(rec, 'unknown status ' .. tostring(cur[1])) end
-- The token stays, so a repeated complete by it is recognised. The key's expiry and index
-- score are already the record's TTL.
redis.call('HSET', rec, 'status', ARGV[2], 'completed', now, unpack(ARGV, 3))
return {'ok', now, expires}
