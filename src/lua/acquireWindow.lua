-- Log one call in an app's sliding window if it fits, by Redis's clock.
--   KEYS[1] log     sorted set of started calls, scored by their start (ms)
--   ARGV[1] window (ms), ARGV[2] calls the window may hold, ARGV[3] member naming this call
-- Returns 0 when the call may start (and is logged), else the ms until the oldest call leaves the window.
local log = KEYS[1]
local window, count, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
if redis.call('ZCARD', log) < count then
  redis.call('ZADD', log, now, member)
  redis.call('PEXPIRE', log, window)
  return 0
end
local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now + 1)
