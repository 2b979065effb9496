-- take: move IDs from the head of the active list into a consumer's in-flight set.
-- KEYS: active, inflight (the consumer's in-flight key, also its member in consumers),
--       data, signal, consumers, paused, optionally scheduled (to peek at), and
--       optionally trace (always the last key)
-- ARGV: max (at most this many jobs, <= 1000), and 'trace' when the trace key is given
-- Returns {id1, data1, id2, data2, ...} (data nil when the job's data field is missing);
-- with the trace key, {id1, data1, trace1, ...} (trace nil when the job has none),
-- or an error reply starting with NOTREG, taking nothing, when the consumer is not in
-- consumers. Clears the signal when fewer than max were taken. With the scheduled key,
-- one more element ends the reply: the earliest scheduled score as a string, or nil
-- when nothing is scheduled. While paused exists (after the NOTREG check) nothing is
-- taken and the signal is cleared, so that idle consumers block rather than spin; the
-- peek is still answered.
local trace = nil
local last = #KEYS
if ARGV[2] == 'trace' then
  trace = KEYS[#KEYS]
  last = #KEYS - 1
end
local scheduled = nil
if last >= 7 then scheduled = KEYS[7] end
local checks = {{KEYS[1], 'list'}, {KEYS[2], 'set'}, {KEYS[3], 'hash'},
  {KEYS[4], 'list'}, {KEYS[5], 'zset'}, {KEYS[6], 'string'}}
if scheduled then checks[#checks + 1] = {scheduled, 'zset'} end
if trace then checks[#checks + 1] = {trace, 'hash'} end
local err = curlyq_check(checks)
if err then return err end

if not redis.call('ZSCORE', KEYS[5], KEYS[2]) then
  return redis.error_reply('NOTREG curlyq: ' .. KEYS[2] .. ' is not registered in ' .. KEYS[5])
end

if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('DEL', KEYS[4])
  local paused = {}
  if scheduled then paused[1] = curlyq_earliest_score(scheduled) end
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
    local traces = nil
    if trace then traces = redis.call('HMGET', trace, unpack(ids, i, j)) end
    for k = i, j do
      result[#result + 1] = ids[k]
      result[#result + 1] = values[k - i + 1]
      if traces then result[#result + 1] = traces[k - i + 1] end
    end
    i = j + 1
  end
end
if #ids < max then redis.call('DEL', KEYS[4]) end
if scheduled then result[#result + 1] = curlyq_earliest_score(scheduled) end
return result
