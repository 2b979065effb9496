-- curlyq prelude, prepended to every script by the curlyq-lua crate.
--
-- curlyq_check(list) reads the type of every key in `list` (pairs of {key, expected})
-- before the script writes anything. A key is acceptable when it is absent ('none') or
-- holds the expected type. Returns an error reply for the first key that holds anything
-- else, or nil when all keys are fine. Redis keeps the writes a script made before a
-- runtime error, so every script calls this first and returns its error at once.
local function curlyq_check(list)
  for i = 1, #list do
    local key = list[i][1]
    local want = list[i][2]
    local found = redis.call('TYPE', key).ok
    if found ~= 'none' and found ~= want then
      return redis.error_reply('WRONGTYPE curlyq: ' .. key .. ' holds a ' .. found ..
        ', expected a ' .. want)
    end
  end
  return nil
end

-- Largest number of arguments handed to one Redis command built from a Lua table
-- (Lua's unpack fails near 8,000 elements).
local curlyq_chunk = 500 -- even: callers pass score and member pairs

-- Calls `command key <items[first..last]>` in slices of at most curlyq_chunk items.
local function curlyq_chunked(command, key, items, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + curlyq_chunk - 1, last)
    redis.call(command, key, unpack(items, i, j))
    i = j + 1
  end
end

-- Sets the wake-up flag: the signal list holds exactly one element afterwards.
local function curlyq_signal(key)
  redis.call('DEL', key)
  redis.call('LPUSH', key, 1)
end

-- The lowest score in sorted set `key` as a string, or false when the set is empty.
local function curlyq_earliest_score(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 2 then return first[2] end
  return false
end

-- Whether string a sorts before string b in byte order (as Redis orders sorted-set
-- members, and as the reference model orders IDs). Lua's own `<` on strings follows the
-- server's locale (strcoll), so it is not used for choices other backends must repeat.
local function curlyq_bytes_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Sets job `id`'s field in the trace hash `key` to `trace`, or removes it when `trace` is
-- the empty string.
local function curlyq_set_trace(key, id, trace)
  if trace == '' then
    redis.call('HDEL', key, id)
  else
    redis.call('HSET', key, id, trace)
  end
end

-- Adds n to each of `fields` in the totals hash `total` and in the per-minute hash
-- `minute`, which then expires `ttl` seconds later. Writes nothing when n is 0.
local function curlyq_count(total, minute, ttl, n, fields)
  if n <= 0 then return end
  for i = 1, #fields do
    redis.call('HINCRBY', total, fields[i], n)
    redis.call('HINCRBY', minute, fields[i], n)
  end
  redis.call('EXPIRE', minute, ttl)
end
