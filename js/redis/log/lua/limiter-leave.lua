-- KEYS prefix. ARGV process id: a closed limiter stops counting in the fleet's processes.
redis.call('ZREM', P .. ':procs', ARGV[1])
return 1
