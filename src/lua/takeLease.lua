-- Take a lease (a feeder's hold on an app), or renew it if it is ours already.
--   KEYS[1] lease   the lease's key
--   ARGV[1] holder id, ARGV[2] its life (ms)
-- Returns 1 when held by the caller now, else 0.
local lease = KEYS[1]
local holder, ms = ARGV[1], ARGV[2]

local current = redis.call('GET', lease)
if current and current ~= holder then return 0 end
redis.call('SET', lease, holder, 'PX', ms)
return 1
