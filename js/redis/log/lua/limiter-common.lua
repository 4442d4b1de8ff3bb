-- Shared part of every limiter script (prepended to limiter-*.lua). KEYS[1]: the limiter's prefix
-- `velo:lim:{<name>}`; every other key is that prefix and a suffix, so all of them hash to the slot of `{<name>}`
-- (one Cluster slot per limiter). Time is Redis' own (TIME): processes' clocks may disagree.
--
--   P:cfg        hash: limits set by setLimits (`set` 1, c, l, p, b; '' = none); absent: each caller's own
--   P:seq        counter: numbers of tickets (never reused: `next_seq`)
--   P:h:<k>      sorted set: permits held for key k, token -> lease expiry (ms, Redis' clock). Every permit, a
--                rate-only one too: a permit is held from its grant to its release (or its lease's end) whatever
--                the limits are meanwhile, so a concurrency limit set later counts it
--   P:x:<token>  a token whose acquire its process gave up on (no answer in time): that acquire, if it runs
--                later, is refused (expires after a lease)
--   P:r:<k>      GCRA theoretical arrival time of key k (ms, exactly: see rate_state), expiring once it is past
--   P:q:<k>      sorted set: the line of key k, ticket -> ticket number (first come first served)
--   P:qx:<k>     sorted set: the same tickets -> expiry (a waiter that stops renewing leaves the line)
--   P:qc         hash: ticket -> its cost and the token its permit will have ('<cost> <token>')
--   P:qk         hash: ticket -> its key, for the tickets in P:qc: a line that expired (its waiters died) leaves
--                its tickets there, and `prune_lines` finds them by it
--   P:qk:at      the cursor of `prune_lines`' scan of P:qk (a hint: it expires after a minute unused)
--   P:lines      set: keys whose line is not empty (setLimits re-decides them)
--   P:g:<ticket> a permit handed to a waiting ticket, until it claims it (expires with the lease)
--   P:procs      sorted set: process -> expiry (the divisor of the 'local' fallback)
--   P:admitted, P:rejected  counters of the fleet
--   P:wake       shard channel: "<ticket> g" (granted), "<ticket> <ms>" (retry in ms), "<ticket> x" (refused)
local P = KEYS[1]
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local C, L, PER, B

-- The limits: those setLimits stored, else the caller's (ARGV[base..base+3]: concurrency, limit, period, burst).
local function limits(base)
  local s = redis.call('HMGET', P .. ':cfg', 'set', 'c', 'l', 'p', 'b')
  if s[1] then
    C, L, PER, B = tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
  else
    C, L, PER, B = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  end
end

-- Drops a ticket from key k's line.
local function dequeue(k, ticket)
  redis.call('ZREM', P .. ':q:' .. k, ticket)
  redis.call('ZREM', P .. ':qx:' .. k, ticket)
  redis.call('HDEL', P .. ':qc', ticket)
  redis.call('HDEL', P .. ':qk', ticket)
  if redis.call('EXISTS', P .. ':q:' .. k) == 0 then redis.call('SREM', P .. ':lines', k) end
end

-- A few more of P:qk's tickets looked at (from where the last look stopped): one no longer in its key's line (the
-- line expired with its waiters: no one renewed it) leaves P:qc and P:qk. Called with every ticket added, so the
-- hashes hold at most a bounded share of dead tickets beside the live ones, whoever died. A ticket an earlier
-- release added has no P:qk entry: it leaves P:qc when its line is served or cleaned, as with that release.
local function prune_lines()
  local at = redis.call('GET', P .. ':qk:at') or '0'
  local page = redis.call('HSCAN', P .. ':qk', at, 'COUNT', 4)
  local fields = page[2]
  for i = 1, #fields, 2 do
    local ticket, k = fields[i], fields[i + 1]
    if not redis.call('ZSCORE', P .. ':q:' .. k, ticket) then
      redis.call('HDEL', P .. ':qc', ticket)
      redis.call('HDEL', P .. ':qk', ticket)
    end
  end
  if page[1] == '0' then redis.call('DEL', P .. ':qk:at') else redis.call('SET', P .. ':qk:at', page[1], 'PX', 60000) end
end

-- Permits whose lease ran out, and tickets no one renewed, are gone from now on (never before their expiry).
local function clean(k)
  redis.call('ZREMRANGEBYSCORE', P .. ':h:' .. k, '-inf', NOW)
  local dead = redis.call('ZRANGEBYSCORE', P .. ':qx:' .. k, '-inf', NOW)
  for i = 1, #dead do dequeue(k, dead[i]) end
end

-- q and r with a * b = q * L + r, 0 <= r < L, exactly (a below 2^31, b below 2^32, L below 2^31: every product
-- below 2^53, and fmod is exact).
local function muldiv(a, b)
  local hi, lo = math.floor(b / 65536), b % 65536
  local x = a * hi
  local r1 = math.fmod(x, L)
  local y = r1 * 65536 + a * lo
  local r = math.fmod(y, L)
  return ((x - r1) / L) * 65536 + (y - r) / L, r
end

-- The rate state of key k, exactly: its theoretical arrival time as whole ms W and a remainder R in units of
-- 1/L ms (0 <= R < L), so that the emission interval PER / L ms is PER units and no grant rounds it. (A number
-- kept as a string by tostring has 14 digits, 0.1 ms at today's clock: each grant moved the state back by up to
-- 0.05 ms, and a saturated rate ran over its bound.) Stored as a decimal, "W.F" with F the 17 first decimals of
-- R / L, so the scripts of an earlier version, which read it with tonumber, still read it (to a double; their own
-- writes keep 0.1 ms, as before); read back here as R = ceil(F * L - 1e-6) (F's own rounding is far below 1e-6
-- of a unit), which gives R back exactly, and rounds up (later: fewer grants, never a burst) a state written by
-- those scripts or under another limit (setLimits). Not before NOW.
local function rate_state(k)
  local s = redis.call('GET', P .. ':r:' .. k)
  local W, R
  if s then
    local w, f = string.match(s, '^(%d+)%.(%d+)$')
    if w then
      W, R = tonumber(w), math.ceil(tonumber('0.' .. f) * L - 1e-6)
      if R < 0 then R = 0 end
      if R >= L then W, R = W + 1, 0 end
    elseif tonumber(s) then
      W, R = math.ceil(tonumber(s)), 0
    end
  end
  if not W or W < NOW then return NOW, 0 end
  return W, R
end

-- GCRA: 0 and the new arrival time ({ W, R }) if `cost` units conform now, else the ms to wait until they do.
-- Conforms when new - NOW <= B * PER / L, in whole ms and units of 1/L ms.
local function rate_wait(k, cost)
  if not L then return 0, nil end
  local W, R = rate_state(k)
  local q, r = muldiv(cost, PER)
  W, R = W + q, R + r
  if R >= L then W, R = W + 1, R - L end
  local bq, br = muldiv(B, PER)
  -- over = ms + units / L, with -L < units < L.
  local ms, units = W - NOW - bq, R - br
  if ms > 0 or (ms == 0 and units > 0) then return ms + (units > 0 and 1 or 0), nil end
  return 0, { W, R }
end

-- Whether a permit fits key k's concurrency now.
local function room(k)
  return not C or redis.call('ZCARD', P .. ':h:' .. k) < C
end

-- The next ticket, as a decimal string. Never below Redis' clock times 1000, so a limiter whose
-- keys were lost (a restart without persistence, a reset by deleting them, a failover to a replica that had not
-- got the latest) does not hand out a number it handed out before: each was below the clock of its time, times
-- 1000 (fewer than 1000 are handed out per ms), and the clock has moved on since. A counter that restarted from 0
-- gave token 1 again, and a stale release freed the new holder's permit. (Strings: Lua's own number-to-string
-- keeps 14 digits.)
local function next_seq()
  local seq = redis.call('INCR', P .. ':seq')
  local floor = NOW * 1000
  if seq < floor then
    seq = floor
    redis.call('SET', P .. ':seq', string.format('%d', seq))
  end
  return string.format('%d', seq)
end

-- A new permit of key k under `token` (the fencing token its process made, unique), held until NOW + ttl
-- whatever the limits: a concurrency limit set while it is held counts it.
-- A key's sets of holders and of its line (h:, q:, qx:) expire no earlier than their latest lease: a key whose
-- holders died (kill -9) and that no one uses again leaves nothing behind.
local function keep_for(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

local function grant(k, new, ttl, token)
  redis.call('ZADD', P .. ':h:' .. k, NOW + ttl, token)
  keep_for(P .. ':h:' .. k, ttl)
  if new then
    local W, R = new[1], new[2]
    local stored = R == 0 and string.format('%d', W) or string.format('%d.%s', W, string.sub(string.format('%.17f', R / L), 3))
    redis.call('SET', P .. ':r:' .. k, stored, 'PX', math.max(1, W - NOW + (R > 0 and 1 or 0)))
  end
  redis.call('INCR', P .. ':admitted')
  return token
end

-- A permit granted to a ticket in line (P:g:<ticket>): its token and the time it was granted.
local function granted(g)
  local token, at = string.match(g, '^(%S+) (%S+)$')
  return token, tonumber(at)
end

local function wake(message)
  redis.call('SPUBLISH', P .. ':wake', message)
end

-- Serves key k's line from its head while permits fit: each granted ticket gets its permit under P:g:<ticket>
-- and a message. A head that must wait for the rate is told when to ask again. Returns the head's wait (0: none).
local function serve(k, ttl)
  local q = P .. ':q:' .. k
  while true do
    local head = redis.call('ZRANGE', q, 0, 0)[1]
    if not head or not room(k) then return 0 end
    local cost, token = string.match(redis.call('HGET', P .. ':qc', head) or '', '^(%S+) (%S+)$')
    cost = tonumber(cost) or 1
    token = token or next_seq()
    if redis.call('EXISTS', P .. ':x:' .. token) == 1 then
      -- Its process gave up on this acquire: out of line, granted nothing.
      dequeue(k, head)
    elseif L and cost > B then
      -- Limits changed under it: this cost can never conform any more.
      dequeue(k, head)
      wake(head .. ' x')
    else
      local wait, new = rate_wait(k, cost)
      if wait > 0 then
        wake(head .. ' ' .. wait)
        return wait
      end
      grant(k, new, ttl, token)
      dequeue(k, head)
      -- (With the grant's time: the waiter claims it later, and its permit was granted now.)
      redis.call('SET', P .. ':g:' .. head, token .. ' ' .. NOW, 'PX', ttl)
      wake(head .. ' g')
    end
  end
end
