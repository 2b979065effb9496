-- requeue_orphans: recover the jobs of expired consumers.
-- KEYS: consumers, active, dead, reasons, orphaned, signal, errors, counts, counts_minute
--       (of now's minute), then the in-flight
--       keys of the expired consumers to visit, oldest first (read beforehand with
--       ZRANGEBYSCORE consumers -inf expired_before)
-- ARGV: expired_before, max_jobs (budget of jobs for this call, <= 1000),
--       max_orphan_requeues (0 = never kill), now, ttl (of counts_minute, seconds)
-- Each listed consumer is re-checked: one whose score is now after expired_before (it
-- heartbeated meanwhile) or that is gone is not touched. Each job taken from an expired
-- in-flight set has its orphan count incremented; it is killed when the count reaches
-- max_orphan_requeues (if non-zero; its last error is then removed, as by kill), else
-- appended to active (keeping its last error: it still waits for a run). The jobs of one
-- consumer are taken in ascending ID order (byte order), so that every backend makes the
-- same choice when the budget is smaller than the set. A consumer is removed from
-- consumers once its in-flight set is empty. The jobs killed are counted as processed,
-- failed and killed in counts and counts_minute.
-- Returns {requeued, killed, consumers_removed}.
local checks = {{KEYS[1], 'zset'}, {KEYS[2], 'list'}, {KEYS[3], 'zset'}, {KEYS[4], 'hash'},
  {KEYS[5], 'hash'}, {KEYS[6], 'list'}, {KEYS[7], 'hash'}, {KEYS[8], 'hash'}, {KEYS[9], 'hash'}}
for k = 10, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
local err = curlyq_check(checks)
if err then return err end

local expired_before = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local max_requeues = tonumber(ARGV[3])
local now = ARGV[4]
local requeued, killed, removed = 0, 0, 0

for k = 10, #KEYS do
  local inflight = KEYS[k]
  local score = redis.call('ZSCORE', KEYS[1], inflight)
  if score and tonumber(score) <= expired_before then
    if budget > 0 then
      local ids = redis.call('SMEMBERS', inflight)
      table.sort(ids, curlyq_bytes_less)
      local n = math.min(budget, #ids)
      budget = budget - n
      for i = 1, n do
        local id = ids[i]
        redis.call('SREM', inflight, id)
        local count = redis.call('HINCRBY', KEYS[5], id, 1)
        if max_requeues > 0 and count >= max_requeues then
          redis.call('ZADD', KEYS[3], now, id)
          redis.call('HSET', KEYS[4], id, 'orphaned ' .. count .. ' times: its consumer ' ..
            'stopped heartbeating while holding it (the handler may be crashing the process)')
          redis.call('HDEL', KEYS[5], id)
          redis.call('HDEL', KEYS[7], id)
          killed = killed + 1
        else
          redis.call('RPUSH', KEYS[2], id)
          requeued = requeued + 1
        end
      end
    end
    if redis.call('SCARD', inflight) == 0 then
      redis.call('ZREM', KEYS[1], inflight)
      removed = removed + 1
    end
  end
end
if requeued > 0 then curlyq_signal(KEYS[6]) end
curlyq_count(KEYS[8], KEYS[9], ARGV[5], killed, {'processed', 'failed', 'killed'})
return {requeued, killed, removed}
