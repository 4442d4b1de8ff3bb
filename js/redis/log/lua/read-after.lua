-- KEYS out (a partition's output stream); ARGV position, count. A key reader's read of the outputs after
-- `position` (redisKeyOutputs, redisSse, redisNdjson), in one step, so that no trim can come between the check
-- of the position and the read. Read-only.
-- Returns {1, entries} when `position` is an entry of the stream: entries are the (up to count) entries right
-- after it, and none can be missing in between (trims remove the oldest entries, so all after a kept one are kept).
-- Otherwise {0, entries, length, last-generated-id, entries-added, first entry's id or ''}, for the reader to
-- judge (js/redis/key-outputs.ts, `judge`): a start position, one at the stream's end, one trimmed away, or one
-- that never was. entries-added is -1 where the server does not say it.
local count = tonumber(ARGV[2])
local got = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', count + 1)
if got[1] and got[1][1] == ARGV[1] then
  table.remove(got, 1)
  return {1, got}
end
if got[count + 1] then table.remove(got) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, got, 0, '0-0', 0, ''} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local f = {}
for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
local first = f['first-entry']
return {0, got, f['length'], f['last-generated-id'], f['entries-added'] or -1, first and first[1] or ''}
