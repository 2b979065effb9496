-- push: store new jobs and append them to the active list.
-- KEYS: data, active, signal, and optionally trace
-- ARGV: with trace: the trace context ('' for none) first; then id1, bytes1, id2,
--       bytes2, ...
-- With trace, each new job's field in trace is set to the context (removed for ''), so
-- that a field left behind for a reused ID never passes for the new job's.
-- Returns an array with one integer per job: 1 if it was new, 0 if its ID existed.
local checks = {{KEYS[1], 'hash'}, {KEYS[2], 'list'}, {KEYS[3], 'list'}}
if #KEYS >= 4 then checks[4] = {KEYS[4], 'hash'} end
local err = curlyq_check(checks)
if err then return err end

local first = 1
if #KEYS >= 4 then first = 2 end
local result = {}
local new = {}
for i = first, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    if first == 2 then curlyq_set_trace(KEYS[4], ARGV[i], ARGV[1]) end
    new[#new + 1] = ARGV[i]
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
-- The new IDs in their order, in one RPUSH per slice rather than one per job.
curlyq_chunked('RPUSH', KEYS[2], new, 1, #new)
if #new > 0 then curlyq_signal(KEYS[3]) end
return result
