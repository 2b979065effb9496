-- admin_consumers: the registered consumers with their heartbeats and in-flight counts.
-- KEYS: consumers, then the in-flight keys (listed beforehand with ZRANGE consumers 0 -1)
-- ARGV: none
-- Returns {member1, score1, count1, ...} for the keys still registered, in KEYS order.
local checks = {{KEYS[1], 'zset'}}
for k = 2, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
local err = curlyq_check(checks)
if err then return err end

local out = {}
for k = 2, #KEYS do
  local score = redis.call('ZSCORE', KEYS[1], KEYS[k])
  if score then
    out[#out + 1] = KEYS[k]
    out[#out + 1] = score
    out[#out + 1] = redis.call('SCARD', KEYS[k])
  end
end
return out
