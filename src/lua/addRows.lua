-- Record rows as pending, each once, in input order.
--   KEYS[1] meta    the campaign:<id> hash (its total counts the rows)
--   KEYS[2] rows    the campaign:<id>:rows hash, row value -> status
--   KEYS[3] order   the campaign:<id>:order list
--   ARGV            the row values
-- Returns per value ADDED, ALREADY_PENDING, or ALREADY_SETTLED (done or failed).
-- PENDING and the results are declared ahead of this script by store.ts (LUA_CONSTANTS).
local meta, rows, order = KEYS[1], KEYS[2], KEYS[3]

local result = {}
local added = 0
for i, value in ipairs(ARGV) do
  if redis.call('HSETNX', rows, value, PENDING) == 1 then
    redis.call('RPUSH', order, value)
    result[i] = ADDED
    added = added + 1
  elseif redis.call('HGET', rows, value) == PENDING then
    result[i] = ALREADY_PENDING
  else
    result[i] = ALREADY_SETTLED
  end
end
if added > 0 then redis.call('HINCRBY', meta, 'total', added) end
return result
