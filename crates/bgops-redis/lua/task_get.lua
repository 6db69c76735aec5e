-- A task with its history, by its hash key or through a key mapping.
-- KEYS: task, or key mapping. ARGV: 'id' | 'key'. Returns {HGETALL, history} | {}
local rec = KEYS[1]
if ARGV[1] == 'key' then
  local bad = wrong_type(rec, 'string')
  if bad then return bad end
  rec = redis.call('GET', rec)
  if not rec then return {} end
end
local bad = wrong_type(rec, 'hash')
if bad then return bad end
return task_reply(rec)
