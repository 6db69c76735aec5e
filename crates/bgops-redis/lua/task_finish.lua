-- Ends the claim `attempt`: complete | fail | fail_permanently | renew | release, fenced
-- by the attempt.
-- KEYS: task. ARGV: base, id, action, attempt, value (result JSON | error | lease_ms),
--       retry_after_ms
-- Returns {'ok', status, attempts, lexp | '', available, updated} | {'not_found'} | {'lease_lost'}
local rec, base, id, action = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
local now = now_ms()
local _, cur = task_fields(base, id)
local failure = check_claim(cur, ARGV[4])
if failure then return {failure} end
local queue, seq, attempts = cur[2], tonumber(cur[3]), tonumber(cur[4])
if action == 'renew' then
  local exp = now + tonumber(ARGV[5])
  redis.call('HSET', rec, 'lexp', ms(exp), 'updated', ms(now))
  redis.call('ZADD', base .. 'leases:' .. enc(queue), exp, id)
  redis.call('ZADD', base .. 'leases', exp, id)
  return task_receipt(rec)
end
task_unclaim(base, id, queue)
redis.call('HDEL', rec, 'lworker', 'lexp')
if action == 'complete' then
  attempt_finish(base, id, now, 'completed', nil)
  redis.call('HDEL', rec, 'error')
  redis.call('HSET', rec, 'status', 'completed', 'result', ARGV[5], 'finished', ms(now),
    'updated', ms(now))
  task_move(base, id, queue, seq, 'claimed', 'completed')
  redis.call('ZADD', base .. 'done', now, id)
elseif action == 'fail' or action == 'fail_permanently' then
  attempt_finish(base, id, now, 'failed', ARGV[5])
  if action == 'fail_permanently' or attempts >= tonumber(cur[5]) then
    redis.call('HSET', rec, 'status', 'failed', 'error', ARGV[5], 'finished', ms(now),
      'updated', ms(now))
    task_move(base, id, queue, seq, 'claimed', 'failed')
    redis.call('ZADD', base .. 'done', now, id)
  else
    local available = now + tonumber(ARGV[6])
    redis.call('HSET', rec, 'status', 'pending', 'error', ARGV[5], 'available', ms(available),
      'updated', ms(now))
    task_move(base, id, queue, seq, 'claimed', 'pending')
    redis.call('ZADD', base .. 'ready:' .. enc(queue), available, id)
  end
elseif action == 'release' then
  -- A released attempt does not count against max_attempts.
  attempt_finish(base, id, now, 'released', nil)
  redis.call('HSET', rec, 'status', 'pending', 'attempts', attempts - 1,
    'available', ms(now), 'updated', ms(now))
  task_move(base, id, queue, seq, 'claimed', 'pending')
  redis.call('ZADD', base .. 'ready:' .. enc(queue), now, id)
else
  return redis.error_reply('unknown action ' .. action)
end
return task_receipt(rec)
