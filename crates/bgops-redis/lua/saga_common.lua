-- Saga helpers. Every saga key lives under one tag ({saga}), so scripts may build the
-- index keys they need from the base they are given: all of them are in the same slot.
local function enc(s) return #s .. ':' .. s end

local function active_status(status)
  return status == 'running' or status == 'compensating'
end

local function saga_index_remove(base, id, status, tenant)
  redis.call('ZREM', base .. 'idx:all', id)
  redis.call('ZREM', base .. 'idx:st:' .. status, id)
  redis.call('ZREM', base .. 'idx:t:' .. enc(tenant), id)
  redis.call('ZREM', base .. 'idx:ts:' .. enc(tenant) .. ':' .. status, id)
  redis.call('ZREM', base .. 'active', id)
end

-- Indexes by creation time (newest first on read); `active` holds running and
-- compensating sagas scored by their lease expiry (0 without a lease) for recovery.
local function saga_index_add(base, id, status, tenant, created, lexp)
  redis.call('ZADD', base .. 'idx:all', created, id)
  redis.call('ZADD', base .. 'idx:st:' .. status, created, id)
  redis.call('ZADD', base .. 'idx:t:' .. enc(tenant), created, id)
  redis.call('ZADD', base .. 'idx:ts:' .. enc(tenant) .. ':' .. status, created, id)
  if active_status(status) then
    redis.call('ZADD', base .. 'active', lexp or 0, id)
  else
    redis.call('ZREM', base .. 'active', id)
  end
end

-- Checks every index a status change from `old` to `new` writes, before the first write.
local function saga_index_check(base, old, new, tenant)
  return check_zsets({base .. 'idx:all', base .. 'idx:st:' .. old, base .. 'idx:st:' .. new,
    base .. 'idx:t:' .. enc(tenant), base .. 'idx:ts:' .. enc(tenant) .. ':' .. old,
    base .. 'idx:ts:' .. enc(tenant) .. ':' .. new, base .. 'active'})
end
