-- Create a campaign, or reopen it for more rows when its app and options are the same.
--   KEYS[1] meta       the campaign:<id> hash
--   KEYS[2] index      the campaigns sorted set
--   KEYS[3] producers  the campaign:<id>:producers sorted set
--   ARGV[1] id, ARGV[2] appid, ARGV[3] kind, ARGV[4] options (JSON), ARGV[5] now (ms),
--   ARGV[6] producer id (or empty: no lease), ARGV[7] its lease (ms)
-- Returns {outcome, state before}: created, conflict (other app or options), stopped, or exists.
local meta, index, producers = KEYS[1], KEYS[2], KEYS[3]
local id, appid, kind, options, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local producer, lease_ms = ARGV[6], ARGV[7]

-- @include producers

if redis.call('EXISTS', meta) == 0 then
  redis.call('HSET', meta, 'id', id, 'appid', appid, 'kind', kind, 'options', options,
    'state', 'enqueuing', 'total', 0, 'done', 0, 'failed', 0, 'createdAt', now)
  redis.call('ZADD', index, now, id)
  if producer ~= '' then hold_open(meta, producers, producer, lease_ms) end
  return {'created', 'new'}
end
local m = redis.call('HMGET', meta, 'appid', 'options', 'state')
local oldAppid, oldOptions, state = m[1], m[2], m[3]
if oldAppid ~= appid or oldOptions ~= options then return {'conflict', state} end
if state == 'stopped' then return {'stopped', state} end
redis.call('HSET', meta, 'state', 'enqueuing')
if producer ~= '' then hold_open(meta, producers, producer, lease_ms) end
return {'exists', state}
