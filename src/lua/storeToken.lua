-- Cache a freshly fetched token, only while the fetch lock is still ours: after it expired another process may
-- have fetched a newer token (in classic mode knocking this one out), which this write must not replace.
--   KEYS[1] lock    the token:<appid>:lock string
--   KEYS[2] cache   the token:<appid> string
--   ARGV[1] owner   the value this process locked with
--   ARGV[2] entry   the cache value (JSON)
--   ARGV[3] life    ms until WeChat drops the token
-- Returns 1 when stored, 0 when the lock was lost (nothing written).
local lock, cache = KEYS[1], KEYS[2]
local owner, entry, life = ARGV[1], ARGV[2], ARGV[3]

if redis.call('GET', lock) ~= owner then return 0 end
redis.call('SET', cache, entry, 'PX', life)
return 1
