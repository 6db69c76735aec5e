-- Deletes a record and its index entry. KEYS: record, bucket index. Returns 1 | 0
-- The index first: if it is corrupt, this fails before anything is written.
local removed = redis.pcall('ZREM', KEYS[2], KEYS[1])
if type(removed) == 'table' and removed.err then return corrupt(KEYS[2], removed.err) end
return redis.call('DEL', KEYS[1])
