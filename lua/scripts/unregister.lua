-- unregister: remove a consumer whose in-flight set is empty (clean shutdown).
-- KEYS: consumers, inflight (the consumer's in-flight key, also its member in consumers)
-- ARGV: none
-- Returns 0 if the consumer still holds jobs (nothing changes), else removes it and
-- returns 1 (also when it was not registered).
local err = curlyq_check({{KEYS[1], 'zset'}, {KEYS[2], 'set'}})
if err then return err end

if redis.call('SCARD', KEYS[2]) ~= 0 then return 0 end
redis.call('ZREM', KEYS[1], KEYS[2])
return 1
