-- Completes several claims in one step, each fenced by its own claim number, as
-- task_finish.lua's 'complete' does; every index is type-checked once per call
-- (checks.lua), not once per task.
-- KEYS: globals, then one task key per completion. ARGV: attempt, result JSON, ... (a
--       pair per task key, in the same order)
-- Returns one reply per task: {'ok', status, attempts, lexp | '', available, updated} |
--         {'not_found'} | {'lease_lost'} | {'corrupt', message}
local out = {}
local now = now_ms()
for i = 9, #KEYS do
  local j = (i - 9) * 2
  local t, err = task_load(KEYS[i])
  if err then
    -- Nested replies carry no error type: the message goes as text.
    out[#out + 1] = {'corrupt', err.err or 'unreadable'}
  elseif not t then
    out[#out + 1] = {'not_found'}
  elseif t.status ~= 'claimed' or t.claim ~= tonumber(ARGV[j + 1]) then
    out[#out + 1] = {'lease_lost'}
  else
    attempt_finish(t, now, 'completed', nil)
    task_unclaim(t)
    redis.call('HDEL', t.rec, 'error')
    redis.call('HSET', t.rec, 'status', 'completed', 'result', ARGV[j + 2], 'finished',
      ms(now), 'updated', ms(now))
    task_move(t, 'completed')
    redis.call('ZADD', G.done, now, t.rec)
    out[#out + 1] = {'ok', 'completed', tostring(t.attempts), '', ms(t.available), ms(now)}
  end
end
return out
