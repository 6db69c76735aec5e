-- Task helpers. Every task key lives under one tag ({task}). Key names come from keys.rs
-- only: every task script gets the global keys first (keys.rs `task_globals`), index
-- members are task hash keys, and a task's hash names its history list (`hkey`), its key
-- mapping (`kmap`) and its queue's meta hash (`qmeta`), which names the queue's keys (all
-- written at submit from KEYS). Nothing here concatenates a key name.
local TASK_STATUS = {pending = 1, claimed = 2, completed = 3, failed = 4}
local G = {all = KEYS[1], pending = KEYS[2], claimed = KEYS[3], completed = KEYS[4],
  failed = KEYS[5], leases = KEYS[6], done = KEYS[7], seq = KEYS[8]}
local G_ZSETS = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}
local QUEUE_FIELDS = {'ready', 'leases', 'all', 'pending', 'claimed', 'completed', 'failed'}

-- A queue's keys as passed in KEYS from `first` (keys.rs `task_queue`): meta, then
-- QUEUE_FIELDS in order.
local function queue_from_keys(first)
  local q = {meta = KEYS[first]}
  for i, f in ipairs(QUEUE_FIELDS) do q[f] = KEYS[first + i] end
  return q
end

local function queue_zsets(q)
  return {q.ready, q.leases, q.all, q.pending, q.claimed, q.completed, q.failed}
end

-- A queue's keys read from its meta hash. Returns q, or nil and an error reply.
local function queue_from_meta(meta)
  local bad = wrong_type(meta, 'hash')
  if bad then return nil, bad end
  local v = redis.call('HMGET', meta, unpack(QUEUE_FIELDS))
  local q = {meta = meta}
  for i, f in ipairs(QUEUE_FIELDS) do
    if not v[i] then return nil, corrupt(meta, 'key name ' .. f .. ' is missing') end
    q[f] = v[i]
  end
  return q
end

-- Reads a task and checks everything a change may read or write, before any write (Lua
-- does not roll back). Returns t; nil when the task does not exist; or nil and an error
-- reply naming what is corrupt.
local function task_load(rec)
  local bad = wrong_type(rec, 'hash')
  if bad then return nil, bad end
  local cur = redis.call('HMGET', rec, 'status', 'seq', 'attempts', 'max', 'lexp',
    'available', 'claim', 'hkey', 'qmeta', 'id', 'kmap')
  if not cur[1] then return nil end
  local t = {rec = rec, status = cur[1], seq = tonumber(cur[2]), attempts = tonumber(cur[3]),
    max = tonumber(cur[4]), lexp = tonumber(cur[5] or '0'), available = tonumber(cur[6]),
    claim = tonumber(cur[7] or '0'), hkey = cur[8], qmeta = cur[9], id = cur[10],
    kmap = cur[11]}
  if not TASK_STATUS[t.status] then
    return nil, corrupt(rec, 'unknown status ' .. tostring(t.status))
  end
  if not (t.seq and t.attempts and t.max and t.available and t.claim and t.lexp and t.hkey
      and t.qmeta and t.id) then
    return nil, corrupt(rec, 'a field is missing or not a number')
  end
  if t.status == 'claimed' and not cur[5] then
    return nil, corrupt(rec, 'claimed without a lease expiry')
  end
  local q, err = queue_from_meta(t.qmeta)
  if not q then return nil, err end
  t.q = q
  bad = wrong_type(t.hkey, 'list')
  if bad then return nil, bad end
  local last = redis.call('LINDEX', t.hkey, -1)
  if last then
    local ok, a = pcall(cjson.decode, last)
    if not ok or type(a) ~= 'table' then
      return nil, corrupt(t.hkey, 'the last attempt is not valid JSON')
    end
    t.last = a
  end
  if t.kmap then
    bad = wrong_type(t.kmap, 'string')
    if bad then return nil, bad end
  end
  bad = check_zsets(G_ZSETS) or check_zsets(queue_zsets(q))
  if bad then return nil, bad end
  return t
end

local function task_reply(rec)
  local hkey = redis.call('HGET', rec, 'hkey')
  local history = {}
  if hkey then history = redis.call('LRANGE', hkey, 0, -1) end
  return {redis.call('HGETALL', rec), history}
end

-- What a task write left (the caller's receipt).
local function task_receipt(t)
  local cur = redis.call('HMGET', t.rec, 'status', 'attempts', 'lexp', 'available', 'updated')
  return {'ok', cur[1], cur[2], cur[3] or '', cur[4], cur[5]}
end

-- Moves a task between status indexes (all ordered by submission sequence).
local function task_move(t, new)
  redis.call('ZREM', G[t.status], t.rec)
  redis.call('ZREM', t.q[t.status], t.rec)
  redis.call('ZADD', G[new], t.seq, t.rec)
  redis.call('ZADD', t.q[new], t.seq, t.rec)
  t.status = new
end

local function task_unclaim(t)
  redis.call('ZREM', t.q.leases, t.rec)
  redis.call('ZREM', G.leases, t.rec)
  redis.call('HDEL', t.rec, 'lworker', 'lexp')
end

-- Closes the open attempt of the history (the last entry, decoded by task_load).
local function attempt_finish(t, now, outcome, err)
  if not t.last then return end
  local a = t.last
  a.finished = now
  a.outcome = outcome
  if err then a.error = err end
  redis.call('LSET', t.hkey, -1, cjson.encode(a))
end

-- A claim whose lease ran out goes back to pending, or to failed at its last attempt.
-- Returns the status after.
local function expire_claim(t, now)
  if t.status ~= 'claimed' or t.lexp > now then return t.status end
  attempt_finish(t, now, 'lease_expired', nil)
  task_unclaim(t)
  if t.attempts >= t.max then
    redis.call('HSET', t.rec, 'status', 'failed', 'error', 'lease expired', 'finished', ms(now),
      'updated', ms(now))
    task_move(t, 'failed')
    redis.call('ZADD', G.done, now, t.rec)
  else
    redis.call('HSET', t.rec, 'status', 'pending', 'available', ms(now), 'updated', ms(now))
    task_move(t, 'pending')
    redis.call('ZADD', t.q.ready, now, t.rec)
    t.available = now
  end
  return t.status
end

-- Claims a pending, available task for `worker`.
local function task_claim(t, worker, lease, now)
  -- `attempts` counts attempts used up; `claim` numbers every claim and never repeats,
  -- so it fences a stale worker even after a release or a retry reset `attempts`.
  local attempt = t.claim + 1
  local exp = now + lease
  redis.call('HSET', t.rec, 'status', 'claimed', 'attempts', t.attempts + 1,
    'claim', attempt, 'lworker', worker, 'lexp', ms(exp), 'updated', ms(now))
  redis.call('ZREM', t.q.ready, t.rec)
  redis.call('ZADD', t.q.leases, exp, t.rec)
  redis.call('ZADD', G.leases, exp, t.rec)
  task_move(t, 'claimed')
  redis.call('RPUSH', t.hkey,
    cjson.encode({attempt = attempt, worker_id = worker, claimed = now}))
end

-- Removes a task and every trace of it.
local function task_remove(t)
  for _, k in ipairs({G.all, G[t.status], t.q.all, t.q[t.status], t.q.ready, t.q.leases,
      G.leases, G.done}) do
    redis.call('ZREM', k, t.rec)
  end
  if t.kmap and redis.call('GET', t.kmap) == t.rec then redis.call('DEL', t.kmap) end
  redis.call('DEL', t.hkey)
  return redis.call('DEL', t.rec)
end
