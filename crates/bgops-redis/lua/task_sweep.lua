-- Bounded maintenance through indexes: 'requeue' gives back up to `limit` expired claims;
-- 'purge' deletes up to `limit` tasks finished more than `older_ms` ago.
-- KEYS: leases (requeue) or done (purge). ARGV: base, action, limit, older_ms
-- Returns {done, more (0 | 1), corrupt task keys...}.
local base, action, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local n, more = 0, 0
local bad_keys = {}
local upto = now
if action ~= 'requeue' then upto = now - tonumber(ARGV[4]) end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', upto, 'LIMIT', 0, limit + 1)
if #due > limit then more = 1 end
for i = 1, math.min(#due, limit) do
  local id = due[i]
  if action == 'requeue' then
    local st = expire_claim(base, id, now)
    if st == 'pending' or st == 'failed' then n = n + 1 end
    if st == nil or st == false then redis.call('ZREM', KEYS[1], id) end
  else
    n = n + task_remove(base, id)
    redis.call('ZREM', KEYS[1], id)
  end
end
return {n, more, unpack(bad_keys)}
