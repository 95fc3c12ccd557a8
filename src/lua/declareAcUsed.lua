-- Record how many A + C codes an app has used in all, as known now (`wxacode quota set`): what this deployment
-- did not count is kept as declared, so the codes it counts from now on add to the figure.
--   KEYS[1] ac   the app's set of counted codes
--   KEYS[2] app  the app's ledger hash
--   ARGV[1] codes used in all, ARGV[2] now (ms)
-- Returns {1, counted} when recorded, {0, counted} when the figure is below what was counted here.
local total = tonumber(ARGV[1])
local counted = redis.call('SCARD', KEYS[1])
if total < counted then return {0, counted} end
redis.call('HSET', KEYS[2], 'acDeclared', total - counted, 'acDeclaredAt', ARGV[2])
return {1, counted}
