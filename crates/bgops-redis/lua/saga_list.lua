-- One page of sagas from an index, newest first, with their hashes.
-- KEYS: index. ARGV: base, offset, limit. Returns {HGETALL, ...}
local ids = redis.call('ZREVRANGE', KEYS[1], tonumber(ARGV[2]),
  tonumber(ARGV[2]) + tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HGETALL', ARGV[1] .. 's:' .. id)
  if #h > 0 then table.insert(out, h) end
end
return out
