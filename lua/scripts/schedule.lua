-- schedule: store new jobs and add them to the scheduled set.
-- KEYS: data, scheduled, signal, and optionally trace
-- ARGV: with trace: the trace context ('' for none) first, set as push sets it; then
--       id1, at1, bytes1, id2, at2, bytes2, ...   (at = Unix seconds, float)
-- Returns an array with one integer per job: 1 if it was new, 0 if its ID existed.
-- Sets the signal if any was new, so that idle consumers wake and their schedulers see
-- the new due time (Go CurlyQ sets none here; an extra wake-up is harmless to it).
local checks = {{KEYS[1], 'hash'}, {KEYS[2], 'zset'}, {KEYS[3], 'list'}}
if #KEYS >= 4 then checks[4] = {KEYS[4], 'hash'} end
local err = curlyq_check(checks)
if err then return err end

local first = 1
if #KEYS >= 4 then first = 2 end
local result = {}
-- Score and member pairs of the new jobs, for one ZADD per slice (the slice size is
-- even, so no pair is split).
local scored = {}
for i = first, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then
    if first == 2 then curlyq_set_trace(KEYS[4], ARGV[i], ARGV[1]) end
    scored[#scored + 1] = ARGV[i + 1]
    scored[#scored + 1] = ARGV[i]
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
curlyq_chunked('ZADD', KEYS[2], scored, 1, #scored)
if #scored > 0 then curlyq_signal(KEYS[3]) end
return result
