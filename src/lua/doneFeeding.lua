-- Take a campaign off its app's feeding set once it is not running, checked and done at once: a retry or an
-- enqueue that reopens it meanwhile adds it back, and must not find it taken off after that.
--   KEYS[1] feeding  the app:<appid>:feeding set
--   KEYS[2] meta     the campaign:<id> hash
--   ARGV[1] campaign id
-- Returns 1 when taken off, 0 when it is running.
local feeding, meta = KEYS[1], KEYS[2]
local id = ARGV[1]

local state = redis.call('HGET', meta, 'state')
if state == 'active' or state == 'enqueuing' then return 0 end
redis.call('SREM', feeding, id)
return 1
