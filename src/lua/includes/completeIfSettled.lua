-- A campaign no producer holds open any more is active, and completed once every row is done or failed.
-- Returns COMPLETED exactly once, to the caller that completed it, else OPEN. Needs the producers include.
local function complete_if_settled(meta, producers)
  local now = redis_now()
  redis.call('ZREMRANGEBYSCORE', producers, '-inf', now)
  if redis.call('EXISTS', producers) == 1 then return OPEN end
  local m = redis.call('HMGET', meta, 'state', 'total', 'done', 'failed')
  local state, total, done, failed = m[1], tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
  if state == 'enqueuing' then
    state = 'active'
    redis.call('HSET', meta, 'state', state)
  end
  if state == 'active' and total == done + failed then
    redis.call('HSET', meta, 'state', 'completed', 'completedAt', now)
    return COMPLETED
  end
  return OPEN
end
