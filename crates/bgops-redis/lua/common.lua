-- Shared helpers, prepended to every script. Time always comes from the server
-- (redis.call('TIME')), so lease and expiry decisions never depend on client clocks.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function corrupt(key, reason)
  return redis.error_reply('BGOPS_CORRUPT ' .. key .. '\n' .. reason)
end

-- Returns an error reply when `key` holds something other than `want`.
local function wrong_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    return corrupt(key, 'holds a ' .. t .. ', expected a ' .. want)
  end
  return nil
end

-- The first of `keys` that holds something other than a sorted set, as an error reply.
local function check_zsets(keys)
  for _, k in ipairs(keys) do
    local bad = wrong_type(k, 'zset')
    if bad then return bad end
  end
  return nil
end

local function ms(n)
  return string.format('%d', n)
end
