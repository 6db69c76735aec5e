-- Claims one task if it is claimable (an expired claim is first given back).
-- KEYS: globals, task. ARGV: worker, lease_ms. Returns {'ok', HGETALL, history} | {'none'}
local t, err = task_load(KEYS[9])
if err then return err end
if not t then return {'none'} end
local now = now_ms()
if expire_claim(t, now) ~= 'pending' or t.available > now then return {'none'} end
task_claim(t, ARGV[1], tonumber(ARGV[2]), now)
local r = task_reply(t.rec)
return {'ok', r[1], r[2]}
