-- Records the outcome, only for the current token (one round trip).
-- KEYS: record, bucket index. ARGV: token, status (completed|failed), result?, error?
-- Returns {'ok', [field, value, ...]} | {'not_found'} | {'lease_lost'}
-- A key of another type fails HMGET with WRONGTYPE, which the client reports as Corrupt.
local rec = KEYS[1]
local now = now_ms()
local names = {'status', 'token', 'expires', 'tenant', 'key', 'user', 'op', 'created', 'fp',
  'params'}
local cur = redis.call('HMGET', rec, unpack(names))
if not cur[1] then return {'not_found'} end
local expires = tonumber(cur[3])
if not expires then return corrupt(rec, 'field expires is missing or not a number') end
if expires <= now then return {'not_found'} end
if cur[1] ~= 'in_progress' or cur[2] ~= ARGV[1] then return {'lease_lost'} end
-- The token stays (status decides, and it is never read back); the index entry keeps its
-- lease-time score: purge re-scores live records it meets, so complete stays small.
local fields = {'status', ARGV[2], 'completed', ms(now), 'keep', ms(expires)}
local result, err = opt(ARGV[3]), opt(ARGV[4])
if result then fields[#fields + 1] = 'result'; fields[#fields + 1] = result end
if err then fields[#fields + 1] = 'error'; fields[#fields + 1] = err end
redis.call('HSET', rec, unpack(fields))
-- Completed, it lives for its full TTL (counted from creation).
redis.call('PEXPIREAT', rec, expires)
for i = 3, #names do
  if cur[i] then fields[#fields + 1] = names[i]; fields[#fields + 1] = cur[i] end
end
return {'ok', fields}
