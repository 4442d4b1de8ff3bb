-- KEYS input; ARGV traceparent, tracestate ('': none), n x (key, data). As append.lua, each entry with the
-- producer's trace context too: fields t (traceparent) and s (tracestate, when not empty).
local ids = {}
local tp, ts = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local id
  if ts == '' then
    id = redis.pcall('XADD', KEYS[1], '*', 'k', ARGV[i], 'v', ARGV[i + 1], 't', tp)
  else
    id = redis.pcall('XADD', KEYS[1], '*', 'k', ARGV[i], 'v', ARGV[i + 1], 't', tp, 's', ts)
  end
  if type(id) == 'table' and id.err then return { ids, id.err } end
  ids[#ids + 1] = id
end
return { ids }
