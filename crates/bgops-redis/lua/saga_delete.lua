-- Deletes a saga, its history, its key mapping and its index entries. The caller read the
-- saga's status and tenant first to build the index keys; if they changed since, the
-- answer is 'retry'.
-- KEYS: saga, history, key mapping (or the saga key again), then the 16 indexes of the
--       tenant (saga_common.lua). ARGV: expected status, expected tenant.
-- Returns 1 | 0 | 'retry'
local rec, hist, keymap = KEYS[1], KEYS[2], KEYS[3]
local ix = saga_indexes(4)
local bad = wrong_type(rec, 'hash') or wrong_type(hist, 'list')
if bad then return bad end
local cur = redis.call('HMGET', rec, 'status', 'tenant', 'ikey')
if not cur[1] then
  if ARGV[1] ~= '' then return 'retry' end
  redis.call('DEL', hist)
  return 0
end
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 'retry' end
if not SAGA_STATUS[cur[1]] then return corrupt(rec, 'unknown status ' .. cur[1]) end
bad = check_zsets(ix.list)
if bad then return bad end
if cur[3] and keymap ~= rec then
  bad = wrong_type(keymap, 'string')
  if bad then return bad end
  if redis.call('GET', keymap) == rec then redis.call('DEL', keymap) end
end
saga_index_remove(ix, rec, cur[1])
redis.call('DEL', hist)
redis.call('DEL', rec)
return 1
