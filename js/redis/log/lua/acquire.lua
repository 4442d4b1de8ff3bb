-- KEYS lease, epoch, input, fence prefix (the lease's fence stream is the prefix and its epoch: one more key
-- under the partition's hash tag), versions (live sessions per version), refused (set while the partition is
-- refused to some worker); ARGV worker, ttl, mode ('' or 'rescue'), then the versions the worker runs ('*': any, a
-- worker that migrates). A partition with a live session of a version the worker does not run is refused:
-- {'versions', those versions} (sessions opened with no version, field '', run on any worker), and marked refused
-- for ttl ms. 'rescue' (a worker past its fair share) takes it only while it is marked: {'versions'} otherwise. The input's group is made with the partition's first lease. The lease and
-- its fence get the same expiry in one script, so they expire at the same instant. Held: the lease's time left, ms,
-- and its token (a worker waiting for the partition may try again at its expiry rather than at its next balance).
if redis.call('EXISTS', KEYS[1]) == 1 then return { redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[1]) } end
if ARGV[3] == 'rescue' and redis.call('EXISTS', KEYS[6]) == 0 then return { 'versions' } end
local runs = {}
for i = 4, #ARGV do runs[ARGV[i]] = true end
local missing = { 'versions' }
for _, v in ipairs(redis.call('HKEYS', KEYS[5])) do
  if v ~= '' and not runs[v] and not runs['*'] then missing[#missing + 1] = v end
end
if #missing > 1 then
  redis.call('SET', KEYS[6], '1', 'PX', ARGV[2])
  return missing
end
redis.call('DEL', KEYS[6])
local epoch = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.pcall('XGROUP', 'CREATE', KEYS[3], 'velo', '0', 'MKSTREAM')
local fence = KEYS[4] .. epoch
redis.call('DEL', fence)
redis.call('XGROUP', 'CREATE', fence, 'velo', '$', 'MKSTREAM')
redis.call('PEXPIRE', fence, ARGV[2])
return token
