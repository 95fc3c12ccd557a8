-- Create a campaign, or reopen it for more rows when its app and options are the same.
--   KEYS[1] meta    the campaign:<id> hash
--   KEYS[2] index   the campaigns sorted set
--   ARGV[1] id, ARGV[2] appid, ARGV[3] kind, ARGV[4] options (JSON), ARGV[5] now (ms)
-- Returns {outcome, state before}: created, conflict (other app or options), stopped, or exists.
local meta, index = KEYS[1], KEYS[2]
local id, appid, kind, options, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('EXISTS', meta) == 0 then
  redis.call('HSET', meta, 'id', id, 'appid', appid, 'kind', kind, 'options', options,
    'state', 'enqueuing', 'total', 0, 'done', 0, 'failed', 0, 'createdAt', now)
  redis.call('ZADD', index, now, id)
  return {'created', 'new'}
end
local m = redis.call('HMGET', meta, 'appid', 'options', 'state')
local oldAppid, oldOptions, state = m[1], m[2], m[3]
if oldAppid ~= appid or oldOptions ~= options then return {'conflict', state} end
if state == 'stopped' then return {'stopped', state} end
redis.call('HSET', meta, 'state', 'enqueuing')
return {'exists', state}
