-- Atomic create-or-get of an idempotency record (one round trip).
-- KEYS: record (hash), bucket index (zset: record key -> when purge should look at it)
-- ARGV: tenant, key, user?, operation, fingerprint?, parameters?, ttl_ms, lease_ms,
--       grace_ms, token
-- Returns {outcome, token, HGETALL}; outcome: started | in_progress | completed | mismatch;
-- a fresh record answers {'created', token, created_ms, expires_ms, lease_ms} instead,
-- since the caller knows the rest (the hot path stays small).
-- A key of another type fails HMGET with WRONGTYPE, which the client reports as Corrupt.
local rec, idx = KEYS[1], KEYS[2]
local now = now_ms()
local fp = opt(ARGV[5])
local ttl, lease, grace = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local token = ARGV[10]

local cur = redis.call('HMGET', rec, 'status', 'expires', 'fp', 'lease')
if cur[1] then
  local status, expires = cur[1], tonumber(cur[2])
  if not expires then return corrupt(rec, 'field expires is missing or not a number') end
  if expires > now then
    if fp and cur[3] and cur[3] ~= fp then
      return {'mismatch', '', redis.call('HGETALL', rec)}
    end
    if status == 'completed' or status == 'failed' then
      return {'completed', '', redis.call('HGETALL', rec)}
    elseif status == 'in_progress' then
      local lease_exp = tonumber(cur[4])
      if not lease_exp then return corrupt(rec, 'field lease is missing or not a number') end
      if lease_exp > now then
        return {'in_progress', '', redis.call('HGETALL', rec)}
      end
      -- The holder's lease ran out: take over with a new token (the old one is fenced out).
      local new_exp = now + lease
      local keep = math.min(new_exp + grace, expires)
      redis.call('HSET', rec, 'token', token, 'lease', ms(new_exp), 'keep', ms(keep))
      redis.call('PEXPIREAT', rec, keep)
      redis.call('ZADD', idx, new_exp, rec)
      return {'started', token, redis.call('HGETALL', rec)}
    else
      return corrupt(rec, 'unknown status ' .. tostring(status))
    end
  end
  redis.call('DEL', rec)
end

local expires = now + ttl
local lease_exp = now + lease
local keep = math.min(lease_exp + grace, expires)
local fields = {'tenant', ARGV[1], 'key', ARGV[2], 'op', ARGV[4],
  'created', ms(now), 'expires', ms(expires), 'status', 'in_progress',
  'token', token, 'lease', ms(lease_exp), 'keep', ms(keep)}
local user, params = opt(ARGV[3]), opt(ARGV[6])
if user then fields[#fields + 1] = 'user'; fields[#fields + 1] = user end
if fp then fields[#fields + 1] = 'fp'; fields[#fields + 1] = fp end
if params then fields[#fields + 1] = 'params'; fields[#fields + 1] = params end
redis.call('HSET', rec, unpack(fields))
-- In flight, the record lives only for its lease (+ grace); purge looks at it when the
-- lease ends.
redis.call('PEXPIREAT', rec, keep)
redis.call('ZADD', idx, lease_exp, rec)
return {'created', token, ms(now), ms(expires), ms(lease_exp)}
