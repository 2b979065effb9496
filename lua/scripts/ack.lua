-- ack: finish owned jobs, deleting their data, orphan counts, last errors and trace
-- contexts.
-- KEYS: inflight, data, orphaned, errors, counts, counts_minute, trace
-- ARGV: ttl (of counts_minute, seconds), id1, id2, ...
-- The owned jobs are counted as processed in counts and counts_minute.
-- Returns an array with one integer per ID: 1 if the consumer owned it, else 0 (and the
-- job is left untouched).
local err = curlyq_check({{KEYS[1], 'set'}, {KEYS[2], 'hash'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}, {KEYS[5], 'hash'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'}})
if err then return err end

local result = {}
local owned = {}
for i = 2, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    owned[#owned + 1] = ARGV[i]
    result[i - 1] = 1
  else
    result[i - 1] = 0
  end
end
-- One HDEL per key for all owned jobs (in slices), rather than two calls per job.
curlyq_chunked('HDEL', KEYS[2], owned, 1, #owned)
curlyq_chunked('HDEL', KEYS[3], owned, 1, #owned)
curlyq_chunked('HDEL', KEYS[4], owned, 1, #owned)
curlyq_chunked('HDEL', KEYS[7], owned, 1, #owned)
curlyq_count(KEYS[5], KEYS[6], ARGV[1], #owned, {'processed'})
return result
