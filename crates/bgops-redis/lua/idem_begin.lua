-- Atomic create-or-get of an idempotency record (one round trip).
-- KEYS: record (hash), bucket index (zset: record key -> its expiry, for purge)
-- ARGV: token, ttl_ms, lease_ms, has_fp ('1' | '0'), fp, then the fields a new record
--       stores as name/value pairs (tenant, key, op, and user, fp, params when set)
-- Returns one of
--   {'started', created_ms, expires_ms, lease_ms}  fresh claim, takeover, or this token's
--                                                  own claim repeated
--   {'in_progress', lease_ms}
--   {'completed', HMGET of the record fields (see idempotency.rs RECORD_FIELDS)}
--   {'mismatch'}
-- Everything read is checked before the first write (Lua does not roll back). A key of
-- another type fails HMGET with WRONGTYPE before anything is written; the index is
-- written first on the create path, so a corrupt index fails before the record exists.
local rec, idx = KEYS[1], KEYS[2]
-- What a replay reads, in the order `idempotency.rs` decodes (RECORD_FIELDS there).
local RECORD_FIELDS = {'status', 'expires', 'created', 'tenant', 'key', 'op', 'user', 'fp',
  'params', 'lease', 'completed', 'result', 'error', 'payload'}
local token = ARGV[1]
local ttl, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local fp = nil
if ARGV[4] == '1' then fp = ARGV[5] end
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
    if lease_exp > now and cur[5] ~= token then return {'in_progress', ms(lease_exp)} end
    -- The holder's lease ran out (take over: the old token is fenced out), or this token
    -- holds the claim already (a repeated begin whose first answer was lost): a fresh
    -- lease for this token. The record keeps its creation, TTL and index entry.
    local new_exp = math.min(now + lease, expires)
    redis.call('HSET', rec, 'token', token, 'lease', ms(new_exp))
    return {'started', ms(created), ms(expires), ms(new_exp)}
  end
end

local expires = now + ttl
local lease_exp = math.min(now + lease, expires)
-- The index first: if it is corrupt, this fails before anything is written.
redis.call('ZADD', idx, expires, rec)
if cur[1] then redis.call('DEL', rec) end
redis.call('HSET', rec, 'created', ms(now), 'expires', ms(expires), 'status', 'in_progress',
  'token', token, 'lease', ms(lease_exp), unpack(ARGV, 6))
-- In flight or completed, the record lives until its TTL: only a takeover, never a
-- vanished record, lets a retry run the operation again.
redis.call('PEXPIREAT', rec, expires)
return {'started', ms(now), ms(expires), ms(lease_exp)}
