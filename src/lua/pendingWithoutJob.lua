-- Of some rows, those pending whose job does not exist. Both are read at once: a worker removes a job only
-- after settling its row, so a row settled meanwhile is never among them.
--   KEYS[1] rows    the campaign:<id>:rows hash
--   ARGV            row value, then its job's hash key (BullMQ's <prefix>:<queue>:<job id>), for each row
-- Returns the values of those rows.
-- PENDING is declared ahead of this script by store.ts (LUA_CONSTANTS).
local rows = KEYS[1]

local orphans = {}
for i = 1, #ARGV, 2 do
  local value = ARGV[i]
  if redis.call('HGET', rows, value) == PENDING and redis.call('EXISTS', ARGV[i + 1]) == 0 then
    orphans[#orphans + 1] = value
  end
end
return orphans
