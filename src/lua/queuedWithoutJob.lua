-- Of some queued rows, those whose job does not exist. Both are read at once: a worker removes a job only after
-- settling its row, so a row settled meanwhile is never among them.
--   KEYS[1] window  the campaign:<id>:window hash
--   ARGV            slot, then its job's hash key (BullMQ's <prefix>:<queue>:<job id>), for each row
-- Returns slot, value for each of those rows.
local window = KEYS[1]

local orphans = {}
for i = 1, #ARGV, 2 do
  local value = redis.call('HGET', window, ARGV[i])
  if value and redis.call('EXISTS', ARGV[i + 1]) == 0 then
    orphans[#orphans + 1] = ARGV[i]
    orphans[#orphans + 1] = value
  end
end
return orphans
