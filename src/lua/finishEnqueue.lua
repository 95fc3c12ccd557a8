-- The producer has added every row: an enqueuing campaign becomes active, and completed if nothing is left.
--   KEYS[1] meta    the campaign:<id> hash
--   ARGV[1] now (ms)
-- Returns COMPLETED or OPEN.
-- COMPLETED and OPEN are declared ahead of this script by store.ts (LUA_CONSTANTS).
local meta = KEYS[1]
local now = ARGV[1]

-- @include completeIfSettled

if redis.call('HGET', meta, 'state') == 'enqueuing' then
  redis.call('HSET', meta, 'state', 'active')
end
return complete_if_settled(meta, now)
