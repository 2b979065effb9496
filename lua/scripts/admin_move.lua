-- admin_move: move jobs from a sorted set (dead or scheduled) to the tail of the active
-- list, data kept as is; sets the signal if any moved.
-- KEYS: source (zset), active, signal, reasons
-- ARGV: clear_reason ('1': HDEL each moved job's reason), mode ('ids' or 'oldest'), then
--       the IDs (mode 'ids', <= 1000) or n (mode 'oldest': the n lowest scores, <= 1000)
-- Returns {moved IDs in order, IDs not in source}.
local err = curlyq_check({{KEYS[1], 'zset'}, {KEYS[2], 'list'}, {KEYS[3], 'list'},
  {KEYS[4], 'hash'}})
if err then return err end

local done, skipped = {}, {}
if ARGV[2] == 'oldest' then
  local n = tonumber(ARGV[3])
  if n > 0 then done = redis.call('ZRANGE', KEYS[1], 0, n - 1) end
  curlyq_chunked('ZREM', KEYS[1], done, 1, #done)
elseif ARGV[2] == 'ids' then
  for i = 3, #ARGV do
    if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
      done[#done + 1] = ARGV[i]
    else
      skipped[#skipped + 1] = ARGV[i]
    end
  end
else
  return redis.error_reply('ERR curlyq: unknown selection ' .. ARGV[2])
end
curlyq_chunked('RPUSH', KEYS[2], done, 1, #done)
if ARGV[1] == '1' then curlyq_chunked('HDEL', KEYS[4], done, 1, #done) end
if #done > 0 then curlyq_signal(KEYS[3]) end
return {done, skipped}
