-- admin_problem: confirm or repair one consistency problem, atomically.
-- KEYS: data, active, scheduled, dead, reasons, errors, orphaned, consumers, signal, then
--       in-flight keys: those of the consumers (listed beforehand with ZRANGE consumers
--       0 -1; only those still registered count), or for 'stray-inflight' the stray key
-- ARGV: action ('confirm' or 'repair'), kind ('unreferenced', 'duplicate', 'dangling',
--       'stray-inflight'), id (the job ID; for a stray set, its consumer ID)
-- confirm returns {holds (0/1), active occurrences, scheduled (0/1), dead (0/1), in-flight
-- occurrences} as found now; repair re-checks the problem and returns 1 if it changed
-- anything. Repairs: unreferenced -> appended to active; duplicate -> one place kept (in
-- flight, else scheduled, else active nearest the head, else dead), the others removed
-- (a dead reason with its dead entry); dangling -> removed from active, scheduled and
-- dead with its reason, error and orphan count (in-flight references stay); stray
-- in-flight set (still unregistered) -> its jobs appended to active in ascending ID
-- order, the set deleted. Each repair that moves a job to active sets the signal. No
-- repair deletes data.
local checks = {{KEYS[1], 'hash'}, {KEYS[2], 'list'}, {KEYS[3], 'zset'}, {KEYS[4], 'zset'},
  {KEYS[5], 'hash'}, {KEYS[6], 'hash'}, {KEYS[7], 'hash'}, {KEYS[8], 'zset'},
  {KEYS[9], 'list'}}
for k = 10, #KEYS do checks[#checks + 1] = {KEYS[k], 'set'} end
local err = curlyq_check(checks)
if err then return err end

local action, kind, id = ARGV[1], ARGV[2], ARGV[3]
if action ~= 'confirm' and action ~= 'repair' then
  return redis.error_reply('ERR curlyq: unknown action ' .. action)
end

if kind == 'stray-inflight' then
  local key = KEYS[10]
  local n = 0
  if key and not redis.call('ZSCORE', KEYS[8], key) then n = redis.call('SCARD', key) end
  if action == 'confirm' then
    local holds = 0
    if n > 0 then holds = 1 end
    return {holds, 0, 0, 0, n}
  end
  if n == 0 then return 0 end
  local ids = redis.call('SMEMBERS', key)
  table.sort(ids, curlyq_bytes_less)
  curlyq_chunked('RPUSH', KEYS[2], ids, 1, #ids)
  redis.call('DEL', key)
  curlyq_signal(KEYS[9])
  return 1
end

local has_data = redis.call('HEXISTS', KEYS[1], id) == 1
local positions = redis.call('LPOS', KEYS[2], id, 'COUNT', 0)
local scheduled = redis.call('ZSCORE', KEYS[3], id) ~= false
local dead = redis.call('ZSCORE', KEYS[4], id) ~= false
local holders = {}
for k = 10, #KEYS do
  if redis.call('ZSCORE', KEYS[8], KEYS[k]) and redis.call('SISMEMBER', KEYS[k], id) == 1 then
    holders[#holders + 1] = KEYS[k]
  end
end
table.sort(holders, curlyq_bytes_less)
local places = #positions + #holders
if scheduled then places = places + 1 end
if dead then places = places + 1 end

local holds
if kind == 'unreferenced' then
  holds = has_data and places == 0
elseif kind == 'duplicate' then
  holds = places > 1
elseif kind == 'dangling' then
  holds = (not has_data) and places > 0
else
  return redis.error_reply('ERR curlyq: unknown problem kind ' .. kind)
end

if action == 'confirm' then
  local function flag(b) if b then return 1 end return 0 end
  return {flag(holds), #positions, flag(scheduled), flag(dead), #holders}
end
if not holds then return 0 end

if kind == 'unreferenced' then
  redis.call('RPUSH', KEYS[2], id)
  curlyq_signal(KEYS[9])
  return 1
end

local function drop_dead()
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end

if kind == 'duplicate' then
  if #holders > 0 then
    for i = 2, #holders do redis.call('SREM', holders[i], id) end
    if scheduled then redis.call('ZREM', KEYS[3], id) end
    if #positions > 0 then redis.call('LREM', KEYS[2], 0, id) end
    if dead then drop_dead() end
  elseif scheduled then
    if #positions > 0 then redis.call('LREM', KEYS[2], 0, id) end
    if dead then drop_dead() end
  else
    if #positions > 1 then redis.call('LREM', KEYS[2], -(#positions - 1), id) end
    if dead then drop_dead() end
  end
  return 1
end

-- dangling
local changed = redis.call('LREM', KEYS[2], 0, id) + redis.call('ZREM', KEYS[3], id) +
  redis.call('ZREM', KEYS[4], id) + redis.call('HDEL', KEYS[5], id) +
  redis.call('HDEL', KEYS[6], id) + redis.call('HDEL', KEYS[7], id)
if changed > 0 then return 1 end
return 0
