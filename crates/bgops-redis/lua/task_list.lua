-- One page of tasks from an index, oldest first (members are task hash keys).
-- KEYS: index. ARGV: offset, limit. Returns {HGETALL, history, HGETALL, history, ...}
local recs = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]),
  tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local out = {}
for _, rec in ipairs(recs) do
  if redis.call('TYPE', rec)['ok'] == 'hash' then
    local r = task_reply(rec)
    if #r[1] > 0 then
      table.insert(out, r[1])
      table.insert(out, r[2])
    end
  end
end
return out
