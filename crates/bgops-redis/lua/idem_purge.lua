-- Removes up to ARGV[1] expired records and abandoned claims of one bucket, through its
-- index (no KEYS, no full scan). KEYS: bucket index. Returns how many were removed.
local idx = KEYS[1]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local removed = 0
for _, rec in ipairs(due) do
  local t = redis.call('TYPE', rec)['ok']
  if t == 'none' then
    -- Redis already expired it by its TTL; only the index entry was left.
    removed = removed + 1
    redis.call('ZREM', idx, rec)
  elseif t == 'hash' then
    local cur = redis.call('HMGET', rec, 'status', 'expires', 'lease')
    local expires, lease = tonumber(cur[2]), tonumber(cur[3])
    local dead = (not expires) or expires <= now
    if cur[1] == 'in_progress' and ((not lease) or lease <= now) then dead = true end
    if dead then
      redis.call('DEL', rec)
      redis.call('ZREM', idx, rec)
      removed = removed + 1
    elseif cur[1] == 'in_progress' then
      redis.call('ZADD', idx, lease, rec)
    else
      redis.call('ZADD', idx, expires, rec)
    end
  else
    -- Not ours to delete; drop it from the index so purge does not loop on it.
    redis.call('ZREM', idx, rec)
  end
end
return removed
