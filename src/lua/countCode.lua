-- Count a code WeChat answered with an image (campaign/ledger.ts).
--   KEYS[1] ac      the app's set of A and C codes (short hashes of their object keys)
--   KEYS[2] day     B images today (Beijing day)
--   KEYS[3] minute  B images this minute
--   ARGV[1] the code's hash, or '' for a B code; ARGV[2] the day key's life, ARGV[3] the minute key's life (s)
-- Returns 1 when the code counts against a quota (a new A/C code, any B call), 0 for an A/C code already counted.
if ARGV[1] ~= '' then return redis.call('SADD', KEYS[1], ARGV[1]) end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if redis.call('INCR', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
return 1
