-- Record a positive reward for suppression: keep the latest time per offer
-- (late or replayed rewards never move it back).
-- KEYS[1] {p:<pk>}:r   ARGV[1] offer   ARGV[2] epoch ms   ARGV[3] ttl ms
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if current == nil or tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
