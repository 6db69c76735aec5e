-- Claims the oldest claimable task of a queue; expired claims of the queue come back
-- first, so a dead worker's task returns without a sweeper. A corrupt task is skipped
-- (the sweeps name it); if nothing else can be claimed, the answer names it.
-- KEYS: globals, then the queue's keys (keys.rs task_queue). ARGV: worker, lease_ms
-- Returns {'ok', HGETALL, history} | {'none'}
local q = queue_from_keys(9)
local bad = check_zsets({q.ready, q.leases})
if bad then return bad end
local now = now_ms()
local first_bad = nil
for _, rec in ipairs(redis.call('ZRANGEBYSCORE', q.leases, '-inf', now, 'LIMIT', 0, 100)) do
  local t, err = task_load(rec)
  if t then
    expire_claim(t, now)
  elseif not err then
    redis.call('ZREM', q.leases, rec)
  end
end
for _, rec in ipairs(redis.call('ZRANGEBYSCORE', q.ready, '-inf', now, 'LIMIT', 0, 10)) do
  local t, err = task_load(rec)
  if err then
    first_bad = first_bad or err
  elseif not t or t.status ~= 'pending' then
    -- A stale entry (the task is gone or moved on): drop it.
    redis.call('ZREM', q.ready, rec)
  else
    task_claim(t, ARGV[1], tonumber(ARGV[2]), now)
    local r = task_reply(rec)
    return {'ok', r[1], r[2]}
  end
end
if first_bad then return first_bad end
return {'none'}
