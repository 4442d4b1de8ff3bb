-- KEYS hash; ARGV n, then per output: mark field, start ms, start seq, seq, field count, fields and values.
-- Returns {applied, skipped}.
local i = 2
local applied, skipped = 0, 0
for _ = 1, tonumber(ARGV[1]) do
  local ms, s, seq = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local newer = true
  local mark = redis.call('HGET', KEYS[1], ARGV[i])
  if mark then
    local oms, os, oseq = string.match(mark, '^(%d+)%-(%d+) (%d+)$')
    oms, os, oseq = tonumber(oms), tonumber(os), tonumber(oseq)
    newer = ms > oms or (ms == oms and (s > os or (s == os and seq > oseq)))
  end
  local n = tonumber(ARGV[i + 4])
  if newer then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '-' .. ARGV[i + 2] .. ' ' .. ARGV[i + 3], unpack(ARGV, i + 5, i + 4 + 2 * n))
    applied = applied + 1
  else
    skipped = skipped + 1
  end
  i = i + 5 + 2 * n
end
return {applied, skipped}
