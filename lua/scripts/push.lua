-- push: store new jobs and append them to the active list.
-- KEYS: data, active, signal
-- ARGV: id1, bytes1, id2, bytes2, ...
-- Returns an array with one integer per job: 1 if it was new, 0 if its ID existed.
local err = curlyq_check({{KEYS[1], 'hash'}, {KEYS[2], 'list'}, {KEYS[3], 'list'}})
if err then return err end

local result = {}
local new = {}
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
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
