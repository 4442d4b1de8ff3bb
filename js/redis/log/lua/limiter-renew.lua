-- KEYS prefix. ARGV process id, lease ttl ms, permit count n, ticket count m, the caller's limits (4 values),
-- then n pairs (key, token) and m pairs (key, ticket). One call per process per interval for everything it holds
-- and waits for: a permit or ticket still within its lease is extended to NOW + ttl; one already past it is
-- lost (removed, never revived). Lines of the keys waited for are served (a lost wake-up message is made up for
-- here). Replies { lost tokens, lost tickets, tickets holding a handed-over permit, live processes, admitted,
-- rejected, now, the limits in force (concurrency, limit, period, burst; '' = none) }.
local pid, ttl, n, m = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
limits(5)
local lostPermits, lostTickets, granted = {}, {}, {}
local i = 9
for _ = 1, n do
  local k, token = ARGV[i], ARGV[i + 1]
  local h = P .. ':h:' .. k
  local expiry = tonumber(redis.call('ZSCORE', h, token))
  if expiry and expiry > NOW then
    redis.call('ZADD', h, 'XX', NOW + ttl, token)
    keep_for(h, ttl)
  else
    if expiry then redis.call('ZREM', h, token) end
    lostPermits[#lostPermits + 1] = token
  end
  i = i + 2
end
for _ = 1, m do
  local k, ticket = ARGV[i], ARGV[i + 1]
  clean(k)
  serve(k, ttl)
  if redis.call('EXISTS', P .. ':g:' .. ticket) == 1 then
    granted[#granted + 1] = ticket
  elseif redis.call('ZSCORE', P .. ':qx:' .. k, ticket) then
    redis.call('ZADD', P .. ':qx:' .. k, NOW + ttl, ticket)
    keep_for(P .. ':qx:' .. k, ttl)
    keep_for(P .. ':q:' .. k, ttl)
  else
    lostTickets[#lostTickets + 1] = ticket
  end
  i = i + 2
end
redis.call('ZADD', P .. ':procs', NOW + ttl, pid)
redis.call('ZREMRANGEBYSCORE', P .. ':procs', '-inf', NOW)
return {
  lostPermits, lostTickets, granted, redis.call('ZCARD', P .. ':procs'),
  tonumber(redis.call('GET', P .. ':admitted')) or 0, tonumber(redis.call('GET', P .. ':rejected')) or 0, NOW,
  { tostring(C or ''), tostring(L or ''), tostring(PER or ''), tostring(B or '') },
}
