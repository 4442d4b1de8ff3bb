-- KEYS prefix. ARGV key, ticket, lease ttl ms, then the caller's limits. A waiter that stops waiting (abort,
-- close): its ticket leaves the line; a permit already handed to it is given back. Then serves the key's line.
local k, ticket, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
limits(4)
dequeue(k, ticket)
local g = redis.call('GET', P .. ':g:' .. ticket)
if g then
  redis.call('DEL', P .. ':g:' .. ticket)
  redis.call('ZREM', P .. ':h:' .. k, (granted(g)))
end
clean(k)
serve(k, ttl)
return 1
