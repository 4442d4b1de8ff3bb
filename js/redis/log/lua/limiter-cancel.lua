-- KEYS prefix. ARGV key, ticket ('' for none), token ('' for none), lease ttl ms, undo ('1' or ''), then the
-- caller's limits. A waiter that stops waiting (abort, close): its ticket leaves the line; a permit already handed
-- to it is given back. With a token, the permit of that token is given back too; with undo (its process gave up
-- on an acquire that got no answer in time, so Redis may or may not have run it), the token is marked for a lease
-- (P:x:<token>) so that the acquire, if it runs after this, is refused: exact in either order. Then serves the
-- key's line.
local k, ticket, token, ttl, undo = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
limits(6)
if ticket ~= '' then
  dequeue(k, ticket)
  local g = redis.call('GET', P .. ':g:' .. ticket)
  if g then
    redis.call('DEL', P .. ':g:' .. ticket)
    redis.call('ZREM', P .. ':h:' .. k, (granted(g)))
  end
end
if token ~= '' then
  redis.call('ZREM', P .. ':h:' .. k, token)
  if undo == '1' then redis.call('SET', P .. ':x:' .. token, 1, 'PX', ttl) end
end
clean(k)
serve(k, ttl)
return 1
