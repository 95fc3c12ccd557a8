-- Put failed rows back in the window, pending again, for `retry` to queue.
--   KEYS[1] meta    the campaign:<id> hash
--   KEYS[2] window  the campaign:<id>:window hash
--   KEYS[3] failed  the campaign:<id>:failed hash
--   ARGV    slots
-- Returns slot, value for each row moved.
local meta, window, failed = KEYS[1], KEYS[2], KEYS[3]

local moved = {}
for i = 1, #ARGV do
  local slot = ARGV[i]
  local raw = redis.call('HGET', failed, slot)
  if raw then
    local value = cjson.decode(raw)[3]
    redis.call('HDEL', failed, slot)
    redis.call('HSET', window, slot, value)
    moved[#moved + 1] = slot
    moved[#moved + 1] = value
  end
end
local rows = #moved / 2
if rows > 0 then
  redis.call('HINCRBY', meta, 'failed', -rows)
  redis.call('HINCRBY', meta, 'queued', rows)
end
return moved
