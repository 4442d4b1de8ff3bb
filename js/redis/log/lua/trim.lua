-- KEYS lease, input, ends, ended; ARGV token. Trims the input to its oldest
-- pending entry (the oldest input a live session still needs), or with
-- nothing pending to the group's last delivered entry: nothing undelivered
-- or pending is ever removed. The ends commit.lua keeps (checkReplay) of
-- sessions whose first entry is before that entry's ms go too: no replay can
-- reach them any more.
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
local before = '(' .. string.match(min, '^(%d+)')
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', before)
for j = 1, #gone, 1000 do
  redis.call('HDEL', KEYS[3], unpack(gone, j, math.min(j + 999, #gone)))
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', before) end
return redis.call('XTRIM', KEYS[2], 'MINID', min)
