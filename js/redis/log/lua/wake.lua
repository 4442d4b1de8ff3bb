-- KEYS lease, input, timers, opened, versions; ARGV token, key, sid, timer id, time (ms, Redis' clock), payload,
-- and, for a session whose opening is not written yet, its version and opening (as commit.lua keeps them: a
-- session whose wake-up is in the input is pinned to its version as one with outputs is). Writes the wake-up
-- of timer `id` of session `sid` into the input (fields k, w = "<sid> <id>", d = its due time, v), once per (sid, id): a timer made
-- again by a replay, or by an earlier owner before a takeover, writes nothing. Returns the entry id, '' when it
-- was written before, or the ms still to wait when Redis' clock has not reached `time`.
-- Fenced: fence.lua runs first (KEYS[1] lease, ARGV[1] token).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = tonumber(ARGV[5])
if now < due then return due - now end
local fired = redis.call('HGET', KEYS[3], ARGV[3]) or ''
if string.find(' ' .. fired .. ' ', ' ' .. ARGV[4] .. ' ', 1, true) then return '' end
redis.call('HSET', KEYS[3], ARGV[3], fired == '' and ARGV[4] or (fired .. ' ' .. ARGV[4]))
if ARGV[8] and redis.call('HSETNX', KEYS[4], ARGV[3], ARGV[8]) == 1 then redis.call('HINCRBY', KEYS[5], ARGV[7], 1) end
return redis.call('XADD', KEYS[2], '*', 'k', ARGV[2], 'w', ARGV[3] .. ' ' .. ARGV[4], 'd', ARGV[5], 'v', ARGV[6])
