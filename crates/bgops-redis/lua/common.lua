-- Shared helpers, prepended to every script (kept small: the hot-path scripts pay for
-- every helper defined here on each call). Time always comes from the server
-- (redis.call('TIME')), so lease and expiry decisions never depend on client clocks.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- 'BGOPS_CORRUPT <length of key>:<key> <reason>': error replies are one line, and a key
-- may hold spaces, so the key is length-prefixed (error.rs reads it back).
local function corrupt(key, reason)
  return redis.error_reply('BGOPS_CORRUPT ' .. #key .. ':' .. key .. ' ' .. reason)
end

local function ms(n)
  return string.format('%d', n)
end
