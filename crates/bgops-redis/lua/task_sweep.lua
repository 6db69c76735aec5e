-- Bounded maintenance through indexes: 'requeue' gives back up to `limit` expired claims;
-- 'purge' deletes up to `limit` tasks finished more than `older_ms` ago.
-- KEYS: leases (requeue) or done (purge). ARGV: base, action, limit, older_ms
-- Returns how many moved or were deleted.
local base, action, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local n = 0
if action == 'requeue' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
    local st = expire_claim(base, id, now)
    if st == 'pending' or st == 'failed' then n = n + 1 end
    if st == nil or st == false then redis.call('ZREM', KEYS[1], id) end
  end
else
  local cutoff = now - tonumber(ARGV[4])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, limit)) do
    n = n + task_remove(base, id)
    redis.call('ZREM', KEYS[1], id)
  end
end
return n
