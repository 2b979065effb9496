-- trim_dead: remove old dead jobs with their data, reasons and orphan counts.
-- KEYS: dead, data, reasons, orphaned
-- ARGV: killed_before (Unix seconds, float), keep_at_most, max_jobs (<= 1000)
-- Removes dead jobs killed strictly before killed_before, then (with what is left of
-- max_jobs) the oldest beyond keep_at_most. Returns the number removed.
local err = curlyq_check({{KEYS[1], 'zset'}, {KEYS[2], 'hash'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}})
if err then return err end

local keep = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local removed = 0

local function remove(ids)
  for i = 1, #ids do
    redis.call('ZREM', KEYS[1], ids[i])
    redis.call('HDEL', KEYS[2], ids[i])
    redis.call('HDEL', KEYS[3], ids[i])
    redis.call('HDEL', KEYS[4], ids[i])
  end
  removed = removed + #ids
  budget = budget - #ids
end

if budget > 0 then
  remove(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, budget))
end
if budget > 0 then
  local excess = redis.call('ZCARD', KEYS[1]) - keep
  if excess > 0 then
    remove(redis.call('ZRANGE', KEYS[1], 0, math.min(excess, budget) - 1))
  end
end
return removed
