-- Saga helpers. Every key a script touches is passed in KEYS, built by keys.rs; index
-- members are saga hash keys. A script that moves a saga between indexes gets all of
-- them (keys.rs `saga_indexes`) from KEYS[first]: all, active, tenant, then one per
-- status and one per tenant + status, in SAGA_STATUS order, then `finished` (finished
-- sagas scored by the server time of their last write, for retention).
local SAGA_STATUS = {pending = 1, running = 2, completed = 3, compensating = 4,
  compensated = 5, compensation_failed = 6}

local function saga_indexes(first)
  local keys = {}
  for i = first, first + 15 do keys[#keys + 1] = KEYS[i] end
  return {
    list = keys,
    all = KEYS[first], active = KEYS[first + 1], tenant = KEYS[first + 2],
    finished = KEYS[first + 15],
    st = function(s) return KEYS[first + 2 + SAGA_STATUS[s]] end,
    ts = function(s) return KEYS[first + 8 + SAGA_STATUS[s]] end,
  }
end

local function active_status(status)
  return status == 'running' or status == 'compensating'
end

local function finished_status(status)
  return status == 'completed' or status == 'compensated' or status == 'compensation_failed'
end

local function saga_index_remove(ix, rec, status)
  redis.call('ZREM', ix.all, rec)
  redis.call('ZREM', ix.st(status), rec)
  redis.call('ZREM', ix.tenant, rec)
  redis.call('ZREM', ix.ts(status), rec)
  redis.call('ZREM', ix.active, rec)
  redis.call('ZREM', ix.finished, rec)
end

-- Indexes by creation time (newest first on read); `active` holds running and
-- compensating sagas scored by their lease expiry (0 without a lease) for recovery.
local function saga_index_add(ix, rec, status, created, lexp)
  redis.call('ZADD', ix.all, created, rec)
  redis.call('ZADD', ix.st(status), created, rec)
  redis.call('ZADD', ix.tenant, created, rec)
  redis.call('ZADD', ix.ts(status), created, rec)
  if active_status(status) then
    redis.call('ZADD', ix.active, lexp or 0, rec)
  else
    redis.call('ZREM', ix.active, rec)
  end
  if finished_status(status) then
    redis.call('ZADD', ix.finished, now_ms(), rec)
  else
    redis.call('ZREM', ix.finished, rec)
  end
end
