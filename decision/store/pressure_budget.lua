-- Spend one unit of an offer's global budgets, all or nothing.
--
-- KEYS     {b:<offer>}:total and/or {b:<offer>}:d:<yyyymmdd> (one hash tag:
--          one Cluster slot, so both are checked and spent in one step)
-- ARGV     per key: limit, ttl_ms (0: no expiry)
--
-- Returns {0, 0} when spent, or {i, spent} when KEYS[i] is at its limit
-- (nothing is spent then).

for i = 1, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent >= tonumber(ARGV[2 * i - 1]) then
    return {i, spent}
  end
end
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 and redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return {0, 0}
