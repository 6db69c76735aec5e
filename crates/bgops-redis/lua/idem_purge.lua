-- Removes up to ARGV[1] records of one bucket whose TTL passed, through its index (no
-- KEYS command, no full scan); Redis usually expired them already and only the index
-- entry is left. KEYS: bucket index. ARGV: limit.
-- Returns {removed, more (0 | 1), corrupt record keys...}. An entry that is not one of our
-- records (wrong type, unreadable expiry) is skipped, named, and looked at again an hour
-- later, so it never stops the batch nor makes the cleanup loop spin on it.
local idx = KEYS[1]
local limit = tonumber(ARGV[1])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, limit + 1)
local removed, corrupt_keys = 0, {}
local more = 0
if #due > limit then more = 1 end
for i = 1, math.min(#due, limit) do
  local rec = due[i]
  local t = redis.call('TYPE', rec)['ok']
  if t == 'none' then
    redis.call('ZREM', idx, rec)
    removed = removed + 1
  elseif t == 'hash' then
    local expires = tonumber(redis.call('HGET', rec, 'expires'))
    if not expires then
      corrupt_keys[#corrupt_keys + 1] = rec
      redis.call('ZADD', idx, now + 3600000, rec)
    elseif expires <= now then
      redis.call('DEL', rec)
      redis.call('ZREM', idx, rec)
      removed = removed + 1
    else
      -- Re-created after the entry was scored: look again at its own expiry.
      redis.call('ZADD', idx, expires, rec)
    end
  else
    corrupt_keys[#corrupt_keys + 1] = rec
    redis.call('ZADD', idx, now + 3600000, rec)
  end
end
return {removed, more, unpack(corrupt_keys)}
