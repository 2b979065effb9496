-- trim_dead: remove old dead jobs with their data, reasons, orphan counts, last errors
-- and trace contexts; then last errors and trace contexts whose job is gone.
-- KEYS: dead, data, reasons, orphaned, errors, errors_cursor, trace, trace_cursor
-- ARGV: killed_before (Unix seconds, float), keep_at_most, max_jobs (<= 1000),
--       sweep (most fields of errors to examine, 0 = none)
-- Removes dead jobs killed strictly before killed_before, then (with what is left of
-- max_jobs) the oldest beyond keep_at_most. Returns the number removed.
--
-- Then the sweep of leftover last errors. curlyq removes a job's entry in errors when
-- it acks, kills or trims the job, but a Go CurlyQ consumer sharing the queue acks by
-- deleting the data only, so its entry stays: it is removed here once no data is left
-- for its ID. The work is bounded, and the hot path (ack, retry) never scans:
-- - nothing happens while errors holds at most keep_at_most fields (one HLEN): that
--   many leftovers are tolerated, as that many dead jobs are;
-- - with at most `sweep` fields, all are examined (HKEYS, one HEXISTS each);
-- - with more, one HSCAN page of about `sweep` fields is examined, from the cursor kept
--   in errors_cursor (deleted when a pass ends), so every leftover goes within one
--   whole pass: about HLEN / sweep calls.
-- The caller sends sweep only in its last call, after all dead jobs are trimmed. An entry
-- whose job has data is never removed, and the entries removed are not counted.
-- The trace hash is swept by the same rules, with its own cursor in trace_cursor (a Go
-- CurlyQ ack leaves a traced job's entry there too).
local err = curlyq_check({{KEYS[1], 'zset'}, {KEYS[2], 'hash'}, {KEYS[3], 'hash'},
  {KEYS[4], 'hash'}, {KEYS[5], 'hash'}, {KEYS[6], 'string'}, {KEYS[7], 'hash'},
  {KEYS[8], 'string'}})
if err then return err end

local keep = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local sweep = tonumber(ARGV[4])
local removed = 0
-- Read before any write: a cursor that HSCAN would refuse (not written by this script)
-- restarts the pass rather than fail the call after the dead jobs were trimmed.
local function read_cursor(key)
  local cursor = redis.call('GET', key)
  if not cursor or not string.match(cursor, '^%d+$') or #cursor > 19 then cursor = '0' end
  return cursor
end
local cursors = {read_cursor(KEYS[6]), read_cursor(KEYS[8])}

local function remove(ids)
  for i = 1, #ids do
    redis.call('ZREM', KEYS[1], ids[i])
    redis.call('HDEL', KEYS[2], ids[i])
    redis.call('HDEL', KEYS[3], ids[i])
    redis.call('HDEL', KEYS[4], ids[i])
    redis.call('HDEL', KEYS[5], ids[i])
    redis.call('HDEL', KEYS[7], ids[i])
  end
  removed = removed + #ids
  budget = budget - #ids
end

if budget > 0 then
  remove(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, budget))
end
if budget > 0 then
  local excess = redis.call('ZCARD', KEYS[1]) - keep
  if excess > 0 then
    remove(redis.call('ZRANGE', KEYS[1], 0, math.min(excess, budget) - 1))
  end
end

-- Removes the fields of hash `side` whose job has no data, from `cursor` (kept in
-- `cursor_key`), by the rules above.
local function sweep_side(side, cursor_key, cursor)
  local n = redis.call('HLEN', side)
  -- A whole pass fits in one call: a pass under way is moot.
  if n <= sweep then redis.call('DEL', cursor_key) end
  if n <= keep then return end
  local fields = {}
  if n <= sweep then
    fields = redis.call('HKEYS', side)
  else
    local page = redis.call('HSCAN', side, cursor, 'COUNT', sweep)
    for i = 1, #page[2], 2 do fields[#fields + 1] = page[2][i] end
    if page[1] == '0' then
      redis.call('DEL', cursor_key)
    else
      redis.call('SET', cursor_key, page[1])
    end
  end
  local gone = {}
  for i = 1, #fields do
    if redis.call('HEXISTS', KEYS[2], fields[i]) == 0 then gone[#gone + 1] = fields[i] end
  end
  curlyq_chunked('HDEL', side, gone, 1, #gone)
end

if sweep > 0 then
  sweep_side(KEYS[5], KEYS[6], cursors[1])
  sweep_side(KEYS[7], KEYS[8], cursors[2])
end
return removed
