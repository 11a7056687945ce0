-- Give back one unit of budgets spent by pressure_budget.lua (the person
-- script refused the item). Never below zero, never re-creating a key that
-- has expired meanwhile.
for i = 1, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
