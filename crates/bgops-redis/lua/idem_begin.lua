-- Atomic create-or-get of an idempotency record (one round trip).
-- KEYS: record (hash), bucket index (zset: record key -> its expiry, for purge)
-- ARGV: token, ttl_ms, lease_ms, operation type, flags (three '0'/'1': user, fingerprint,
--       parameters given), then the given ones in that order. Tenant and key are not
--       stored: they are the record's address, which every reader already has.
-- Returns one of
--   {'started', created_ms, expires_ms, lease_ms}  fresh claim, takeover, or this token's
--                                                  own claim repeated
--   {'in_progress', lease_ms}
--   {'completed', HMGET of the record fields (RECORD_FIELDS in idempotency.rs)}
--   {'mismatch'}
-- Everything read is checked before the first write (Lua does not roll back). A key of
-- another type fails HMGET with WRONGTYPE before anything is written; the index is
-- written first on the create path, so a corrupt index fails before the record exists.
local rec, idx = KEYS[1], KEYS[2]
-- What a replay reads, in the order `idempotency.rs` decodes (RECORD_FIELDS there).
local RECORD_FIELDS = {'status', 'expires', 'created', 'op', 'user', 'fp', 'params', 'lease',
  'completed', 'result', 'error', 'payload'}
local token, flags = ARGV[1], ARGV[5]
local user, fp, params
local n = 6
if string.byte(flags, 1) == 49 then user = ARGV[n]; n = n + 1 end
if string.byte(flags, 2) == 49 then fp = ARGV[n]; n = n + 1 end
if string.byte(flags, 3) == 49 then params = ARGV[n] end
local now = now_ms()

local cur = redis.call('HMGET', rec, 'status', 'expires', 'fp', 'lease', 'token', 'created')
if cur[1] then
  local status, expires = cur[1], tonumber(cur[2])
  if not expires then return corrupt(rec, 'field expires is missing or not a number') end
  if expires > now then
    if fp and cur[3] and cur[3] ~= fp then return {'mismatch'} end
    if status == 'completed' or status == 'failed' then
      return {'completed', redis.call('HMGET', rec, unpack(RECORD_FIELDS))}
    elseif status ~= 'in_progress' then
      return corrupt(rec, 'unknown status ' .. tostring(status))
    end
    local lease_exp, created = tonumber(cur[4]), tonumber(cur[6])
    if not lease_exp or not created then
      return corrupt(rec, 'field lease or created is missing or not a number')
    end
    if lease_exp > now and cur[5] ~= token then return {'in_progress', lease_exp} end
    -- The holder's lease ran out (take over: the old token is fenced out), or this token
    -- holds the claim already (a repeated begin whose first answer was lost): a fresh
    -- lease for this token. The record keeps its creation, TTL and index entry.
    local new_exp = math.min(now + tonumber(ARGV[3]), expires)
    redis.call('HSET', rec, 'token', token, 'lease', new_exp)
    return {'started', created, expires, new_exp}
  end
end

local expires = now + tonumber(ARGV[2])
local lease_exp = math.min(now + tonumber(ARGV[3]), expires)
-- The index first: if it is corrupt, this fails before anything is written.
local added = redis.pcall('ZADD', idx, expires, rec)
if type(added) == 'table' and added.err then return corrupt(idx, added.err) end
if cur[1] then redis.call('DEL', rec) end
local fields = {'created', now, 'expires', expires, 'status', 'in_progress', 'token', token,
  'lease', lease_exp, 'op', ARGV[4]}
if user then fields[13] = 'user'; fields[14] = user end
if fp then fields[#fields + 1] = 'fp'; fields[#fields + 1] = fp end
if params then fields[#fields + 1] = 'params'; fields[#fields + 1] = params end
redis.call('HSET', rec, unpack(fields))
-- In flight or completed, the record lives until its TTL: only a takeover, never a
-- vanished record, lets a retry run the operation again.
redis.call('PEXPIREAT', rec, expires)
return {'started', now, expires, lease_exp}
