-- admin_remove_consumer: remove an expired consumer, its in-flight jobs appended to the
-- active list in ascending ID order (byte order); sets the signal if any moved.
-- KEYS: consumers, inflight (the consumer's key, also its member), active, signal
-- ARGV: expired_before
-- Returns {removed (0/1), requeued, heartbeat (nil when not registered)}; a consumer
-- whose heartbeat is after expired_before is left untouched.
local err = curlyq_check({{KEYS[1], 'zset'}, {KEYS[2], 'set'}, {KEYS[3], 'list'},
  {KEYS[4], 'list'}})
if err then return err end

local score = redis.call('ZSCORE', KEYS[1], KEYS[2])
if not score then return {0, 0, false} end
if tonumber(score) > tonumber(ARGV[1]) then return {0, 0, score} end
local ids = redis.call('SMEMBERS', KEYS[2])
table.sort(ids, curlyq_bytes_less)
curlyq_chunked('RPUSH', KEYS[3], ids, 1, #ids)
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], KEYS[2])
if #ids > 0 then curlyq_signal(KEYS[4]) end
return {1, #ids, score}
