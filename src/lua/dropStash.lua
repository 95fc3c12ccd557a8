-- Forget a stashed image (uploaded, or found stored already) and the bytes it held.
--   KEYS[1] images  the stash hash: object key → image
--   KEYS[2] total   the bytes the stash holds
--   ARGV[1] object key
-- Returns 1 when an image was dropped, 0 when there was none.
local images, total = KEYS[1], KEYS[2]
local objectKey = ARGV[1]

local size = redis.call('HSTRLEN', images, objectKey)
if redis.call('HDEL', images, objectKey) == 0 then return 0 end
redis.call('DECRBY', total, size)
return 1
