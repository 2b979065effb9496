-- admin_find: where a job is, and its data.
-- KEYS: data, scheduled, dead, active, reasons, errors, orphaned, consumers, then the
--       in-flight keys (listed beforehand with ZRANGE consumers 0 -1)
-- ARGV: id, scan (how far into the active list to look), [head: the most data bytes to
--       reply with]
-- Returns {data, scheduled score, dead score, in-flight key holding it (the first in byte
-- order of those still registered), position in active, reason, error, orphaned}, each
-- nil when absent; with a head, data longer than it is cut to its first head bytes, and
-- two more elements follow: the data's last 32 bytes and its length (nil when not cut).
local checks = {{KEYS[1], 'hash'}, {KEYS[2], 'zset'}, {KEYS[3], 'zset'}, {KEYS[4], 'list'},
  {KEYS[5], 'hash'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'}, {KEYS[8], 'zset'}}
for k = 9, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
local err = curlyq_check(checks)
if err then return err end

local id = ARGV[1]
local holder = false
for k = 9, #KEYS do
  if redis.call('ZSCORE', KEYS[8], KEYS[k]) and redis.call('SISMEMBER', KEYS[k], id) == 1 then
    if not holder or curlyq_bytes_less(KEYS[k], holder) then holder = KEYS[k] end
  end
end
local data = redis.call('HGET', KEYS[1], id)
local tail, stored = false, false
local head = tonumber(ARGV[3])
if head and data and #data > head then
  tail = string.sub(data, -32)
  stored = #data
  data = string.sub(data, 1, head)
end
local found = {data, redis.call('ZSCORE', KEYS[2], id),
  redis.call('ZSCORE', KEYS[3], id), holder,
  redis.call('LPOS', KEYS[4], id, 'MAXLEN', ARGV[2]),
  redis.call('HGET', KEYS[5], id), redis.call('HGET', KEYS[6], id),
  redis.call('HGET', KEYS[7], id)}
if head then
  found[9] = tail
  found[10] = stored
end
return found
