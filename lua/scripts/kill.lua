-- kill: move owned failed jobs to the dead set, with a reason (which takes over from
-- the job's last error: that is removed).
-- KEYS: inflight, dead, data, reasons, orphaned, errors, counts, counts_minute
-- ARGV: now, ttl (of counts_minute, seconds), then per job: id, has_data ('1' or '0'),
--       bytes (ignored when has_data is '0'), reason
-- Returns an array with one integer per job: 1 if the consumer owned it, else 0. The owned
-- jobs are counted as processed, failed and killed in counts and counts_minute.
local err = curlyq_check({{KEYS[1], 'set'}, {KEYS[2], 'zset'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}, {KEYS[5], 'hash'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'},
  {KEYS[8], 'hash'}})
if err then return err end

local result = {}
local owned = 0
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], id)
    if ARGV[i + 1] == '1' then
      redis.call('HSET', KEYS[3], id, ARGV[i + 2])
    end
    redis.call('HSET', KEYS[4], id, ARGV[i + 3])
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    owned = owned + 1
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
curlyq_count(KEYS[7], KEYS[8], ARGV[2], owned, {'processed', 'failed', 'killed'})
return result
