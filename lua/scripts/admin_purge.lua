-- admin_purge: delete the first jobs of the active list or the lowest-scored of a sorted
-- set, with their data, reasons, errors, orphan counts and trace contexts.
-- KEYS: source, data, reasons, errors, orphaned, trace
-- ARGV: mode ('list' or 'zset'), n (<= 1000)
-- Returns the number of jobs deleted.
local kind = 'zset'
if ARGV[1] == 'list' then kind = 'list' end
local err = curlyq_check({{KEYS[1], kind}, {KEYS[2], 'hash'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}, {KEYS[5], 'hash'}, {KEYS[6], 'hash'}})
if err then return err end

local n = tonumber(ARGV[2])
if n <= 0 then return 0 end
local ids
if kind == 'list' then
  ids = redis.call('LRANGE', KEYS[1], 0, n - 1)
  if #ids > 0 then redis.call('LTRIM', KEYS[1], #ids, -1) end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  curlyq_chunked('ZREM', KEYS[1], ids, 1, #ids)
end
for k = 2, 6 do curlyq_chunked('HDEL', KEYS[k], ids, 1, #ids) end
return #ids
