-- A producer has added every row: its lease is dropped, and the campaign is active, or completed if nothing is
-- left, once no other producer holds it open. Without a producer, only the check: for producers that are gone.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] producers  the campaign:<id>:producers sorted set
--   ARGV[1] producer id, or empty
-- Returns COMPLETED or OPEN.
-- COMPLETED and OPEN are declared ahead of this script by store.ts (LUA_CONSTANTS).
local meta, producers = KEYS[1], KEYS[2]
local producer = ARGV[1]

-- @include producers
-- @include completeIfSettled

if producer ~= '' then redis.call('ZREM', producers, producer) end
return complete_if_settled(meta, producers)
