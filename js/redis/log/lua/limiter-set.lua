-- KEYS prefix. ARGV concurrency, limit, period, burst ('' = none), lease ttl ms. Stores the fleet's limits
-- (every process decides by them from its next call on) and re-decides every waiting line at once.
redis.call('HSET', P .. ':cfg', 'set', 1, 'c', ARGV[1], 'l', ARGV[2], 'p', ARGV[3], 'b', ARGV[4])
limits(1)
local ttl = tonumber(ARGV[5])
for _, k in ipairs(redis.call('SMEMBERS', P .. ':lines')) do
  clean(k)
  serve(k, ttl)
end
return 1
