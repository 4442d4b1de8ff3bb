-- KEYS lease, input, out, hw, check, commit, ckpt, timers, ends, ended, opened, versions, journal, then one state key
-- per kept state; ARGV token, serial, flags, n, m, r, m x (sid, key, place: "<seq> <inputs> <position>[ a][ h<digest>]" (stored.ts placeValue), the place of
-- the session's last output in the call, or ''), the n outputs in r runs, r x (session: its index in the m, 1-based,
-- count: a run is outputs of one session, values (field v), or failures (field e) with the count negative), then
-- n x (seq, data), in the runs' order, checkpoints count, n x (sid, snapshot), acks count, ids, ended count, n x (sid, last seq, end: "<reason> <last
-- input>" with check, else ''), kept count, retention (ms), kept count x (value), openings count, n x (sid, version,
-- record, mode), and, when some outputs are traced (or a journal section follows), their count (0: none) and
-- n x (output index, traceparent), written as field t of those outputs; and, when the commit journals, the journal
-- section: entries count, n x (field "<sid> <at>", value), then the count of fields to forget and those fields.
-- Journal entries (ctx.run, ctx.stream: one per session that journaled, holding its records of this commit in
-- order, so a field per session rather than per call) are written to the journal hash after the checkpoints and
-- before the acks, then the fields to forget are removed (a field written and forgotten in one call is not kept); an
-- ended session's entries go only as fields to forget (the caller names them).
-- A place is kept beside its session's mark (hw field "<sid> p") when its output raised the mark.
-- An opening (what a live session opened with: its version and caps, JSON) is kept once per sid (HSETNX) in the
-- opened hash, and counted per version in the versions hash; mode 'r' (a migrated session) replaces the one kept,
-- its count moving to the new version. An ended session's opening goes, and its count with it. A kept state (keyState: an ended session's last checkpoint, kept for its
-- key) is written to its key (KEYS[13 + i]) with an expiry of `retention` ms, after the ends: in the same call as
-- the acks of the session's last entries. A checkpoint replaces its session's snapshot in the same call as the outputs made
-- before it and the acks of the entries it covers; an ended session's snapshot goes with its high-water mark. An output whose seq is not above its session's high-water mark
-- was written before (by an earlier owner, or this one before a replay):
-- skipped. Returns {ids, divergences}.
-- - flags: 'i' (with a serial): return the ids written; 'c': check (below); 'o': each session's outputs come in
--   rising seq order, so once one is above the session's mark the later ones are too (not compared with it);
--   without it, each output is compared with the mark as the ones before it left it.
-- - serial (the worker always sends one; '' without): the commit key remembers the last commit; a retry of
--   that same commit (its reply was lost) changes nothing. With 'i', ids are the entries written ('' for one
--   skipped), and a retry gets the ids it wrote (they are contiguous in the output stream: one script wrote
--   them); without, none come back (the worker asks for them only for local delivery).
-- - check ('c': checkReplay): each output written keeps "<id> <sha1>" in the
--   check hash under "<seq> <sid>" while its session lives; a skipped one is
--   compared with it, and an ended session's last seq with its mark. Each
--   ended session's end is kept in the ends hash (sid -> end), its sid in the
--   ended sorted set (by the ms of its first entry, for trim.lua: kept while
--   that entry is in the input); a later end of the sid is compared with it,
--   and the first stays.
--   Divergences, 5 fields each: 'o', output index, stored id, field, data;
--   'n', sid, seq written, seq made, ''; 'b', ended index, stored end, '', ''.
-- Fenced: fence.lua runs first (KEYS[1] lease, ARGV[1] token).
local serial = ARGV[2]
local check = string.find(ARGV[3], 'c', 1, true) ~= nil
local withIds = serial ~= '' and string.find(ARGV[3], 'i', 1, true) ~= nil
local ordered = string.find(ARGV[3], 'o', 1, true) ~= nil
local n = tonumber(ARGV[4])
local m = tonumber(ARGV[5])
local r = tonumber(ARGV[6])
-- The call's sessions by their index's text (as the runs name them): {sid, key, state}; state nil before the
-- session's first output in the call, true once every later output of it is written (flag 'o').
local sessions = {}
for s = 1, m do sessions[tostring(s)] = {ARGV[4 + 3 * s], ARGV[5 + 3 * s]} end
-- The runs (2 arguments each), then the outputs' seqs and data (two each).
local base = 7 + 3 * m
local dataBase = base + 2 * r
-- Run `run` (0-based): its session, its count, and the field of its outputs.
local function runOf(run)
  local at = base + 2 * run
  local count = tonumber(ARGV[at + 1])
  if count < 0 then return sessions[ARGV[at]], -count, 'e' end
  return sessions[ARGV[at]], count, 'v'
end
local ids = {}
if serial ~= '' then
  local last = redis.call('GET', KEYS[6])
  if last then
    local token, s, first, count = string.match(last, '^(%S+) (%S+) (%S+) (%d+)$')
    if token == ARGV[1] and s == serial then
      if not withIds then return {ids, {}} end
      local written = {}
      if tonumber(count) > 0 then
        for _, e in ipairs(redis.call('XRANGE', KEYS[3], first, '+', 'COUNT', count)) do
          written[e[2][2] .. ' ' .. e[2][4]] = e[1]
        end
      end
      local o = 0
      local i = dataBase
      for run = 0, r - 1 do
        local session, count = runOf(run)
        for _ = 1, count do
          o = o + 1
          ids[o] = written[session[1] .. ' ' .. ARGV[i]] or ''
          i = i + 2
        end
      end
      return {ids, {}}
    end
  end
end
-- The traced outputs (absent when none and no journal section follows): output index -> traceparent; and where
-- the journal section starts (the last section, absent when the call journals nothing).
local traced = nil
local journalAt = nil
do
  local j = dataBase + 2 * n
  j = j + 1 + 2 * tonumber(ARGV[j])
  j = j + 1 + tonumber(ARGV[j])
  j = j + 1 + 3 * tonumber(ARGV[j])
  j = j + 2 + tonumber(ARGV[j])
  j = j + 1 + 4 * tonumber(ARGV[j])
  if ARGV[j] then
    local count = tonumber(ARGV[j])
    if count > 0 then
      traced = {}
      for t = 1, count do traced[tonumber(ARGV[j + 2 * t - 1])] = ARGV[j + 2 * t] end
    end
    j = j + 1 + 2 * count
    if ARGV[j] then journalAt = j end
  end
end
local div = {}
local function diverged(a, b, c, d, e)
  div[#div + 1] = a
  div[#div + 1] = b
  div[#div + 1] = c
  div[#div + 1] = d
  div[#div + 1] = e
end
local first = nil
local written = 0
-- Each session's high-water mark, read for all of the call's sessions at once (HMGET); the raised ones are
-- written back after the loop.
local marks = {}
for k = 1, m, 1000 do
  local last = math.min(k + 999, m)
  local sids = {}
  for s = k, last do sids[#sids + 1] = ARGV[4 + 3 * s] end
  local got = redis.call('HMGET', KEYS[4], unpack(sids))
  for s = k, last do marks[ARGV[4 + 3 * s]] = tonumber(got[s - k + 1] or '0') end
end
local raised = {}
local o = 0
local i = dataBase
for run = 0, r - 1 do
  local session, count, field = runOf(run)
  local sid = session[1]
  for _ = 1, count do
    o = o + 1
    local seq, data = ARGV[i], ARGV[i + 1]
    local write = session[3]
    if not write then
      local number = tonumber(seq)
      write = number > marks[sid]
      if write then marks[sid] = number end
      if session[3] == nil then session[3] = ordered and write end
    end
    if write then
      local tp = traced and traced[o]
      local id
      if tp then
        id = redis.call('XADD', KEYS[3], '*', 'sid', sid, 'seq', seq, 'k', session[2], field, data, 't', tp)
      else
        id = redis.call('XADD', KEYS[3], '*', 'sid', sid, 'seq', seq, 'k', session[2], field, data)
      end
      if raised[sid] == nil then raised[#raised + 1] = sid end
      raised[sid] = seq
      if check then redis.call('HSET', KEYS[5], seq .. ' ' .. sid, id .. ' ' .. redis.sha1hex(field .. data)) end
      first = first or id
      written = written + 1
      if withIds then ids[o] = id end
    else
      if withIds then ids[o] = '' end
      local stored = check and redis.call('HGET', KEYS[5], seq .. ' ' .. sid)
      if stored then
        local at = string.find(stored, ' ', 1, true)
        if string.sub(stored, at + 1) ~= redis.sha1hex(field .. data) then
          local id = string.sub(stored, 1, at - 1)
          local storedField, storedData = '', ''
          local entry = redis.call('XRANGE', KEYS[3], id, id)[1]
          if entry then
            local f = entry[2]
            for j = 1, #f - 1, 2 do
              if f[j] == 'v' or f[j] == 'e' then storedField, storedData = f[j], f[j + 1] end
            end
          end
          diverged('o', tostring(o), id, storedField, storedData)
        end
      end
    end
    i = i + 2
  end
end
-- The places of the call's sessions (sid -> place), for the marks they go with.
local places = {}
for s = 1, m do
  local place = ARGV[6 + 3 * s]
  if place ~= '' then places[ARGV[4 + 3 * s]] = place end
end
-- Each mark raised, with the place of the output that raised it (one written by an earlier output stays otherwise).
-- A session ended below loses both with its mark.
local marked = {}
for j = 1, #raised do
  local sid = raised[j]
  marked[#marked + 1] = sid
  marked[#marked + 1] = raised[sid]
  local place = places[sid]
  if place ~= nil and raised[sid] == string.match(place, '^(%d+) ') then
    marked[#marked + 1] = sid .. ' p'
    marked[#marked + 1] = place
  end
  if #marked >= 1000 or j == #raised then
    redis.call('HSET', KEYS[4], unpack(marked))
    marked = {}
  end
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1])
  i = i + 2
end
-- The journal: entries written, then those forgotten (a checkpoint's, an ended session's). In batches: unpack's
-- arguments are bounded by the Lua stack.
if journalAt then
  local j = journalAt + 1
  local stop = j + 2 * tonumber(ARGV[journalAt])
  while j < stop do
    local last = math.min(j + 999, stop - 1)
    redis.call('HSET', KEYS[13], unpack(ARGV, j, last))
    j = last + 1
  end
  stop = j + 1 + tonumber(ARGV[j])
  j = j + 1
  while j < stop do
    local last = math.min(j + 999, stop - 1)
    redis.call('HDEL', KEYS[13], unpack(ARGV, j, last))
    j = last + 1
  end
end
n = tonumber(ARGV[i])
i = i + 1
local stop = i + n
while i < stop do
  local last = math.min(i + 999, stop - 1)
  redis.call('XACK', KEYS[2], 'velo', unpack(ARGV, i, last))
  i = last + 1
end
n = tonumber(ARGV[i])
i = i + 1
-- Sessions ended by this call.
if n > 0 then
  -- Digests of ended sessions go too, also those a checking worker left for this one.
  local checked = check or redis.call('EXISTS', KEYS[5]) == 1
  local sids = {}
  for e = 1, n do
    local sid = ARGV[i]
    sids[#sids + 1] = sid
    local ending = ARGV[i + 2]
    if check and ending ~= '' then
      local stored = redis.call('HGET', KEYS[9], sid)
      if not stored then
        redis.call('HSET', KEYS[9], sid, ending)
        redis.call('ZADD', KEYS[10], tonumber(string.match(sid, '@(%d+)%-%d+$') or '0'), sid)
      elseif stored ~= ending then
        diverged('b', tostring(e), stored, '', '')
      end
    end
    if checked then
      local hw = tonumber(redis.call('HGET', KEYS[4], sid) or '0')
      if check and hw > tonumber(ARGV[i + 1]) then diverged('n', sid, tostring(hw), ARGV[i + 1], '') end
      local fields = {}
      for seq = 1, hw do
        fields[#fields + 1] = seq .. ' ' .. sid
        if #fields == 1000 or seq == hw then
          redis.call('HDEL', KEYS[5], unpack(fields))
          fields = {}
        end
      end
    end
    i = i + 3
  end
  -- Their openings, and each one's count under its version.
  for _, sid in ipairs(sids) do
    local opening = redis.call('HGET', KEYS[11], sid)
    if opening then
      redis.call('HDEL', KEYS[11], sid)
      local version = cjson.decode(opening).v or ''
      if redis.call('HINCRBY', KEYS[12], version, -1) <= 0 then redis.call('HDEL', KEYS[12], version) end
    end
  end
  for j = 1, #sids, 1000 do
    local marks = {}
    for m = j, math.min(j + 999, #sids) do
      marks[#marks + 1] = sids[m]
      marks[#marks + 1] = sids[m] .. ' p'
    end
    redis.call('HDEL', KEYS[4], unpack(marks))
    redis.call('HDEL', KEYS[7], unpack(sids, j, math.min(j + 999, #sids)))
    redis.call('HDEL', KEYS[8], unpack(sids, j, math.min(j + 999, #sids)))
  end
end
n = tonumber(ARGV[i])
local retention = ARGV[i + 1]
i = i + 2
for k = 1, n do
  redis.call('SET', KEYS[13 + k], ARGV[i], 'PX', retention)
  i = i + 1
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  if ARGV[i + 3] == 'r' then
    local old = redis.call('HGET', KEYS[11], ARGV[i])
    if old ~= ARGV[i + 2] then
      if old then
        local was = cjson.decode(old).v or ''
        if redis.call('HINCRBY', KEYS[12], was, -1) <= 0 then redis.call('HDEL', KEYS[12], was) end
      end
      redis.call('HSET', KEYS[11], ARGV[i], ARGV[i + 2])
      redis.call('HINCRBY', KEYS[12], ARGV[i + 1], 1)
    end
  elseif redis.call('HSETNX', KEYS[11], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[12], ARGV[i + 1], 1)
  end
  i = i + 4
end
if serial ~= '' then redis.call('SET', KEYS[6], ARGV[1] .. ' ' .. serial .. ' ' .. (first or '-') .. ' ' .. written) end
return {ids, div}
