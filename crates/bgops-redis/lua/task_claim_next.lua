-- Claims up to `max` of the oldest claimable tasks of a queue in one step; expired claims
-- of the queue come back first, so a dead worker's task returns without a sweeper. A
-- corrupt task is skipped (the sweeps name it); if nothing else can be claimed, the answer
-- names it. Every index is type-checked once per call (checks.lua), not once per task.
-- KEYS: globals, then the queue's keys (keys.rs task_queue). ARGV: worker, lease_ms, max
-- Returns {'ok', HGETALL, history, HGETALL, history, ...} | {'none'}
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
local max = tonumber(ARGV[3] or '1')
local out = {'ok'}
local n = 0
-- Ties of availability (tasks submitted within one ms) go by submission sequence.
local window = redis.call('ZRANGEBYSCORE', q.ready, '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  2 * max + 2)
local cands = {}
for i = 1, #window, 2 do
  local rec = window[i]
  cands[#cands + 1] = {rec = rec, at = tonumber(window[i + 1]),
    seq = tonumber(redis.pcall('HGET', rec, 'seq')) or 0}
end
table.sort(cands, function(a, b)
  if a.at ~= b.at then return a.at < b.at end
  return a.seq < b.seq
end)
for _, c in ipairs(cands) do
  local rec = c.rec
  if n >= max then break end
  local t, err = task_load(rec)
  if err then
    first_bad = first_bad or err
  elseif not t or t.status ~= 'pending' then
    -- A stale entry (the task is gone or moved on): drop it.
    redis.call('ZREM', q.ready, rec)
  else
    task_claim(t, ARGV[1], tonumber(ARGV[2]), now)
    local r = task_reply(rec)
    out[#out + 1] = r[1]
    out[#out + 1] = r[2]
    n = n + 1
  end
end
if n > 0 then return out end
if first_bad then return first_bad end
return {'none'}
