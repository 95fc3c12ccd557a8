-- Record rows as pending, each once, in input order.
--   KEYS[1] meta       the campaign:<id> hash (its total counts the rows)
--   KEYS[2] rows       the campaign:<id>:rows hash, row value -> status
--   KEYS[3] order      the campaign:<id>:order list
--   KEYS[4] producers  the campaign:<id>:producers sorted set
--   ARGV[1] producer id (or empty: no lease), ARGV[2] its lease (ms), then the row values
-- Returns per value ADDED, ALREADY_PENDING, or ALREADY_SETTLED (done or failed).
-- PENDING and the results are declared ahead of this script by store.ts (LUA_CONSTANTS).
local meta, rows, order, producers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local producer, lease_ms = ARGV[1], ARGV[2]

-- @include producers

-- Renewed with the rows it covers, so that no row is added to a campaign that completed without it.
if producer ~= '' then hold_open(meta, producers, producer, lease_ms) end
local result = {}
local added = 0
for i = 3, #ARGV do
  local value = ARGV[i]
  if redis.call('HSETNX', rows, value, PENDING) == 1 then
    redis.call('RPUSH', order, value)
    result[i - 2] = ADDED
    added = added + 1
  elseif redis.call('HGET', rows, value) == PENDING then
    result[i - 2] = ALREADY_PENDING
  else
    result[i - 2] = ALREADY_SETTLED
  end
end
if added > 0 then redis.call('HINCRBY', meta, 'total', added) end
return result
