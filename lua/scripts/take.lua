-- take: move IDs from the head of the active list into a consumer's in-flight set.
-- KEYS: active, inflight (the consumer's in-flight key, also its member in consumers),
--       data, signal, consumers, paused, and optionally scheduled (to peek at)
-- ARGV: max (at most this many jobs, <= 1000)
-- Returns {id1, data1, id2, data2, ...} (data nil when the job's data field is missing),
-- or an error reply starting with NOTREG, taking nothing, when the consumer is not in
-- consumers. Clears the signal when fewer than max were taken. With the scheduled key,
-- one more element ends the reply: the earliest scheduled score as a string, or nil
-- when nothing is scheduled. While paused exists (after the NOTREG check) nothing is
-- taken and the signal is cleared, so that idle consumers block rather than spin; the
-- peek is still answered.
local checks = {{KEYS[1], 'list'}, {KEYS[2], 'set'}, {KEYS[3], 'hash'},
  {KEYS[4], 'list'}, {KEYS[5], 'zset'}, {KEYS[6], 'string'}}
if #KEYS >= 7 then checks[7] = {KEYS[7], 'zset'} end
local err = curlyq_check(checks)
if err then return err end

if not redis.call('ZSCORE', KEYS[5], KEYS[2]) then
  return redis.error_reply('NOTREG curlyq: ' .. KEYS[2] .. ' is not registered in ' .. KEYS[5])
end

if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('DEL', KEYS[4])
  local paused = {}
  if #KEYS >= 7 then paused[1] = curlyq_earliest_score(KEYS[7]) end
  return paused
end

local max = tonumber(ARGV[1])
local ids = {}
if max > 0 then
  ids = redis.call('LRANGE', KEYS[1], 0, max - 1)
end
local result = {}
if #ids > 0 then
  redis.call('LTRIM', KEYS[1], #ids, -1)
  curlyq_chunked('SADD', KEYS[2], ids, 1, #ids)
  local i = 1
  while i <= #ids do
    local j = math.min(i + curlyq_chunk - 1, #ids)
    local values = redis.call('HMGET', KEYS[3], unpack(ids, i, j))
    for k = i, j do
      result[#result + 1] = ids[k]
      result[#result + 1] = values[k - i + 1]
    end
    i = j + 1
  end
end
if #ids < max then redis.call('DEL', KEYS[4]) end
if #KEYS >= 7 then result[#result + 1] = curlyq_earliest_score(KEYS[7]) end
return result
