-- Deletes a saga, its history, its key mapping and its index entries.
-- KEYS: saga, history. ARGV: base. Returns 1 | 0
local rec, hist, base = KEYS[1], KEYS[2], ARGV[1]
local cur = redis.call('HMGET', rec, 'status', 'tenant', 'ikey', 'id')
redis.call('DEL', hist)
if not cur[1] then return redis.call('DEL', rec) end
if cur[2] and cur[4] then
  saga_index_remove(base, cur[4], cur[1], cur[2])
  if cur[3] then
    local keymap = base .. 'key:' .. enc(cur[2]) .. ':' .. cur[3]
    if redis.call('GET', keymap) == cur[4] then redis.call('DEL', keymap) end
  end
end
redis.call('DEL', rec)
return 1
