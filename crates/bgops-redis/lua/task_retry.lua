-- Puts a failed task back to pending with a fresh set of attempts.
-- KEYS: globals, task. Returns {'ok', status, attempts, lexp | '', available, updated} |
-- {'not_found'} | {'invalid', status}
local t, err = task_load(KEYS[9])
if err then return err end
if not t then return {'not_found'} end
if t.status ~= 'failed' then return {'invalid', t.status} end
local now = now_ms()
redis.call('HDEL', t.rec, 'finished')
redis.call('HSET', t.rec, 'status', 'pending', 'attempts', 0, 'available', ms(now),
  'updated', ms(now))
redis.call('ZREM', G.done, t.rec)
task_move(t, 'pending')
redis.call('ZADD', t.q.ready, now, t.rec)
return task_receipt(t)
