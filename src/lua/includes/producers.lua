-- Producers hold a campaign open while they add rows. Each has a lease in the campaign:<id>:producers sorted
-- set, scored by when it runs out on Redis's clock, so that one killed mid-enqueue holds it open no longer.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Take or renew a lease. A producer whose lease ran out may still be adding rows: a campaign completed (or made
-- active) meanwhile is enqueuing again, and completes again after its last row.
local function hold_open(meta, producers, producer, lease_ms)
  redis.call('ZADD', producers, redis_now() + tonumber(lease_ms), producer)
  local state = redis.call('HGET', meta, 'state')
  if state == 'active' or state == 'completed' then redis.call('HSET', meta, 'state', 'enqueuing') end
end
