-- Clear a stop so the campaign's remaining rows can be queued again, by the producer taking a lease here.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] producers  the campaign:<id>:producers sorted set
--   KEYS[3] feeding    the app:<appid>:feeding set
--   ARGV[1] producer id, ARGV[2] lease (ms), ARGV[3] campaign id
local meta, producers, feeding = KEYS[1], KEYS[2], KEYS[3]
local producer, lease_ms, id = ARGV[1], ARGV[2], ARGV[3]

-- @include producers

redis.call('HDEL', meta, 'stopErrcode', 'stopErrmsg', 'stoppedAt')
redis.call('HSET', meta, 'state', 'enqueuing')
redis.call('SADD', feeding, id)
hold_open(meta, producers, producer, lease_ms)
return 1
