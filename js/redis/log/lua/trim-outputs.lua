-- KEYS lease, out; ARGV token, acked ('1': trim what every consumer group has acked), maxlen ('0': no cap).
-- Returns how many outputs were removed. LIMIT 0: all there is to remove at once (with '~' Redis stops at
-- 100 nodes a call by default, 10,000 entries, fewer than a busy partition writes between two trims).
-- - acked: every group of the output stream still needs its oldest pending entry, or with none pending the
--   entries after its last delivered one; the stream is trimmed (MINID ~, whole nodes only: never past the
--   point) to the oldest entry any group needs. A stream without groups is not trimmed: nothing says what a
--   reader without a group has read.
-- - maxlen: then about the newest maxlen outputs are kept (MAXLEN ~: at least maxlen), read or not.
-- Fenced: fence.lua runs first (KEYS[1] lease, ARGV[1] token): one process trims a partition's outputs.
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local removed = 0
local function older(a, b)
  local a1, a2 = string.match(a, '^(%d+)-(%d+)$')
  local b1, b2 = string.match(b, '^(%d+)-(%d+)$')
  a1, b1 = tonumber(a1), tonumber(b1)
  if a1 ~= b1 then return a1 < b1 end
  return tonumber(a2) < tonumber(b2)
end
if ARGV[2] == '1' then
  local floor = nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local need = info['last-delivered-id']
    if tonumber(info['pending']) > 0 then need = redis.call('XPENDING', KEYS[2], info['name'])[2] end
    if floor == nil or older(need, floor) then floor = need end
  end
  if floor ~= nil then removed = removed + redis.call('XTRIM', KEYS[2], 'MINID', '~', floor, 'LIMIT', 0) end
end
if ARGV[3] ~= '0' then removed = removed + redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[3], 'LIMIT', 0) end
return removed
