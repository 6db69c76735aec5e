-- Type checks, prepended to the scripts that read keys other than the ones they own.
-- Returns an error reply when `key` holds something other than `want`.
-- A key found right is not asked again within the same script call (a batch script
-- checks each index once, not once per task): only this script writes in between.
local CHECKED = {}
local function wrong_type(key, want)
  if CHECKED[key] == want then return nil end
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    return corrupt(key, 'holds a ' .. t .. ', expected a ' .. want)
  end
  CHECKED[key] = want
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

