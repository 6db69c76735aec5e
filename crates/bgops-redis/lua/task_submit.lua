-- Stores a new task, or returns the one submitted with the same queue and key.
-- KEYS: globals (task_common.lua), task (hash), history (list), key mapping (or the task
--       key again), then the queue's keys (keys.rs task_queue: meta, ready, leases, all,
--       one per status)
-- ARGV: id, queue, type, has_ikey ('1' | '0'), idempotency_key, payload, max_attempts,
--       delay_ms. Returns {'created' | 'duplicate', HGETALL, history} | {'conflict'}
local rec, hist, keymap = KEYS[9], KEYS[10], KEYS[11]
local q = queue_from_keys(12)
local has_ikey = ARGV[4] == '1'
local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list') or wrong_type(q.meta, 'hash')
if bad then return bad end
local now = now_ms()
if has_ikey then
  bad = wrong_type(keymap, 'string')
  if bad then return bad end
  -- The mapping holds the other task's hash key (written by this script from KEYS).
  local other = redis.call('GET', keymap)
  if other then
    bad = wrong_type(other, 'hash')
    if bad then return bad end
    if redis.call('EXISTS', other) == 1 then
      local cur = redis.call('HMGET', other, 'type', 'payload')
      if cur[1] ~= ARGV[3] or cur[2] ~= ARGV[6] then return {'conflict'} end
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
-- Everything read is checked: the writes below cannot fail half way.
local seq = redis.call('INCR', G.seq)
local available = now + tonumber(ARGV[8])
redis.call('HSET', q.meta, 'ready', q.ready, 'leases', q.leases, 'all', q.all,
  'pending', q.pending, 'claimed', q.claimed, 'completed', q.completed, 'failed', q.failed)
redis.call('HSET', rec, 'id', ARGV[1], 'queue', ARGV[2], 'type', ARGV[3], 'payload', ARGV[6],
  'status', 'pending', 'attempts', 0, 'max', ARGV[7], 'created', ms(now), 'updated', ms(now),
  'available', ms(available), 'seq', seq, 'hkey', hist, 'qmeta', q.meta)
if has_ikey then
  redis.call('HSET', rec, 'ikey', ARGV[5], 'kmap', keymap)
  redis.call('SET', keymap, rec)
end
redis.call('ZADD', G.all, seq, rec)
redis.call('ZADD', q.all, seq, rec)
redis.call('ZADD', G.pending, seq, rec)
redis.call('ZADD', q.pending, seq, rec)
redis.call('ZADD', q.ready, available, rec)
local r = task_reply(rec)
return {'created', r[1], r[2]}
