-- Deletes a record and its index entry. KEYS: record, bucket index. Returns 1 | 0
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return n
