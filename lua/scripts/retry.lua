-- retry: schedule owned failed jobs for another run, overwriting their data.
-- KEYS: inflight, scheduled, data, orphaned
-- ARGV: id1, at1, bytes1, id2, at2, bytes2, ...   (at = Unix seconds, float)
-- Returns an array with one integer per job: 1 if the consumer owned it, else 0.
local err = curlyq_check({{KEYS[1], 'set'}, {KEYS[2], 'zset'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}})
if err then return err end

local result = {}
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[i + 1], id)
    redis.call('HSET', KEYS[3], id, ARGV[i + 2])
    redis.call('HDEL', KEYS[4], id)
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result
