-- register: set a consumer's heartbeat score.
-- KEYS: consumers
-- ARGV: now, mode ('join' or 'heartbeat'), member (the consumer's in-flight key name)
-- Returns 1 if the score was set; 0 for a heartbeat of a consumer no longer registered
-- (reaped), which adds nothing.
local err = curlyq_check({{KEYS[1], 'zset'}})
if err then return err end

if ARGV[2] == 'heartbeat' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 0 end
elseif ARGV[2] ~= 'join' then
  return redis.error_reply('ERR curlyq: unknown registration mode ' .. ARGV[2])
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
return 1
