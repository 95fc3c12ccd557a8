-- Stop a running (active or enqueuing) campaign, recording why.
--   KEYS[1] meta    the campaign:<id> hash
--   ARGV[1] errcode, ARGV[2] errmsg, ARGV[3] now (ms)
-- Returns 1 when stopped, 0 when the campaign was not running.
local meta = KEYS[1]
local errcode, errmsg, now = ARGV[1], ARGV[2], ARGV[3]

local state = redis.call('HGET', meta, 'state')
if state ~= 'active' and state ~= 'enqueuing' then return 0 end
redis.call('HSET', meta, 'state', 'stopped', 'stopErrcode', errcode, 'stopErrmsg', errmsg, 'stoppedAt', now)
return 1
