-- admin_jobs: one page of the jobs in one state, with bounded views of their data.
-- KEYS: data, reasons, errors, orphaned, source (mode 'list': active; 'zset': scheduled
--       or dead; 'inflight': consumers, followed by the in-flight keys listed beforehand)
-- ARGV: mode, cursor (offset), limit (<= 1000), head_bytes, tail_bytes
-- In-flight jobs are ordered by in-flight key, then job ID (byte order), over the keys
-- still registered.
-- Returns {total, entry1, entry2, ...}, each entry {id, extra (the score, or the
-- in-flight key; nil for the active list), has_data (0/1), length, head (the first
-- head_bytes bytes of the data), tail (its last tail_bytes bytes when the head does not
-- cover it, else empty), reason, error, orphaned}.
local mode = ARGV[1]
local checks = {{KEYS[1], 'hash'}, {KEYS[2], 'hash'}, {KEYS[3], 'hash'}, {KEYS[4], 'hash'}}
if mode == 'list' then
  checks[5] = {KEYS[5], 'list'}
else
  checks[5] = {KEYS[5], 'zset'}
end
if mode == 'inflight' then
  for k = 6, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
end
local err = curlyq_check(checks)
if err then return err end

local cursor = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local head_bytes = tonumber(ARGV[4])
local tail_bytes = tonumber(ARGV[5])
local ids, extra, total = {}, {}, 0
if mode == 'list' then
  total = redis.call('LLEN', KEYS[5])
  if limit > 0 then ids = redis.call('LRANGE', KEYS[5], cursor, cursor + limit - 1) end
elseif mode == 'zset' then
  total = redis.call('ZCARD', KEYS[5])
  if limit > 0 then
    local flat = redis.call('ZRANGE', KEYS[5], cursor, cursor + limit - 1, 'WITHSCORES')
    for i = 1, #flat, 2 do
      ids[#ids + 1] = flat[i]
      extra[#extra + 1] = flat[i + 1]
    end
  end
elseif mode == 'inflight' then
  local sets = {}
  for k = 6, #KEYS do
    if redis.call('ZSCORE', KEYS[5], KEYS[k]) then sets[#sets + 1] = KEYS[k] end
  end
  table.sort(sets, curlyq_bytes_less)
  local pos = 0
  for s = 1, #sets do
    local n = redis.call('SCARD', sets[s])
    total = total + n
    if #ids < limit and pos + n > cursor then
      local members = redis.call('SMEMBERS', sets[s])
      table.sort(members, curlyq_bytes_less)
      for i = 1, #members do
        if pos + i - 1 >= cursor and #ids < limit then
          ids[#ids + 1] = members[i]
          extra[#ids] = sets[s]
        end
      end
    end
    pos = pos + n
  end
else
  return redis.error_reply('ERR curlyq: unknown page mode ' .. mode)
end

local out = {total}
for i = 1, #ids do
  local id = ids[i]
  local value = redis.call('HGET', KEYS[1], id)
  local has, len, head, tail = 0, 0, '', ''
  if value then
    has, len = 1, #value
    head = string.sub(value, 1, head_bytes)
    if len > head_bytes and tail_bytes > 0 then tail = string.sub(value, -tail_bytes) end
  end
  out[#out + 1] = {id, extra[i] or false, has, len, head, tail,
    redis.call('HGET', KEYS[2], id), redis.call('HGET', KEYS[3], id),
    redis.call('HGET', KEYS[4], id)}
end
return out
