-- admin_stats: a queue's sizes, pause state, head job, earliest due time and counters.
-- KEYS: active, scheduled, dead, consumers, paused, counts, data, then `m` per-minute
--       counter keys (oldest first), then the in-flight keys of the consumers (listed
--       beforehand with ZRANGE consumers 0 -1; only those still registered are counted)
-- ARGV: m, head_bytes (how many bytes of the head job's data to return)
-- Returns {active, scheduled, dead, consumers, paused (0/1), inflight, head (the first
-- head_bytes bytes of the head job's data, nil when none), head_len (its length, nil),
-- earliest scheduled score (nil), HGETALL counts, {HGETALL of each minute key}}.
local m = tonumber(ARGV[1])
local checks = {{KEYS[1], 'list'}, {KEYS[2], 'zset'}, {KEYS[3], 'zset'}, {KEYS[4], 'zset'},
  {KEYS[5], 'string'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'}}
for k = 8, 7 + m do checks[#checks + 1] = {KEYS[k], 'hash'} end
for k = 8 + m, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
local err = curlyq_check(checks)
if err then return err end

local inflight = 0
for k = 8 + m, #KEYS do
  if redis.call('ZSCORE', KEYS[4], KEYS[k]) then
    inflight = inflight + redis.call('SCARD', KEYS[k])
  end
end
local head, head_len = false, false
local head_id = redis.call('LINDEX', KEYS[1], 0)
if head_id then
  local value = redis.call('HGET', KEYS[7], head_id)
  if value then
    head = string.sub(value, 1, tonumber(ARGV[2]))
    head_len = #value
  end
end
local minutes = {}
for k = 8, 7 + m do minutes[#minutes + 1] = redis.call('HGETALL', KEYS[k]) end
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]), redis.call('EXISTS', KEYS[5]), inflight, head, head_len,
  curlyq_earliest_score(KEYS[2]), redis.call('HGETALL', KEYS[6]), minutes}
