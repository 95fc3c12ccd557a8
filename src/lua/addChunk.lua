-- Register a chunk of rows whose file is stored: from now on the feeders may queue its rows.
--   KEYS[1] meta       the campaign:<id> hash (its total counts the rows)
--   KEYS[2] chunks     the campaign:<id>:chunks list, `<name> <rows>` per chunk in input order
--   KEYS[3] producers  the campaign:<id>:producers sorted set
--   KEYS[4] feeding    the app:<appid>:feeding set
--   ARGV[1] producer id (or empty: no lease), ARGV[2] its lease (ms), ARGV[3] chunk name, ARGV[4] rows in it,
--   ARGV[5] campaign id
-- Returns the chunk's index.
local meta, chunks, producers, feeding = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local producer, lease_ms, name, rows, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- @include producers

-- Renewed with the rows it covers, so that no row is added to a campaign that completed without it.
if producer ~= '' then hold_open(meta, producers, producer, lease_ms) end
redis.call('HINCRBY', meta, 'total', rows)
-- A producer whose lease ran out may find its campaign completed and taken off the feeding set: its new rows
-- must be fed all the same.
redis.call('SADD', feeding, id)
return redis.call('RPUSH', chunks, name .. ' ' .. rows) - 1
