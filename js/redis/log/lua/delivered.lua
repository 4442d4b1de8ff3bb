-- KEYS input. The last entry id the group `velo` has delivered (to the
-- worker that owns the partition), or '0-0' when the group does not exist
-- yet (no worker ever read the partition): a recording stops there.
if redis.call('EXISTS', KEYS[1]) == 0 then return '0-0' end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == 'velo' then return info['last-delivered-id'] end
end
return '0-0'
