-- Finished sagas due for retention: last written while finished more than ARGV[1] ms ago
-- by server time, oldest first. KEYS: the finished index. ARGV: older_than ms, limit.
-- Returns up to limit + 1 saga hash keys (one more than asked says whether more are due);
-- the caller deletes each through saga_delete.lua, which checks it did not change.
local bad = wrong_type(KEYS[1], 'zset')
if bad then return bad end
local cutoff = now_ms() - tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0,
  tonumber(ARGV[2]) + 1)
