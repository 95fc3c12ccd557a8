-- Keep an image whose upload failed, unless that would take the stash past its bound.
--   KEYS[1] images  the stash hash: object key → image
--   KEYS[2] total   the bytes the stash holds
--   ARGV[1] object key, ARGV[2] image, ARGV[3] most bytes the stash may hold
-- Returns 1 when the image is kept, 0 when the stash is full.
local images, total = KEYS[1], KEYS[2]
local objectKey, image, maxBytes = ARGV[1], ARGV[2], tonumber(ARGV[3])

local replaced = redis.call('HSTRLEN', images, objectKey)
local size = string.len(image)
local used = tonumber(redis.call('GET', total) or '0')
if used - replaced + size > maxBytes then return 0 end
redis.call('HSET', images, objectKey, image)
redis.call('INCRBY', total, size - replaced)
return 1
