-- Puts a failed task back to pending with a fresh set of attempts.
-- KEYS: task. ARGV: base, id. Returns {'ok', status, attempts, lexp | '', available, updated} | {'not_found'} |
-- {'invalid', status}
local rec, base, id = KEYS[1], ARGV[1], ARGV[2]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
local now = now_ms()
local _, cur = task_fields(base, id)
if not cur[1] then return {'not_found'} end
if cur[1] ~= 'failed' then return {'invalid', cur[1]} end
local queue, seq = cur[2], tonumber(cur[3])
redis.call('HDEL', rec, 'finished')
redis.call('HSET', rec, 'status', 'pending', 'attempts', 0, 'available', ms(now),
  'updated', ms(now))
redis.call('ZREM', base .. 'done', id)
task_move(base, id, queue, seq, 'failed', 'pending')
redis.call('ZADD', base .. 'ready:' .. enc(queue), now, id)
return task_receipt(rec)
