-- KEYS workers (a sorted set: worker id -> when its registration runs out, Redis' clock, ms). ARGV worker, ttl,
-- mode ('' or 'nx'). Registers the worker for ttl ms ('nx': only if it is not registered, leaving a registration's
-- expiry where its last renewal put it); answers the number of live workers and, if another is registered, the one
-- whose registration runs out first and the time it has left, ms (a worker that stops renewing leaves then).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == 'nx' then
  redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
local live = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 1, 'WITHSCORES')
for i = 1, #first, 2 do
  if first[i] ~= ARGV[1] then return { live, first[i], tonumber(first[i + 1]) - now } end
end
return { live }
