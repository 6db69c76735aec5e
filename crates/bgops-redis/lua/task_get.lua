-- A task with its history, by id or by queue + key.
-- KEYS: task, or key mapping. ARGV: base, 'id' | 'key'. Returns {HGETALL, history} | {}
local base = ARGV[1]
local id
if ARGV[2] == 'key' then
  id = redis.call('GET', KEYS[1])
  if not id then return {} end
else
  id = string.sub(KEYS[1], #base + 3)
end
return task_reply(base, id)
