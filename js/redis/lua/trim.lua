-- KEYS lease, input; ARGV token. Trims the input to its oldest pending
-- entry (the oldest input a live session still needs), or with nothing
-- pending to the group's last delivered entry: nothing undelivered or
-- pending is ever removed.
-- Fenced: fence.lua runs first (KEYS[1] lease, ARGV[1] token).
local min = redis.call('XPENDING', KEYS[2], 'velo')[2]
if not min then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info['name'] == 'velo' then min = info['last-delivered-id'] end
  end
end
if not min then return 0 end
return redis.call('XTRIM', KEYS[2], 'MINID', min)
