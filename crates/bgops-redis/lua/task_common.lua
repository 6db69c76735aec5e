-- Task helpers. Every task key lives under one tag ({task}), so scripts build the index
-- keys they need from the base they are given: all of them are in the same slot.
local function enc(s) return #s .. ':' .. s end

local function task_reply(base, id)
  return {redis.call('HGETALL', base .. 't:' .. id), redis.call('LRANGE', base .. 'h:' .. id, 0, -1)}
end

-- Moves a task between status indexes (both ordered by submission sequence).
local function task_move(base, id, queue, seq, old, new)
  if old then
    redis.call('ZREM', base .. 'idx:st:' .. old, id)
    redis.call('ZREM', base .. 'idx:qs:' .. enc(queue) .. ':' .. old, id)
  end
  redis.call('ZADD', base .. 'idx:st:' .. new, seq, id)
  redis.call('ZADD', base .. 'idx:qs:' .. enc(queue) .. ':' .. new, seq, id)
end

local function task_unclaim(base, id, queue)
  redis.call('ZREM', base .. 'leases:' .. enc(queue), id)
  redis.call('ZREM', base .. 'leases', id)
end

-- Closes the open attempt of the history (the last entry).
local function attempt_finish(base, id, now, outcome, err)
  local hist = base .. 'h:' .. id
  local last = redis.call('LINDEX', hist, -1)
  if not last then return end
  local a = cjson.decode(last)
  a.finished = now
  a.outcome = outcome
  if err then a.error = err end
  redis.call('LSET', hist, -1, cjson.encode(a))
end

local function task_fields(base, id)
  local rec = base .. 't:' .. id
  local cur = redis.call('HMGET', rec, 'status', 'queue', 'seq', 'attempts', 'max', 'lexp',
    'available', 'claim')
  return rec, cur
end

-- A claim whose lease ran out goes back to pending, or to failed at its last attempt.
-- Returns the status after.
local function expire_claim(base, id, now)
  local rec, cur = task_fields(base, id)
  if cur[1] ~= 'claimed' then return cur[1] end
  if (tonumber(cur[6]) or 0) > now then return 'claimed' end
  local queue, seq = cur[2], tonumber(cur[3])
  attempt_finish(base, id, now, 'lease_expired', nil)
  task_unclaim(base, id, queue)
  redis.call('HDEL', rec, 'lworker', 'lexp')
  if tonumber(cur[4]) >= tonumber(cur[5]) then
    redis.call('HSET', rec, 'status', 'failed', 'error', 'lease expired', 'finished', ms(now),
      'updated', ms(now))
    task_move(base, id, queue, seq, 'claimed', 'failed')
    redis.call('ZADD', base .. 'done', now, id)
    return 'failed'
  end
  redis.call('HSET', rec, 'status', 'pending', 'available', ms(now), 'updated', ms(now))
  task_move(base, id, queue, seq, 'claimed', 'pending')
  redis.call('ZADD', base .. 'ready:' .. enc(queue), now, id)
  return 'pending'
end

-- Claims a pending, available task for `worker`.
local function task_claim(base, id, worker, lease, now)
  local rec, cur = task_fields(base, id)
  local queue, seq = cur[2], tonumber(cur[3])
  -- `attempts` counts attempts used up; `claim` numbers every claim and never repeats,
  -- so it fences a stale worker even after a release or a retry reset `attempts`.
  local attempt = (tonumber(cur[8]) or 0) + 1
  local exp = now + lease
  redis.call('HSET', rec, 'status', 'claimed', 'attempts', (tonumber(cur[4]) or 0) + 1,
    'claim', attempt, 'lworker', worker, 'lexp', ms(exp), 'updated', ms(now))
  redis.call('ZREM', base .. 'ready:' .. enc(queue), id)
  redis.call('ZADD', base .. 'leases:' .. enc(queue), exp, id)
  redis.call('ZADD', base .. 'leases', exp, id)
  task_move(base, id, queue, seq, 'pending', 'claimed')
  redis.call('RPUSH', base .. 'h:' .. id,
    cjson.encode({attempt = attempt, worker_id = worker, claimed = now}))
end

-- Removes a task and every trace of it.
local function task_remove(base, id)
  local rec = base .. 't:' .. id
  local cur = redis.call('HMGET', rec, 'status', 'queue', 'ikey')
  if cur[1] and cur[2] then
    local q = enc(cur[2])
    for _, k in ipairs({'idx:all', 'idx:st:' .. cur[1], 'idx:q:' .. q,
        'idx:qs:' .. q .. ':' .. cur[1], 'ready:' .. q, 'leases:' .. q, 'leases', 'done'}) do
      redis.call('ZREM', base .. k, id)
    end
    if cur[3] then
      local keymap = base .. 'key:' .. q .. ':' .. cur[3]
      if redis.call('GET', keymap) == id then redis.call('DEL', keymap) end
    end
  end
  redis.call('DEL', base .. 'h:' .. id)
  return redis.call('DEL', rec)
end

-- Checks that `attempt` is the current claim. Returns an error code or nil.
local function check_claim(cur, attempt)
  if not cur[1] then return 'not_found' end
  if cur[1] ~= 'claimed' or tonumber(cur[8]) ~= tonumber(attempt) then return 'lease_lost' end
  return nil
end

-- What a task write left (the caller's receipt): status, attempts, lease expiry ('' when
-- not claimed), available, updated.
local function task_receipt(rec)
  local cur = redis.call('HMGET', rec, 'status', 'attempts', 'lexp', 'available', 'updated')
  return {'ok', cur[1], cur[2], cur[3] or '', cur[4], cur[5]}
end
