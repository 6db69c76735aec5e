-- One page of sagas from an index, newest first, with their hashes (index members are
-- saga hash keys). KEYS: index. ARGV: offset, limit. Returns {HGETALL, ...}
local keys = redis.call('ZREVRANGE', KEYS[1], tonumber(ARGV[1]),
  tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local out = {}
for _, rec in ipairs(keys) do
  if redis.call('TYPE', rec)['ok'] == 'hash' then
    local h = redis.call('HGETALL', rec)
    if #h > 0 then table.insert(out, h) end
  end
end
return out
