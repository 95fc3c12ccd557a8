-- Drop the cached token if it is the one WeChat rejected, so that of many callers rejected with the same token
-- only the first drops it and one refetch follows.
--   KEYS[1] cache   the token:<appid> string (JSON with a token field)
--   ARGV[1] rejected token
-- Returns 1 when dropped, else 0.
local cache = KEYS[1]
local rejected = ARGV[1]

local cached = redis.call('GET', cache)
if cached and cjson.decode(cached).token == rejected then return redis.call('DEL', cache) end
return 0
