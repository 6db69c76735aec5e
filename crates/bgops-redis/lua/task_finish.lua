-- Ends the claim `attempt`: complete | fail | fail_permanently | renew | release, fenced
-- by the claim number; everything is checked before the first write.
-- KEYS: globals, task. ARGV: action, attempt, value (result JSON | error | lease_ms),
--       retry_after_ms
-- Returns {'ok', status, attempts, lexp | '', available, updated} | {'not_found'} |
--         {'lease_lost'}
local action = ARGV[1]
local t, err = task_load(KEYS[9])
if err then return err end
if not t then return {'not_found'} end
if t.status ~= 'claimed' or t.claim ~= tonumber(ARGV[2]) then return {'lease_lost'} end
local now = now_ms()
if action == 'renew' then
  local exp = now + tonumber(ARGV[3])
  redis.call('HSET', t.rec, 'lexp', ms(exp), 'updated', ms(now))
  redis.call('ZADD', t.q.leases, exp, t.rec)
  redis.call('ZADD', G.leases, exp, t.rec)
  return task_receipt(t)
end
if action == 'complete' then
  attempt_finish(t, now, 'completed', nil)
  task_unclaim(t)
  redis.call('HDEL', t.rec, 'error')
  redis.call('HSET', t.rec, 'status', 'completed', 'result', ARGV[3], 'finished', ms(now),
    'updated', ms(now))
  task_move(t, 'completed')
  redis.call('ZADD', G.done, now, t.rec)
elseif action == 'fail' or action == 'fail_permanently' then
  attempt_finish(t, now, 'failed', ARGV[3])
  task_unclaim(t)
  if action == 'fail_permanently' or t.attempts >= t.max then
    redis.call('HSET', t.rec, 'status', 'failed', 'error', ARGV[3], 'finished', ms(now),
      'updated', ms(now))
    task_move(t, 'failed')
    redis.call('ZADD', G.done, now, t.rec)
  else
    local available = now + tonumber(ARGV[4])
    redis.call('HSET', t.rec, 'status', 'pending', 'error', ARGV[3],
      'available', ms(available), 'updated', ms(now))
    task_move(t, 'pending')
    redis.call('ZADD', t.q.ready, available, t.rec)
  end
elseif action == 'release' then
  -- A released attempt does not count against max_attempts.
  attempt_finish(t, now, 'released', nil)
  task_unclaim(t)
  redis.call('HSET', t.rec, 'status', 'pending', 'attempts', t.attempts - 1,
    'available', ms(now), 'updated', ms(now))
  task_move(t, 'pending')
  redis.call('ZADD', t.q.ready, now, t.rec)
else
  return redis.error_reply('unknown action ' .. action)
end
return task_receipt(t)
