-- admin_delete: delete jobs by ID in any state but in flight.
-- KEYS: data, active, scheduled, dead, reasons, errors, orphaned, consumers, trace, then
--       the in-flight keys (listed beforehand with ZRANGE consumers 0 -1)
-- ARGV: id1, id2, ... (<= 1000)
-- A job in the in-flight set of a registered consumer is left untouched ('inflight');
-- any other is removed from scheduled, active (LREM) and dead, with its data, reason,
-- error, orphan count and trace context. Returns one string per ID: 'inflight', the first state it was
-- in ('scheduled', 'active', 'dead'), 'unplaced' (data only) or 'missing'.
local checks = {{KEYS[1], 'hash'}, {KEYS[2], 'list'}, {KEYS[3], 'zset'}, {KEYS[4], 'zset'},
  {KEYS[5], 'hash'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'}, {KEYS[8], 'zset'},
  {KEYS[9], 'hash'}}
for k = 10, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
local err = curlyq_check(checks)
if err then return err end

local sets = {}
for k = 10, #KEYS do
  if redis.call('ZSCORE', KEYS[8], KEYS[k]) then sets[#sets + 1] = KEYS[k] end
end
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  local held = false
  for s = 1, #sets do
    if redis.call('SISMEMBER', sets[s], id) == 1 then held = true break end
  end
  if held then
    out[i] = 'inflight'
  else
    local scheduled = redis.call('ZREM', KEYS[3], id)
    local active = redis.call('LREM', KEYS[2], 0, id)
    local dead = redis.call('ZREM', KEYS[4], id)
    local data = redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
    redis.call('HDEL', KEYS[9], id)
    if scheduled == 1 then out[i] = 'scheduled'
    elseif active > 0 then out[i] = 'active'
    elseif dead == 1 then out[i] = 'dead'
    elseif data == 1 then out[i] = 'unplaced'
    else out[i] = 'missing' end
  end
end
return out
