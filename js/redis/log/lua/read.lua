-- KEYS lease, input; ARGV token, from, count. Reads as the group's one
-- consumer; with nothing new, returns the input's last id: every entry up to
-- it has been delivered, so a wake-up waits for entries after it. Reads go
-- first as a plain XREADGROUP fenced by the lease's fence stream (no entry
-- goes through Lua); this script answers the reads that find nothing.
-- Fenced: fence.lua runs first (KEYS[1] lease, ARGV[1] token).
local r = redis.call('XREADGROUP', 'GROUP', 'velo', 'owner', 'COUNT', ARGV[3], 'STREAMS', KEYS[2], ARGV[2])
if r and #r[1][2] > 0 then return {r[1][2], ''} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then return {{}, last[1][1]} end
return {{}, '0-0'}
