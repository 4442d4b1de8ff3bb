-- KEYS prefix. ARGV key, token, lease ttl ms, then the caller's limits (concurrency, limit, period, burst).
-- Gives the permit back if its lease still holds: 1; 0 when it was already gone (its lease ran out, and it may
-- have been handed to someone else: a stale token frees nothing). Then serves the key's line.
local k, token, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
limits(4)
local h = P .. ':h:' .. k
local expiry = tonumber(redis.call('ZSCORE', h, token))
local freed = 0
if expiry then
  redis.call('ZREM', h, token)
  if expiry > NOW then freed = 1 end
end
clean(k)
serve(k, ttl)
return freed
