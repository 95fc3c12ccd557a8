-- Delete a campaign's records if its state allows, checked and done at once so that a retry or an enqueue that
-- reopens the campaign meanwhile keeps it.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] window     the campaign:<id>:window hash
--   KEYS[3] failed     the campaign:<id>:failed hash
--   KEYS[4] chunks     the campaign:<id>:chunks list
--   KEYS[5] producers  the campaign:<id>:producers sorted set
--   KEYS[6] index      the campaigns sorted set
--   KEYS[7] feeding    the app:<appid>:feeding set
--   ARGV[1] campaign id, ARGV[2] the states that may be deleted, comma-separated,
--   ARGV[3] empty, or how long ago (ms, by Redis's clock) it must have completed
-- Returns DELETED, UNKNOWN, KEPT_RECENT, or the state that kept it.
local meta, window, failed, chunks, producers, index, feeding =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, allowed, older_than = ARGV[1], ARGV[2], ARGV[3]

-- @include producers

local state = redis.call('HGET', meta, 'state')
if not state then return UNKNOWN end
if not string.find(',' .. allowed .. ',', ',' .. state .. ',', 1, true) then return state end
if older_than ~= '' then
  -- Campaigns completed before completedAt was recorded count from their creation.
  local since = redis.call('HGET', meta, 'completedAt') or redis.call('HGET', meta, 'createdAt')
  if redis_now() - tonumber(since) < tonumber(older_than) then return KEPT_RECENT end
end
redis.call('UNLINK', meta, window, failed, chunks, producers)
redis.call('ZREM', index, id)
redis.call('SREM', feeding, id)
return DELETED
