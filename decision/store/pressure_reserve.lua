-- Reserve the exposures of one decision for one person, atomically.
--
-- KEYS[1]  {p:<pk>}:x  ZSET exposures, score = epoch ms, member = "<decision>|<offer>|<channel>"
-- KEYS[2]  {p:<pk>}:r  HASH offer -> epoch ms of the latest positive reward
-- KEYS[3]  {p:<pk>}:l  STRING the person's commit lease: the id of the decision
--          that read the person's exposures under it and commits after answering
-- (one person: one hash tag, one Cluster slot)
--
-- ARGV[1] now (epoch ms, the decision's injected clock)
-- ARGV[2] horizon ms: exposures older than now - horizon are trimmed
-- ARGV[3] decision id
-- ARGV[4] mode:
--   "check"   check, then add the granted exposures. While another decision
--             holds the lease its exposures are not written yet: nothing is
--             checked or added, and the reply says so (busy) for the caller
--             to try again.
--   "served"  the items were already served under this decision's lease (the
--             check ran on the exposures read with it): add every exposure;
--             the verdicts only report what a check would have said.
-- ARGV[5] number of items, then per item, in rank order:
--   offer, channel, min_delay_ms, suppress_after (0: none), suppress_window_ms,
--   ncaps, then ncaps x (limit, window_ms, match_offer, match_channels)
--   ("" matches any offer / channel; channels are written "|email|sms|")
--
-- Returns {status, verdicts}:
--   status 0    done
--   status 1    busy: another decision holds the lease (its pttl in verdicts[1])
--   status 2    "served" mode, but the lease was not this decision's any more
--               (it expired): the exposures are added all the same
-- and one verdict {code, index, value} per item:
--   {0, 0, 0}          granted (the exposure is added)
--   {1, k, count}      refused by the item's k-th cap, count in its window
--   {2, 0, last_ms}    refused by the channel's minimum delay
--   {3, 0, ignored}    refused by suppression
-- Items are checked in order, each seeing the exposures granted before it.
-- The lease is released (deleted) when it is this decision's.

local xkey, rkey, lkey = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local decision = ARGV[3]
local served = ARGV[4] == 'served'
local n = tonumber(ARGV[5])

local holder = redis.call('GET', lkey)
local status = 0
if holder == decision then
  redis.call('DEL', lkey)
elseif served then
  status = 2  -- the lease expired, or another decision took it since
elseif holder then
  return {1, {redis.call('PTTL', lkey)}}
end

redis.call('ZREMRANGEBYSCORE', xkey, '-inf', '(' .. (now - horizon))
local raw = redis.call('ZRANGEBYSCORE', xkey, now - horizon, '+inf', 'WITHSCORES')
local ex = {}
for i = 1, #raw, 2 do
  local d, o, c = string.match(raw[i], '^(.*)|([^|]*)|([^|]*)$')
  if d then
    ex[#ex + 1] = {tonumber(raw[i + 1]), d, o, c}
  end
end

local function count(since, offer, channels)
  local k = 0
  for _, e in ipairs(ex) do
    if e[1] > since and (offer == '' or e[3] == offer)
        and (channels == '' or string.find(channels, '|' .. e[4] .. '|', 1, true)) then
      k = k + 1
    end
  end
  return k
end

local out = {}
local granted = false
local pos = 6
for item = 1, n do
  local offer, channel = ARGV[pos], ARGV[pos + 1]
  local min_delay = tonumber(ARGV[pos + 2])
  local sup_after, sup_window = tonumber(ARGV[pos + 3]), tonumber(ARGV[pos + 4])
  local ncaps = tonumber(ARGV[pos + 5])
  pos = pos + 6
  local verdict = nil

  if min_delay > 0 then
    -- one decision is one contact: its own items do not delay each other
    local last = nil
    for _, e in ipairs(ex) do
      if e[4] == channel and e[2] ~= decision and (last == nil or e[1] > last) then last = e[1] end
    end
    if last ~= nil and now - last < min_delay then verdict = {2, 0, last} end
  end

  for k = 1, ncaps do
    local limit, window = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
    local m_offer, m_channels = ARGV[pos + 2], ARGV[pos + 3]
    pos = pos + 4
    if verdict == nil then
      local c = count(now - window, m_offer, m_channels)
      if c >= limit then verdict = {1, k, c} end
    end
  end

  if verdict == nil and sup_after > 0 then
    local since = now - sup_window
    local rewarded = tonumber(redis.call('HGET', rkey, offer) or '')
    if rewarded ~= nil and rewarded > since then since = rewarded end
    local ignored = count(since, offer, '')
    if ignored >= sup_after then verdict = {3, 0, ignored} end
  end

  if verdict == nil or served then
    redis.call('ZADD', xkey, ARGV[1], decision .. '|' .. offer .. '|' .. channel)
    ex[#ex + 1] = {now, decision, offer, channel}
    granted = true
  end
  out[item] = verdict or {0, 0, 0}
end

if granted then
  -- an idle person's counters disappear once every entry is past the horizon
  redis.call('PEXPIRE', xkey, horizon)
end
return {status, out}
