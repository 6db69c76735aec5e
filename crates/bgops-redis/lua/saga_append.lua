-- Appends one history entry to an existing saga. KEYS: saga, history. ARGV: entry.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 'ok'
