-- KEYS lease, input; ARGV token, key, sid[, reason].
-- Fenced: fence.lua runs first (KEYS[1] lease, ARGV[1] token).
if ARGV[4] then return redis.call('XADD', KEYS[2], '*', 'k', ARGV[2], 'c', ARGV[3], 'r', ARGV[4]) end
return redis.call('XADD', KEYS[2], '*', 'k', ARGV[2], 'c', ARGV[3])
