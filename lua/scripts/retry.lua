-- retry: schedule owned failed jobs for another run, overwriting their data and
-- keeping why the run failed (the job's last error, for operators).
-- KEYS: inflight, scheduled, data, orphaned, errors, counts, counts_minute
-- ARGV: ttl (of counts_minute, seconds), then per job: id, at (Unix seconds, float), bytes, has_error ('1' or '0'), error
--       (ignored when has_error is '0')
-- Returns an array with one integer per job: 1 if the consumer owned it, else 0 (and
-- nothing is written for it, its last error included). The owned jobs are counted as
-- processed, failed and retried in counts and counts_minute.
local err = curlyq_check({{KEYS[1], 'set'}, {KEYS[2], 'zset'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}, {KEYS[5], 'hash'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'}})
if err then return err end

local result = {}
local owned = 0
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[i + 1], id)
    redis.call('HSET', KEYS[3], id, ARGV[i + 2])
    redis.call('HDEL', KEYS[4], id)
    -- Without a message the field goes: an earlier run's would pass for this run's.
    if ARGV[i + 3] == '1' then
      redis.call('HSET', KEYS[5], id, ARGV[i + 4])
    else
      redis.call('HDEL', KEYS[5], id)
    end
    owned = owned + 1
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
curlyq_count(KEYS[6], KEYS[7], ARGV[1], owned, {'processed', 'failed', 'retried'})
return result
