-- admin_pause: pause or resume a queue.
-- KEYS: paused, signal
-- ARGV: '1' to pause, '0' to resume
-- Returns 1 if the queue was paused before, else 0. Resuming a paused queue sets the
-- signal, so that idle consumers wake.
local err = curlyq_check({{KEYS[1], 'string'}, {KEYS[2], 'list'}})
if err then return err end

local was = redis.call('EXISTS', KEYS[1])
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], '1')
else
  redis.call('DEL', KEYS[1])
  if was == 1 then curlyq_signal(KEYS[2]) end
end
return was
