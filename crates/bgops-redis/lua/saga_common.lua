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

-- The index keys a write moving a saga from status `old` (nil: a new saga) to `new`
-- touches: the only ones its script must type-check before its first write. Most saves
-- keep the status and touch one key (or none), not all sixteen.
local function saga_touched(ix, old, new)
  local keys = {}
  if old ~= new then
    if not old then
      keys = {ix.all, ix.tenant}
    else
      keys = {ix.st(old), ix.ts(old)}
    end
    keys[#keys + 1] = ix.st(new)
    keys[#keys + 1] = ix.ts(new)
  end
  if active_status(new) or (old and active_status(old)) then keys[#keys + 1] = ix.active end
  if finished_status(new) or (old and finished_status(old)) then
    keys[#keys + 1] = ix.finished
  end
  return keys
end

local function saga_index_remove(ix, rec, status)
  redis.call('ZREM', ix.all, rec)
  redis.call('ZREM', ix.st(status), rec)
  redis.call('ZREM', ix.tenant, rec)
  redis.call('ZREM', ix.ts(status), rec)
  redis.call('ZREM', ix.active, rec)
  redis.call('ZREM', ix.finished, rec)
end

-- The recovery and retention indexes after a write in status `new` (from `old`, nil for
-- a new saga): `active` scores running and compensating sagas by lease expiry (0 without
-- a lease), `finished` scores finished ones by the time of this write.
local function saga_index_state(ix, rec, old, new, lexp)
  if active_status(new) then
    redis.call('ZADD', ix.active, lexp or 0, rec)
  elseif old and active_status(old) then
    redis.call('ZREM', ix.active, rec)
  end
  if finished_status(new) then
    redis.call('ZADD', ix.finished, now_ms(), rec)
  elseif old and finished_status(old) then
    redis.call('ZREM', ix.finished, rec)
  end
end

-- A new saga: indexes by creation time (newest first on read), then its state.
local function saga_index_add(ix, rec, status, created, lexp)
  redis.call('ZADD', ix.all, created, rec)
  redis.call('ZADD', ix.st(status), created, rec)
  redis.call('ZADD', ix.tenant, created, rec)
  redis.call('ZADD', ix.ts(status), created, rec)
  saga_index_state(ix, rec, nil, status, lexp)
end

-- A status change: only the by-status sets move (creation time and tenant stay).
local function saga_index_move(ix, rec, old, new, created, lexp)
  redis.call('ZREM', ix.st(old), rec)
  redis.call('ZREM', ix.ts(old), rec)
  redis.call('ZADD', ix.st(new), created, rec)
  redis.call('ZADD', ix.ts(new), created, rec)
  saga_index_state(ix, rec, old, new, lexp)
end
