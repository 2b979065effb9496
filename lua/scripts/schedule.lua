-- schedule: store new jobs and add them to the scheduled set (no signal).
-- KEYS: data, scheduled
-- ARGV: id1, at1, bytes1, id2, at2, bytes2, ...   (at = Unix seconds, float)
-- Returns an array with one integer per job: 1 if it was new, 0 if its ID existed.
local err = curlyq_check({{KEYS[1], 'hash'}, {KEYS[2], 'zset'}})
if err then return err end

local result = {}
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result
