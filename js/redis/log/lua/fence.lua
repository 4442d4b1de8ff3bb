-- Prepended to the scripts an owner runs: refused unless KEYS[1] (the lease) still holds ARGV[1] (its token).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('VELO_FENCED the lease is gone: another worker owns the partition') end
