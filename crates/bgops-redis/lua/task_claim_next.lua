-- Claims the oldest claimable task of a queue; expired claims of the queue come back
-- first, so a dead worker's task returns without a sweeper.
-- KEYS: ready (zset), leases of the queue (zset). ARGV: base, worker, lease_ms
-- Returns {'ok', HGETALL, history} | {'none'}
local ready, leases, base = KEYS[1], KEYS[2], ARGV[1]
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 100)) do
  expire_claim(base, id, now)
end
local ids = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, 1)
if #ids == 0 then return {'none'} end
task_claim(base, ids[1], ARGV[2], tonumber(ARGV[3]), now)
local r = task_reply(base, ids[1])
return {'ok', r[1], r[2]}
