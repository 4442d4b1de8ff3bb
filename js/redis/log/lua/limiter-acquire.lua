-- KEYS prefix. ARGV key, ticket ('' for a new acquire), cost, mode ('t' throttle, 'r' reject), lease ttl ms,
-- maxWaiting, then the caller's limits (concurrency, limit, period, burst; '' = none), then the token the permit
-- gets (made by the caller before sending, unique; a new acquire's, or the waiting ticket's).
-- Replies { 'g', token, time granted } granted (a permit held until released or its lease ends: renew it, give
-- it back); { 'w', ticket, retry ms or 0 } waiting in line; { 'r', retry ms, now } refused (reject mode);
-- { 'f', now } line full; { 'l', now } the ticket had left the line (expired); { 'x', now } the cost can never
-- conform (larger than the burst); { 'c', now } its caller gave up on it before it ran (limiter-cancel.lua with
-- the token): nothing done.
local k, ticket, cost, mode, ttl, maxWaiting = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
limits(7)
clean(k)
local q = P .. ':q:' .. k
local token = ARGV[11]
if ticket == '' and redis.call('EXISTS', P .. ':x:' .. token) == 1 then return { 'c', NOW } end
if L and cost > B then return { 'x', NOW } end

if ticket ~= '' then
  local function claim()
    local g = redis.call('GET', P .. ':g:' .. ticket)
    if g then
      redis.call('DEL', P .. ':g:' .. ticket)
      local token, at = granted(g)
      return { 'g', token, at }
    end
  end
  local claimed = claim()
  if claimed then return claimed end
  if not redis.call('ZSCORE', q, ticket) then return { 'l', NOW } end
  local wait = serve(k, ttl)
  claimed = claim()
  if claimed then return claimed end
  redis.call('ZADD', P .. ':qx:' .. k, NOW + ttl, ticket)
  keep_for(P .. ':qx:' .. k, ttl)
  keep_for(q, ttl)
  local head = redis.call('ZRANGE', q, 0, 0)[1]
  return { 'w', ticket, head == ticket and wait or 0 }
end

if redis.call('EXISTS', q) == 0 and room(k) then
  local wait, new = rate_wait(k, cost)
  if wait == 0 then
    grant(k, new, ttl, token)
    return { 'g', token, NOW }
  end
  if mode == 'r' then
    redis.call('INCR', P .. ':rejected')
    return { 'r', wait, NOW }
  end
elseif mode == 'r' then
  redis.call('INCR', P .. ':rejected')
  return { 'r', 0, NOW }
end
if redis.call('ZCARD', q) >= maxWaiting then
  redis.call('INCR', P .. ':rejected')
  return { 'f', NOW }
end
ticket = next_seq()
-- (The score as the string itself: an exact double, where a Lua number would pass through a 14-digit format.)
redis.call('ZADD', q, ticket, ticket)
redis.call('ZADD', P .. ':qx:' .. k, NOW + ttl, ticket)
keep_for(q, ttl)
keep_for(P .. ':qx:' .. k, ttl)
redis.call('HSET', P .. ':qc', ticket, cost .. ' ' .. token)
redis.call('HSET', P .. ':qk', ticket, k)
prune_lines()
redis.call('SADD', P .. ':lines', k)
local wait = serve(k, ttl)
local g = redis.call('GET', P .. ':g:' .. ticket)
if g then
  redis.call('DEL', P .. ':g:' .. ticket)
  local granted_token, at = granted(g)
  return { 'g', granted_token, at }
end
local head = redis.call('ZRANGE', q, 0, 0)[1]
return { 'w', ticket, head == ticket and wait or 0 }
