-- One page of tasks from an index, oldest first. KEYS: index. ARGV: base, offset, limit.
-- Returns {HGETALL, history, HGETALL, history, ...}
local base = ARGV[1]
local ids = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[2]),
  tonumber(ARGV[2]) + tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local r = task_reply(base, id)
  if #r[1] > 0 then
    table.insert(out, r[1])
    table.insert(out, r[2])
  end
end
return out
