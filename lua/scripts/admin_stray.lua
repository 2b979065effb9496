-- admin_stray: the members of in-flight sets whose consumer is not registered.
-- KEYS: consumers, then candidate in-flight keys (found beforehand with SCAN)
-- ARGV: none
-- Returns one element per candidate: its members, or nil when it is registered, gone or
-- no longer a set.
local err = curlyq_check({{KEYS[1], 'zset'}})
if err then return err end

local out = {}
for k = 2, #KEYS do
  out[k - 1] = false
  if redis.call('TYPE', KEYS[k]).ok == 'set' and not redis.call('ZSCORE', KEYS[1], KEYS[k]) then
    out[k - 1] = redis.call('SMEMBERS', KEYS[k])
  end
end
return out
