-- Release a lock or lease if it is still ours: once it expired, another process may hold it.
--   KEYS[1] lock    the lock's key (token:<appid>:lock, feeder:<appid>)
--   ARGV[1] owner   the value this process locked with
-- Returns 1 when released, else 0.
local lock = KEYS[1]
local owner = ARGV[1]

if redis.call('GET', lock) == owner then return redis.call('DEL', lock) end
return 0
