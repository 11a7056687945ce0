-- Claim a reward event id for counting, once.
-- KEYS[1] = {d:<decision id>}:e  (hash: event id -> "d" done | "p:<ms>" pending)
-- ARGV = event id, now ms, takeover ("1" when replaying our own spooled event),
--        ttl seconds, lease ms
-- Returns 1 when the caller must write the event, 0 when it is a duplicate.
local v = redis.call('HGET', KEYS[1], ARGV[1])
local claim = false
if not v then
  claim = true
elseif v ~= 'd' then
  local since = tonumber(string.sub(v, 3)) or 0
  -- A pending mark older than the lease is an attempt that died mid-way.
  claim = ARGV[3] == '1' or (tonumber(ARGV[2]) - since) > tonumber(ARGV[5])
end
if not claim then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], 'p:' .. ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
