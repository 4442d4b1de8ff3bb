-- KEYS input. How long ago (Redis' clock, ms) the partition's oldest pending entry was added: the input of the
-- oldest live session that no checkpoint covers, which keeps the partition's log from being trimmed past it.
-- 0 with nothing pending.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], 'velo')
if not ok or not summary[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(string.match(summary[2], '^(%d+)'))
return math.max(0, now - ms)
