-- Create a campaign, or reopen it for more rows when its app and options are the same.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] index      the campaigns sorted set
--   KEYS[3] producers  the campaign:<id>:producers sorted set
--   KEYS[4] feeding    the app:<appid>:feeding set, the campaigns the feeders look at
--   ARGV[1] id, ARGV[2] appid, ARGV[3] kind, ARGV[4] options (JSON), ARGV[5] now (ms),
--   ARGV[6] producer id (or empty: no lease), ARGV[7] its lease (ms), ARGV[8] priority (BullMQ's, 1 first)
-- Returns {outcome, state before}: created, conflict (other app or options), stopped, or exists.
-- A campaign reopened keeps the priority it was created with.
local meta, index, producers, feeding = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, appid, kind, options, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local producer, lease_ms, priority = ARGV[6], ARGV[7], ARGV[8]

-- @include producers

if redis.call('EXISTS', meta) == 0 then
  redis.call('HSET', meta, 'id', id, 'appid', appid, 'kind', kind, 'options', options,
    'state', 'enqueuing', 'total', 0, 'done', 0, 'failed', 0, 'createdAt', now,
    'priority', priority, 'fedChunk', 0, 'fedRow', 0, 'queued', 0)
  redis.call('ZADD', index, now, id)
  redis.call('SADD', feeding, id)
  if producer ~= '' then hold_open(meta, producers, producer, lease_ms) end
  return {'created', 'new'}
end
local m = redis.call('HMGET', meta, 'appid', 'options', 'state')
local oldAppid, oldOptions, state = m[1], m[2], m[3]
if oldAppid ~= appid or oldOptions ~= options then return {'conflict', state} end
if state == 'stopped' then return {'stopped', state} end
redis.call('HSET', meta, 'state', 'enqueuing')
redis.call('SADD', feeding, id)
if producer ~= '' then hold_open(meta, producers, producer, lease_ms) end
return {'exists', state}
