-- Deletes a record and its index entry. KEYS: record, bucket index. Returns 1 | 0
-- The index first: if it is corrupt, this fails before anything is written.
redis.call('ZREM', KEYS[2], KEYS[1])
return redis.call('DEL', KEYS[1])
