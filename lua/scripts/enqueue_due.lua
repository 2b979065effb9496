-- enqueue_due: move due scheduled jobs (lowest scores first) to the active list.
-- KEYS: scheduled, active, signal
-- ARGV: now (Unix seconds, float), max (at most this many jobs, <= 1000)
-- Returns {moved, next}: the number moved and the earliest score still scheduled, as a
-- string (nil when the scheduled set is empty).
local err = curlyq_check({{KEYS[1], 'zset'}, {KEYS[2], 'list'}, {KEYS[3], 'list'}})
if err then return err end

local max = tonumber(ARGV[2])
local ids = {}
if max > 0 then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, max)
end
if #ids > 0 then
  curlyq_chunked('RPUSH', KEYS[2], ids, 1, #ids)
  -- Remove exactly the members selected (never by rank: scores may be negative).
  curlyq_chunked('ZREM', KEYS[1], ids, 1, #ids)
  curlyq_signal(KEYS[3])
end
return {#ids, curlyq_earliest_score(KEYS[1])}
