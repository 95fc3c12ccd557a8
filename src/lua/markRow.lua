-- Settle a queued row: it leaves the window, done, or failed with its reason kept for `retry`. A row that is not
-- in the window is settled already (a second worker on the same job, a job added twice): nothing changes.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] window     the campaign:<id>:window hash
--   KEYS[3] failed     the campaign:<id>:failed hash, slot -> JSON [errcode, errmsg, value]
--   KEYS[4] producers  the campaign:<id>:producers sorted set
--   ARGV[1] slot, ARGV[2] DONE or FAILED, ARGV[3] errcode, ARGV[4] errmsg
-- Returns COMPLETED when this row completed the campaign, UNKNOWN for a campaign that does not exist, else OPEN.
-- The statuses and results are declared ahead of this script by store.ts (LUA_CONSTANTS).
local meta, window, failed, producers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local slot, status, errcode, errmsg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

-- @include producers
-- @include completeIfSettled

if redis.call('EXISTS', meta) == 0 then return UNKNOWN end
local value = redis.call('HGET', window, slot)
if not value then return OPEN end
redis.call('HDEL', window, slot)
redis.call('HINCRBY', meta, 'queued', -1)
if status == DONE then
  redis.call('HINCRBY', meta, 'done', 1)
else
  redis.call('HSET', failed, slot, cjson.encode({tonumber(errcode), errmsg, value}))
  redis.call('HINCRBY', meta, 'failed', 1)
end
return complete_if_settled(meta, producers)
