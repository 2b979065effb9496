-- ack: finish owned jobs, deleting their data, orphan counts and last errors.
-- KEYS: inflight, data, orphaned, errors
-- ARGV: id1, id2, ...
-- Returns an array with one integer per ID: 1 if the consumer owned it, else 0 (and the
-- job is left untouched).
local err = curlyq_check({{KEYS[1], 'set'}, {KEYS[2], 'hash'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}})
if err then return err end

local result = {}
local owned = {}
for i = 1, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    owned[#owned + 1] = ARGV[i]
    result[i] = 1
  else
    result[i] = 0
  end
end
-- One HDEL per key for all owned jobs (in slices), rather than two calls per job.
curlyq_chunked('HDEL', KEYS[2], owned, 1, #owned)
curlyq_chunked('HDEL', KEYS[3], owned, 1, #owned)
curlyq_chunked('HDEL', KEYS[4], owned, 1, #owned)
return result
