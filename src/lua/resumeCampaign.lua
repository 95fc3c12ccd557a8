-- Clear a stop so the campaign's remaining rows can be queued again, by the producer taking a lease here.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] producers  the campaign:<id>:producers sorted set
--   ARGV[1] producer id, ARGV[2] lease (ms)
local meta, producers = KEYS[1], KEYS[2]
local producer, lease_ms = ARGV[1], ARGV[2]

-- @include producers

redis.call('HDEL', meta, 'stopErrcode', 'stopErrmsg', 'stoppedAt')
redis.call('HSET', meta, 'state', 'enqueuing')
hold_open(meta, producers, producer, lease_ms)
return 1
