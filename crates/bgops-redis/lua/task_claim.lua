-- Claims one task if it is claimable (an expired claim is first given back).
-- KEYS: task. ARGV: base, id, worker, lease_ms. Returns {'ok', HGETALL, history} | {'none'}
local rec, base, id = KEYS[1], ARGV[1], ARGV[2]
local bad = wrong_type(rec, 'hash')
if bad then return bad end
local now = now_ms()
local status = expire_claim(base, id, now)
if status ~= 'pending' then return {'none'} end
local available = tonumber(redis.call('HGET', rec, 'available'))
if not available then return corrupt(rec, 'field available missing') end
if available > now then return {'none'} end
task_claim(base, id, ARGV[3], tonumber(ARGV[4]), now)
local r = task_reply(base, id)
return {'ok', r[1], r[2]}
