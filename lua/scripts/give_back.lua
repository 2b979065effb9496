-- give_back: return owned, unstarted jobs to the tail of the active list.
-- KEYS: inflight, active, signal
-- ARGV: id1, id2, ...
-- Returns the number of jobs given back (IDs no longer owned are skipped).
local err = curlyq_check({{KEYS[1], 'set'}, {KEYS[2], 'list'}, {KEYS[3], 'list'}})
if err then return err end

local count = 0
for i = 1, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i])
    count = count + 1
  end
end
if count > 0 then curlyq_signal(KEYS[3]) end
return count
