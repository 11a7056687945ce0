-- Count a reward event once: check, log and mark in one atomic step.
-- KEYS[1] {d:<decision id>}:e   hash: event id -> "d" once counted
-- KEYS[2] the reward stream
-- ARGV: event id, record JSON, stream max length, ttl seconds of KEYS[1]
-- Returns 1 when counted now, 0 for a duplicate.
--
-- The keys live on two slots, so this runs on a single Redis server (the
-- embedded one, or REDIS_URL); a lost reply or a retry after a crash can
-- never write the row twice. See docs/ARCHITECTURE.md for Redis Cluster.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'r', ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], 'd')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
