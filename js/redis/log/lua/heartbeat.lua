-- KEYS workers (a sorted set: worker id -> when its registration runs out, Redis' clock, ms), adverts (a hash:
-- worker id -> the versions it runs, JSON). ARGV worker, ttl, mode ('' or 'nx'), advert. Registers the worker for
-- ttl ms ('nx': only if it is not registered, leaving a registration's expiry where its last renewal put it), with
-- its advert; answers the number of live workers, the one other than it whose registration runs out first and the
-- time it has left, ms ('' and -1 when it is alone: a worker that stops renewing leaves then), and every live
-- worker's advert (id, advert, ...). A registration that ran out takes its advert with it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #gone, 1000 do redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 999, #gone))) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == 'nx' then
  redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
local live = redis.call('ZCARD', KEYS[1])
-- The live workers' adverts only (one whose registration went otherwise, by leave() or a DEL, is removed here).
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local adverts = {}
if #members > 0 then
  local values = redis.call('HMGET', KEYS[2], unpack(members))
  for i = 1, #members do
    if values[i] then
      adverts[#adverts + 1] = members[i]
      adverts[#adverts + 1] = values[i]
    end
  end
end
if redis.call('HLEN', KEYS[2]) > #adverts / 2 then
  local isLive = {}
  for i = 1, #members do isLive[members[i]] = true end
  for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
    if not isLive[id] then redis.call('HDEL', KEYS[2], id) end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 1, 'WITHSCORES')
for i = 1, #first, 2 do
  if first[i] ~= ARGV[1] then return { live, first[i], tonumber(first[i + 1]) - now, adverts } end
end
return { live, '', -1, adverts }
