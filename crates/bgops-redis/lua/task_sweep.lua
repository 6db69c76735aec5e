-- Bounded maintenance through indexes: 'requeue' gives back up to `limit` expired claims;
-- 'purge' deletes up to `limit` tasks finished more than `older_ms` ago. A task that
-- cannot be read is skipped, named, and looked at again an hour later, so it never stops
-- the batch nor makes the cleanup loop spin on it.
-- KEYS: globals. ARGV: action, limit, older_ms
-- Returns {done, more (0 | 1), corrupt task keys...}.
local action, limit = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local index, upto = G.leases, now
if action == 'purge' then index, upto = G.done, now - tonumber(ARGV[3]) end
local bad = wrong_type(index, 'zset')
if bad then return bad end
local due = redis.call('ZRANGEBYSCORE', index, '-inf', upto, 'LIMIT', 0, limit + 1)
local n, more, bad_keys = 0, 0, {}
if #due > limit then more = 1 end
for i = 1, math.min(#due, limit) do
  local rec = due[i]
  local t, err = task_load(rec)
  if err then
    bad_keys[#bad_keys + 1] = rec
    redis.call('ZADD', index, now + 3600000, rec)
  elseif not t then
    redis.call('ZREM', index, rec)
  elseif action == 'requeue' then
    if t.status == 'claimed' then
      local st = expire_claim(t, now)
      if st ~= 'claimed' then n = n + 1 end
    else
      redis.call('ZREM', index, rec)
    end
  elseif t.status == 'completed' or t.status == 'failed' then
    n = n + task_remove(t)
  else
    -- Retried since it finished: no longer ours to purge.
    redis.call('ZREM', index, rec)
  end
end
return {n, more, unpack(bad_keys)}
