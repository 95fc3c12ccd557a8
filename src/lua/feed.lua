-- Queue the next rows of a campaign: record them in its window and move its cursor, if the cursor is still
-- where the feeder read it (another feeder may have fed those rows meanwhile) and the campaign is running.
--   KEYS[1] meta    the campaign:<id> hash (fedChunk, fedRow: the next row to feed; queued: rows in the window)
--   KEYS[2] window  the campaign:<id>:window hash, slot -> row value, the rows queued and not settled
--   ARGV[1] chunk and ARGV[2] row the cursor must be at, ARGV[3] chunk and ARGV[4] row it moves to,
--   then slot, value for each row
-- Returns 1 when fed (the caller then adds their jobs), 0 when not.
local meta, window = KEYS[1], KEYS[2]
local at_chunk, at_row, to_chunk, to_row = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local m = redis.call('HMGET', meta, 'state', 'fedChunk', 'fedRow')
if m[1] ~= 'active' and m[1] ~= 'enqueuing' then return 0 end
if m[2] ~= at_chunk or m[3] ~= at_row then return 0 end
local rows = 0
for i = 5, #ARGV, 2 do
  redis.call('HSET', window, ARGV[i], ARGV[i + 1])
  rows = rows + 1
end
redis.call('HSET', meta, 'fedChunk', to_chunk, 'fedRow', to_row)
redis.call('HINCRBY', meta, 'queued', rows)
return 1
