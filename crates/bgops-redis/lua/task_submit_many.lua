-- Stores several new tasks (or finds the ones submitted with the same queue and key), each
-- with dedupe by queue and key, in one step. Every index is type-checked once per call
-- (checks.lua), a queue's meta hash is written only when it is missing, and a created
-- task is answered with the server's times only (the caller knows the rest).
-- KEYS: globals (task_common.lua), then per task 11 keys: task (hash), history (list),
--       key mapping (or the task key again), the queue's keys (keys.rs task_queue)
-- ARGV: per task 8 values: id, queue, type, has_ikey ('1' | '0'), idempotency_key,
--       payload, max_attempts, delay_ms
-- Returns one reply per task: {'created', now_ms, available_ms} |
--         {'duplicate', HGETALL, history} | {'conflict'} | {'corrupt', message}
local function submit_one(kb, ab, now)
  local rec, hist, keymap = KEYS[kb], KEYS[kb + 1], KEYS[kb + 2]
  local q = queue_from_keys(kb + 3)
  local has_ikey = ARGV[ab + 4] == '1'
  local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list') or wrong_type(q.meta, 'hash')
  if bad then return bad end
  if has_ikey then
    bad = wrong_type(keymap, 'string')
    if bad then return bad end
    local other = redis.call('GET', keymap)
    if other then
      bad = wrong_type(other, 'hash')
      if bad then return bad end
      if redis.call('EXISTS', other) == 1 then
        local cur = redis.call('HMGET', other, 'type', 'payload')
        if cur[1] ~= ARGV[ab + 3] or cur[2] ~= ARGV[ab + 6] then return {'conflict'} end
        local r = task_reply(other)
        return {'duplicate', r[1], r[2]}
      end
    end
  end
  if redis.call('EXISTS', rec) == 1 then return corrupt(rec, 'task id already in use') end
  bad = wrong_type(G.seq, 'string') or check_zsets(G_ZSETS) or check_zsets(queue_zsets(q))
  if bad then return bad end
  local seq_now = redis.call('GET', G.seq)
  if seq_now and not tonumber(seq_now) then return corrupt(G.seq, 'not a counter') end
  local seq = redis.call('INCR', G.seq)
  local available = now + tonumber(ARGV[ab + 8])
  if redis.call('EXISTS', q.meta) == 0 then
    redis.call('HSET', q.meta, 'ready', q.ready, 'leases', q.leases, 'all', q.all,
      'pending', q.pending, 'claimed', q.claimed, 'completed', q.completed, 'failed', q.failed)
  end
  redis.call('HSET', rec, 'id', ARGV[ab + 1], 'queue', ARGV[ab + 2], 'type', ARGV[ab + 3],
    'payload', ARGV[ab + 6], 'status', 'pending', 'attempts', 0, 'max', ARGV[ab + 7],
    'created', ms(now), 'updated', ms(now), 'available', ms(available), 'seq', seq,
    'hkey', hist, 'qmeta', q.meta)
  if has_ikey then
    redis.call('HSET', rec, 'ikey', ARGV[ab + 5], 'kmap', keymap)
    redis.call('SET', keymap, rec)
  end
  redis.call('ZADD', G.all, seq, rec)
  redis.call('ZADD', q.all, seq, rec)
  redis.call('ZADD', G.pending, seq, rec)
  redis.call('ZADD', q.pending, seq, rec)
  redis.call('ZADD', q.ready, available, rec)
  return {'created', ms(now), ms(available)}
end

local now = now_ms()
local out = {}
local n = (#KEYS - 8) / 11
for i = 0, n - 1 do
  local r = submit_one(9 + i * 11, i * 8, now)
  if r.err then r = {'corrupt', r.err} end
  out[#out + 1] = r
end
return out
