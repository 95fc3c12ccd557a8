-- Set a row's status and move the counters with it. A done row stays done: its image is stored.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] rows       the campaign:<id>:rows hash
--   KEYS[3] producers  the campaign:<id>:producers sorted set
--   ARGV[1] row value, ARGV[2] new status (PENDING, DONE, or FAILED followed by errcode|errmsg)
-- Returns COMPLETED when this row completed the campaign, UNKNOWN for a row never added, else OPEN.
-- The statuses and results are declared ahead of this script by store.ts (LUA_CONSTANTS).
local meta, rows, producers = KEYS[1], KEYS[2], KEYS[3]
local value, status = ARGV[1], ARGV[2]

-- @include producers
-- @include completeIfSettled

local old = redis.call('HGET', rows, value)
if not old then return UNKNOWN end
local was = string.sub(old, 1, 1)
local becomes = string.sub(status, 1, 1)
if was == DONE then return OPEN end
redis.call('HSET', rows, value, status)
if was ~= becomes then
  if was == FAILED then redis.call('HINCRBY', meta, 'failed', -1) end
  if becomes == DONE then
    redis.call('HINCRBY', meta, 'done', 1)
  elseif becomes == FAILED then
    redis.call('HINCRBY', meta, 'failed', 1)
  end
end
return complete_if_settled(meta, producers)
