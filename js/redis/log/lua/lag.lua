-- KEYS input. The group's lag: entries not yet delivered. Redis 7.0+ gives it
-- as entries added minus its count of the entries the group read, and that
-- count can go wrong for good (with the trims below delivered entries, an
-- AOF rewrite and a restart have left it hundreds off). So: with nothing
-- undelivered the lag is 0, and a wrong count is set right there (Redis'
-- own XINFO lag with it); else it is at most the stream's length (the
-- undelivered entries and the delivered ones not trimmed yet): a bound, not
-- a count, as counting runs at every renewal of every partition. When Redis
-- cannot compute it (an XDEL inside the undelivered range), the undelivered
-- entries are counted, up to 100 000.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end

-- Whether entry id `a` comes after `b`.
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am > bm or (am == bm and tonumber(as) > tonumber(bs))
end

for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == 'velo' then
    local lag = info['lag']
    local delivered = info['last-delivered-id']
    local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
    if last == nil or not after(last[1], delivered) then
      if lag ~= 0 then
        local stream = redis.call('XINFO', 'STREAM', KEYS[1])
        for i = 1, #stream, 2 do
          if stream[i] == 'entries-added' then
            redis.call('XGROUP', 'SETID', KEYS[1], 'velo', delivered, 'ENTRIESREAD', stream[i + 1])
          end
        end
      end
      return 0
    end
    if type(lag) == 'number' then return math.min(lag, redis.call('XLEN', KEYS[1])) end
    return #redis.call('XRANGE', KEYS[1], '(' .. delivered, '+', 'COUNT', 100000)
  end
end
return redis.call('XLEN', KEYS[1])
