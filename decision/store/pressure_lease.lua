-- Release a person's commit lease (see pressure_reserve.lua) if this decision
-- still holds it: a decision that read the person under its lease and
-- committed nothing (no pick, a dry run's answer, another person counted).
--
-- KEYS[1]  {p:<pk>}:l
-- ARGV[1]  decision id
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
