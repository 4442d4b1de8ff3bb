-- KEYS input. The group's lag (Redis 7.0+: entries added minus entries
-- read). Redis cannot compute it after an XDEL inside the undelivered
-- range; then the undelivered entries are counted, up to 100 000.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == 'velo' then
    if type(info['lag']) == 'number' then return info['lag'] end
    return #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 100000)
  end
end
return redis.call('XLEN', KEYS[1])
