-- KEYS input; ARGV n x (key, data). Returns { ids } or, when Redis refuses an XADD (out of memory, say), { ids
-- written before it, its error }: a script's writes are not rolled back, so the caller learns exactly which were.
local ids = {}
for i = 1, #ARGV, 2 do
  local id = redis.pcall('XADD', KEYS[1], '*', 'k', ARGV[i], 'v', ARGV[i + 1])
  if type(id) == 'table' and id.err then return { ids, id.err } end
  ids[#ids + 1] = id
end
return { ids }
