-- A campaign whose every row is done or failed, and that is no longer being enqueued into, is completed.
-- Returns COMPLETED exactly once, to the caller that completed it, else OPEN.
local function complete_if_settled(meta, now)
  local m = redis.call('HMGET', meta, 'state', 'total', 'done', 'failed')
  local state, total, done, failed = m[1], tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
  if state == 'active' and total == done + failed then
    redis.call('HSET', meta, 'state', 'completed', 'completedAt', now)
    return COMPLETED
  end
  return OPEN
end
