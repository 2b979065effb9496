-- admin_data_ids: one HSCAN page of the job IDs that have data (names only, never the
-- stored bytes).
-- KEYS: data
-- ARGV: cursor, count
-- Returns {next cursor ('0' when the pass is over), {id1, id2, ...}}.
local err = curlyq_check({{KEYS[1], 'hash'}})
if err then return err end

local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local ids = {}
for i = 1, #page[2], 2 do ids[#ids + 1] = page[2][i] end
return {page[1], ids}
