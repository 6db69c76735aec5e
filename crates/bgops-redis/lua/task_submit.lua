-- Stores a new task, or returns the one submitted with the same queue and key.
-- KEYS: task (hash). ARGV: base, id, queue, type, idempotency_key?, payload, max_attempts,
--       delay_ms. Returns {'created' | 'duplicate', HGETALL, history} | {'conflict'}
local rec, base = KEYS[1], ARGV[1]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
local now = now_ms()
local id, queue = ARGV[2], ARGV[3]
local ikey = opt(ARGV[5])
local keymap
if ikey then
  keymap = base .. 'key:' .. enc(queue) .. ':' .. ikey
  local other = redis.call('GET', keymap)
  if other and redis.call('EXISTS', base .. 't:' .. other) == 1 then
    local cur = redis.call('HMGET', base .. 't:' .. other, 'type', 'payload')
    if cur[1] ~= ARGV[4] or cur[2] ~= ARGV[6] then return {'conflict'} end
    local r = task_reply(base, other)
    return {'duplicate', r[1], r[2]}
  end
end
if redis.call('EXISTS', rec) == 1 then return corrupt(rec, 'task id already in use') end
local seq = redis.call('INCR', base .. 'seq')
local available = now + tonumber(ARGV[8])
redis.call('HSET', rec, 'id', id, 'queue', queue, 'type', ARGV[4], 'payload', ARGV[6],
  'status', 'pending', 'attempts', 0, 'max', ARGV[7], 'created', ms(now), 'updated', ms(now),
  'available', ms(available), 'seq', seq)
if ikey then
  redis.call('HSET', rec, 'ikey', ikey)
  redis.call('SET', keymap, id)
end
redis.call('ZADD', base .. 'idx:all', seq, id)
redis.call('ZADD', base .. 'idx:q:' .. enc(queue), seq, id)
task_move(base, id, queue, seq, nil, 'pending')
redis.call('ZADD', base .. 'ready:' .. enc(queue), available, id)
local r = task_reply(base, id)
return {'created', r[1], r[2]}
