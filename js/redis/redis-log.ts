// The partitioned log on Redis Streams (Redis/Valkey 7.0+). Keys of
// partition N of function `name`, all under one hash tag so that every
// script's keys share one Cluster slot:
//
//   velo:{name:pN}         input stream (events: k, v; close markers: k, c)
//   velo:{name:pN}:lease   "<worker>:<epoch>" while a worker owns the partition
//   velo:{name:pN}:epoch   fencing counter (INCR at each grant)
//   velo:{name:pN}:out     output stream (sid, seq, k, v | e)
//   velo:{name:pN}:hw      hash: session id -> last output seq written
//   velo:{name:pN}:check   hash (checkReplay): "<seq> <sid>" -> "<output id> <sha1>"
//   velo:{name:pN}:commit  the owner's last commit, with local delivery (retries)
//   velo:{name:pN}:fence:E the fence stream of the lease of epoch E: empty, with the group `velo`; it lives
//                          exactly as long as that lease (same expiry, deleted with it), so a plain
//                          XREADGROUP that names it first is refused (NOGROUP) once the lease is gone
//
// One consumer group (`velo`) per input stream and one consumer name
// (`owner`): whoever holds the lease reads as `owner`, so a new owner's
// `XREADGROUP ... 0` returns exactly what the last owner left unacked.
import { createHash } from 'node:crypto';
import type { Commit, CommitResult, Divergence, InputEntry, Lease, PartitionLog, ReadResult } from './transport';
import { FencedError } from './transport';
import { PollWaker, type RedisClientLike, isCluster, readStreams, send, xreadStreams } from './connection';

export type { RedisClientLike } from './connection';

// RESP type bytes as node-redis' `RESP_TYPES` names them: blob strings as
// Buffers (payloads are bytes), maps as flat arrays (RESP3 XREAD replies).
const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };

/** A Lua script sent by SHA1 (EVALSHA), loaded with EVAL on NOSCRIPT (a restarted or new server). */
class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
  async run(client: RedisClientLike, keys: string[], args: ReadonlyArray<string | Buffer>, options?: object): Promise<unknown> {
    try {
      return await send(client, keys[0], ['EVALSHA', this.sha, String(keys.length), ...keys, ...args], options);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
      return send(client, keys[0], ['EVAL', this.source, String(keys.length), ...keys, ...args], options);
    }
  }
}

const FENCE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('VELO_FENCED the lease is gone: another worker owns the partition') end
`;

const HEARTBEAT = new Script(`local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])`);

// KEYS lease, epoch, input, fence prefix (the lease's fence stream is the prefix and its epoch: one more key
// under the partition's hash tag). The input's group is made with the partition's first lease. The lease and
// its fence get the same expiry in one script, so they expire at the same instant.
const ACQUIRE = new Script(`if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.pcall('XGROUP', 'CREATE', KEYS[3], 'velo', '0', 'MKSTREAM')
local fence = KEYS[4] .. epoch
redis.call('DEL', fence)
redis.call('XGROUP', 'CREATE', fence, 'velo', '$', 'MKSTREAM')
redis.call('PEXPIRE', fence, ARGV[2])
return token`);

// KEYS lease, fence.
const RENEW = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`);

// KEYS lease, fence.
const RELEASE = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0`);

// KEYS lease, input; ARGV token, from, count. Reads as the group's one
// consumer; with nothing new, returns the input's last id: every entry up to
// it has been delivered, so a wake-up waits for entries after it. Reads go
// first as a plain XREADGROUP fenced by the lease's fence stream (no entry
// goes through Lua); this script answers the reads that find nothing.
const READ =
  new Script(`${FENCE}local r = redis.call('XREADGROUP', 'GROUP', 'velo', 'owner', 'COUNT', ARGV[3], 'STREAMS', KEYS[2], ARGV[2])
if r and #r[1][2] > 0 then return {r[1][2], ''} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then return {{}, last[1][1]} end
return {{}, '0-0'}`);

// KEYS lease, input; ARGV token, key, sid[, reason].
const MARK =
  new Script(`${FENCE}if ARGV[4] then return redis.call('XADD', KEYS[2], '*', 'k', ARGV[2], 'c', ARGV[3], 'r', ARGV[4]) end
return redis.call('XADD', KEYS[2], '*', 'k', ARGV[2], 'c', ARGV[3])`);

// KEYS lease, input, out, hw, check, commit; ARGV token, serial, check, n,
// n x (sid, seq, key, field, data), acks count, ids, ended count, n x (sid,
// last seq). An output whose seq is not above its session's high-water mark
// was written before (by an earlier owner, or this one before a replay):
// skipped. Returns {ids, divergences}.
// - serial (local delivery; '' without, and then no ids come back): ids are the entries written ('' for
//   one skipped), and the commit key remembers the last commit; a retry of
//   that same commit (its reply was lost) changes nothing and gets the ids
//   it wrote (they are contiguous in the output stream: one script wrote them).
// - check ('1': checkReplay): each output written keeps "<id> <sha1>" in the
//   check hash under "<seq> <sid>" while its session lives; a skipped one is
//   compared with it, and an ended session's last seq with its mark.
//   Divergences, 5 fields each: 'o', output index, stored id, field, data;
//   'n', sid, seq written, seq made, ''.
const COMMIT = new Script(`${FENCE}local serial = ARGV[2]
local check = ARGV[3] == '1'
local n = tonumber(ARGV[4])
local ids = {}
if serial ~= '' then
  local last = redis.call('GET', KEYS[6])
  if last then
    local token, s, first, count = string.match(last, '^(%S+) (%S+) (%S+) (%d+)$')
    if token == ARGV[1] and s == serial then
      local written = {}
      if tonumber(count) > 0 then
        for _, e in ipairs(redis.call('XRANGE', KEYS[3], first, '+', 'COUNT', count)) do
          written[e[2][2] .. ' ' .. e[2][4]] = e[1]
        end
      end
      local i = 5
      for o = 1, n do
        ids[o] = written[ARGV[i] .. ' ' .. ARGV[i + 1]] or ''
        i = i + 5
      end
      return {ids, {}}
    end
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
do
  local sids = {}
  local j = 5
  for _ = 1, n do
    if marks[ARGV[j]] == nil then
      marks[ARGV[j]] = 0
      sids[#sids + 1] = ARGV[j]
    end
    j = j + 5
  end
  for k = 1, #sids, 1000 do
    local last = math.min(k + 999, #sids)
    local got = redis.call('HMGET', KEYS[4], unpack(sids, k, last))
    for m = k, last do marks[sids[m]] = tonumber(got[m - k + 1] or '0') end
  end
end
local raised = {}
local i = 5
for o = 1, n do
  local sid, seq = ARGV[i], ARGV[i + 1]
  local mark = marks[sid]
  if tonumber(seq) > mark then
    local id = redis.call('XADD', KEYS[3], '*', 'sid', sid, 'seq', seq, 'k', ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    if raised[sid] == nil then raised[#raised + 1] = sid end
    raised[sid] = seq
    mark = tonumber(seq)
    if check then redis.call('HSET', KEYS[5], seq .. ' ' .. sid, id .. ' ' .. redis.sha1hex(ARGV[i + 3] .. ARGV[i + 4])) end
    first = first or id
    written = written + 1
    if serial ~= '' then ids[o] = id end
  else
    if serial ~= '' then ids[o] = '' end
    local stored = check and redis.call('HGET', KEYS[5], seq .. ' ' .. sid)
    if stored then
      local at = string.find(stored, ' ', 1, true)
      if string.sub(stored, at + 1) ~= redis.sha1hex(ARGV[i + 3] .. ARGV[i + 4]) then
        local id = string.sub(stored, 1, at - 1)
        local field, data = '', ''
        local entry = redis.call('XRANGE', KEYS[3], id, id)[1]
        if entry then
          local f = entry[2]
          for j = 1, #f - 1, 2 do
            if f[j] == 'v' or f[j] == 'e' then field, data = f[j], f[j + 1] end
          end
        end
        diverged('o', tostring(o), id, field, data)
      end
    end
  end
  marks[sid] = mark
  i = i + 5
end
local marked = {}
for j = 1, #raised do
  marked[#marked + 1] = raised[j]
  marked[#marked + 1] = raised[raised[j]]
  if #marked == 1000 or j == #raised then
    redis.call('HSET', KEYS[4], unpack(marked))
    marked = {}
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
if n > 0 then
  -- Digests of ended sessions go too, also those a checking worker left for this one.
  local checked = check or redis.call('EXISTS', KEYS[5]) == 1
  local sids = {}
  for _ = 1, n do
    local sid = ARGV[i]
    sids[#sids + 1] = sid
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
    i = i + 2
  end
  for j = 1, #sids, 1000 do
    redis.call('HDEL', KEYS[4], unpack(sids, j, math.min(j + 999, #sids)))
  end
end
if serial ~= '' then redis.call('SET', KEYS[6], ARGV[1] .. ' ' .. serial .. ' ' .. (first or '-') .. ' ' .. written) end
return {ids, div}`);

// KEYS lease, input; ARGV token. Trims the input to its oldest pending
// entry (the oldest input a live session still needs), or with nothing
// pending to the group's last delivered entry: nothing undelivered or
// pending is ever removed.
const TRIM = new Script(`${FENCE}local min = redis.call('XPENDING', KEYS[2], 'velo')[2]
if not min then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info['name'] == 'velo' then min = info['last-delivered-id'] end
  end
end
if not min then return 0 end
return redis.call('XTRIM', KEYS[2], 'MINID', min)`);

// KEYS input. The group's lag (Redis 7.0+: entries added minus entries
// read). Redis cannot compute it after an XDEL inside the undelivered
// range; then the undelivered entries are counted, up to 100 000.
const LAG = new Script(`if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == 'velo' then
    if type(info['lag']) == 'number' then return info['lag'] end
    return #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 100000)
  end
end
return redis.call('XLEN', KEYS[1])`);

// KEYS input; ARGV n x (key, data). Returns { ids } or, when Redis refuses an XADD (out of memory, say), { ids
// written before it, its error }: a script's writes are not rolled back, so the caller learns exactly which were.
const APPEND = new Script(`local ids = {}
for i = 1, #ARGV, 2 do
  local id = redis.pcall('XADD', KEYS[1], '*', 'k', ARGV[i], 'v', ARGV[i + 1])
  if type(id) == 'table' and id.err then return { ids, id.err } end
  ids[#ids + 1] = id
end
return { ids }`);

/** Key names of one stream function. */
export class KeySpace {
  constructor(readonly name: string) {}
  input(p: number): string {
    return `velo:{${this.name}:p${p}}`;
  }
  lease(p: number): string {
    return `${this.input(p)}:lease`;
  }
  epoch(p: number): string {
    return `${this.input(p)}:epoch`;
  }
  output(p: number): string {
    return `${this.input(p)}:out`;
  }
  hw(p: number): string {
    return `${this.input(p)}:hw`;
  }
  /** checkReplay: digests of the outputs of live sessions. */
  check(p: number): string {
    return `${this.input(p)}:check`;
  }
  /** Local delivery: the owner's last commit (token, serial, first entry written, count), for retries. */
  commits(p: number): string {
    return `${this.input(p)}:commit`;
  }
  workers(): string {
    return `velo:{${this.name}}:workers`;
  }
  /** The fence stream of the lease of `epoch` (see the layout above); without it, the prefix ACQUIRE completes. */
  fence(p: number, epoch = ''): string {
    return `${this.input(p)}:fence:${epoch}`;
  }
}

function fenced(partition: number, error: unknown): unknown {
  const message = String((error as Error)?.message ?? '');
  return message.startsWith('VELO_FENCED') ? new FencedError(partition, message.slice('VELO_FENCED '.length)) : error;
}

/** Flat field list [f, v, f, v] of a stream entry as a map (Buffers). */
function fields(list: unknown): Map<string, Buffer> {
  const map = new Map<string, Buffer>();
  if (!Array.isArray(list)) return map;
  for (let i = 0; i + 1 < list.length; i += 2) map.set(String(list[i]), list[i + 1] as Buffer);
  return map;
}

/** `[id, [f, v, ...]]` entries (ids and values as Buffers) as input entries. */
function inputEntries(raw: unknown): InputEntry[] {
  const out: InputEntry[] = [];
  for (const [id, list] of raw as [Buffer, unknown][]) {
    // The fields are read in place (no map per entry: this runs for every event).
    let key = '';
    let payload: Buffer | undefined;
    let close: string | undefined;
    let reason: string | undefined;
    // A pending entry trimmed away comes back with nil fields: no key, no payload.
    if (Array.isArray(list)) {
      for (let i = 0; i + 1 < list.length; i += 2) {
        const name = list[i] as Buffer;
        const value = list[i + 1] as Buffer;
        // Field names are one byte: k(ey), v(alue), c(lose marker), r(eason).
        if (name.length !== 1) continue;
        const c = name[0];
        if (c === 0x6b) key = value.toString();
        else if (c === 0x76) payload = value;
        else if (c === 0x63) close = value.toString();
        else if (c === 0x72) reason = value.toString();
      }
    }
    out.push({ id: id.toString(), key, payload, close, reason });
  }
  return out;
}

/** Parses the stored fields of an entry (as Buffers). */
export { fields as entryFields };

/**
 * Appends events to a partition's input in one script call, in order. Resolves with the entry ids of those
 * written: all of them, or those before the one Redis refused (`refused`, its error message).
 */
export async function appendEvents(
  client: RedisClientLike,
  keys: KeySpace,
  partition: number,
  events: ReadonlyArray<readonly [string, Buffer | string]>,
): Promise<{ ids: string[]; refused?: string }> {
  const args: (string | Buffer)[] = [];
  for (const [key, data] of events) args.push(key, data);
  const [ids, refused] = (await APPEND.run(client, [keys.input(partition)], args)) as [string[], string?];
  return { ids: ids.map(String), refused: refused === undefined ? undefined : String(refused) };
}

/** The lag of a partition's input for its consumer group (see LAG): entries not yet read by the partition's owner. */
export async function partitionLag(client: RedisClientLike, keys: KeySpace, partition: number): Promise<number> {
  return Number(await LAG.run(client, [keys.input(partition)], []));
}

function destroyQuietly(client: RedisClientLike): void {
  try {
    client.destroy();
  } catch {
    // node-redis 5 refuses to destroy a client that is not open: there is nothing to tear down then.
  }
}

export class RedisLog implements PartitionLog {
  readonly partitions: number;
  readonly #client: RedisClientLike;
  readonly #keys: KeySpace;
  /** The connection blocking reads wait on (a blocked connection delays every command behind it). */
  #blocking: RedisClientLike | null = null;
  #blockingId: string | null = null;
  #connecting: Promise<RedisClientLike> | null = null;
  /** The duplicated connection, from its creation on. */
  #duplicate: RedisClientLike | null = null;
  #waiting = false;
  /** Ends a Cluster's polled wait early (`interrupt`). */
  readonly #waker = new PollWaker();
  #closed = false;
  /**
   * The connection leases are taken, renewed and released on: never queued behind the reads, commits and
   * markers of the main one (a worker draining a backlog had round trips over a second there, and lost its
   * own leases waiting).
   */
  #leases: RedisClientLike | null = null;
  #leasesConnecting: Promise<RedisClientLike> | null = null;
  /** That connection from its creation on: close() destroys it even while it is still connecting. */
  #leasesCreated: RedisClientLike | null = null;

  readonly #onError: (error: Error) => void;

  /** `onError`: errors of the log's own connection (it reconnects by itself; its commands fail meanwhile). */
  constructor(client: RedisClientLike, keys: KeySpace, partitions: number, onError: (error: Error) => void) {
    this.#onError = onError;
    this.#client = client;
    this.#keys = keys;
    this.partitions = partitions;
  }

  async heartbeat(worker: string, ttl: number): Promise<number> {
    return Number(await HEARTBEAT.run(this.#client, [this.#keys.workers()], [worker, String(ttl)]));
  }

  async leave(worker: string): Promise<void> {
    await send(this.#client, this.#keys.workers(), ['ZREM', this.#keys.workers(), worker]);
  }

  async acquire(partition: number, worker: string, ttl: number): Promise<Lease | null> {
    const k = this.#keys;
    const token = await ACQUIRE.run(
      await this.#leaseClient(),
      [k.lease(partition), k.epoch(partition), k.input(partition), k.fence(partition)],
      [worker, String(ttl)],
    );
    return typeof token === 'string' ? { partition, token } : null;
  }

  async renew(lease: Lease, ttl: number): Promise<boolean> {
    const client = await this.#leaseClient();
    const p = lease.partition;
    return Number(await RENEW.run(client, [this.#keys.lease(p), this.#fence(lease)], [lease.token, String(ttl)])) === 1;
  }

  async release(lease: Lease): Promise<void> {
    await RELEASE.run(await this.#leaseClient(), [this.#keys.lease(lease.partition), this.#fence(lease)], [lease.token]);
  }

  /** The lease's fence stream: its epoch is the token's last part. */
  #fence(lease: Lease): string {
    return this.#keys.fence(lease.partition, lease.token.slice(lease.token.lastIndexOf(':') + 1));
  }

  async read(lease: Lease, from: string, count: number): Promise<ReadResult> {
    const p = lease.partition;
    const fence = this.#fence(lease);
    const input = this.#keys.input(p);
    let plain: unknown;
    try {
      // The fence stream is named first: once the lease is gone, so is it, and the read is refused before it
      // touches the input (NOGROUP). Its own position: new entries (none ever come), or its empty history.
      plain = await send(
        this.#client,
        fence,
        ['XREADGROUP', 'GROUP', 'velo', 'owner', 'COUNT', String(count), 'STREAMS', fence, input, from === '>' ? '>' : '0', from],
        BUFFERS,
      );
    } catch (error) {
      const message = String((error as Error)?.message ?? '');
      if (message.startsWith('NOGROUP') && message.includes(fence)) {
        throw new FencedError(p, 'the lease is gone: another worker owns the partition, or it expired');
      }
      throw error;
    }
    const found = xreadStreams(plain).get(input);
    if (found !== undefined && found.length > 0) return { entries: inputEntries(found), tail: '' };
    let reply: [unknown, Buffer];
    try {
      reply = (await READ.run(
        this.#client,
        [this.#keys.lease(p), this.#keys.input(p)],
        [lease.token, from, String(count)],
        BUFFERS,
      )) as [unknown, Buffer];
    } catch (error) {
      throw fenced(p, error);
    }
    return { entries: inputEntries(reply[0]), tail: reply[1].toString() };
  }

  async markClose(lease: Lease, key: string, sid: string, reason?: string): Promise<string> {
    const p = lease.partition;
    try {
      const args = reason === undefined ? [lease.token, key, sid] : [lease.token, key, sid, reason];
      return String(await MARK.run(this.#client, [this.#keys.lease(p), this.#keys.input(p)], args));
    } catch (error) {
      throw fenced(p, error);
    }
  }

  async commit(lease: Lease, commit: Commit): Promise<CommitResult> {
    const p = lease.partition;
    const k = this.#keys;
    const serial = commit.serial === undefined ? '' : String(commit.serial);
    const args: (string | Buffer)[] = [lease.token, serial, commit.check === true ? '1' : '0', String(commit.outputs.length)];
    for (const o of commit.outputs) {
      args.push(o.sid, String(o.seq), o.key);
      if (o.error !== undefined) args.push('e', o.error);
      else args.push('v', o.payload ?? '');
    }
    args.push(String(commit.acks.length), ...commit.acks, String(commit.ended.length));
    commit.ended.forEach((sid, i) => args.push(sid, String(commit.endedSeqs?.[i] ?? 0)));
    let reply: [Buffer[], Buffer[]];
    try {
      reply = (await COMMIT.run(
        this.#client,
        [k.lease(p), k.input(p), k.output(p), k.hw(p), k.check(p), k.commits(p)],
        args,
        BUFFERS,
      )) as [Buffer[], Buffer[]];
    } catch (error) {
      throw fenced(p, error);
    }
    const ids = serial === '' ? [] : reply[0].map((id) => (id.length === 0 ? null : id.toString()));
    const diverged: Divergence[] = [];
    const d = reply[1];
    for (let j = 0; j + 4 < d.length; j += 5) {
      if (d[j].toString() === 'o') {
        const id = d[j + 2].toString();
        const field = d[j + 3].toString();
        const committed =
          field === 'v' ? { id, payload: d[j + 4] } : field === 'e' ? { id, error: d[j + 4].toString() } : undefined;
        diverged.push({ kind: 'output', index: Number(d[j + 1].toString()) - 1, committed });
      } else {
        diverged.push({
          kind: 'count',
          sid: d[j + 1].toString(),
          committed: Number(d[j + 2].toString()),
          replayed: Number(d[j + 3].toString()),
        });
      }
    }
    return { ids, diverged };
  }

  lag(partition: number): Promise<number> {
    return partitionLag(this.#client, this.#keys, partition);
  }

  async trim(lease: Lease): Promise<number> {
    const p = lease.partition;
    try {
      return Number(await TRIM.run(this.#client, [this.#keys.lease(p), this.#keys.input(p)], [lease.token]));
    } catch (error) {
      throw fenced(p, error);
    }
  }

  async #leaseClient(): Promise<RedisClientLike> {
    if (this.#leases !== null) return this.#leases;
    if (this.#closed) throw Object.assign(new Error('The worker is closed'), { code: 'ERR_VELO_CLOSED' });
    this.#leasesConnecting ??= (async () => {
      const dup = this.#client.duplicate();
      dup.on('error', this.#onError);
      this.#leasesCreated = dup;
      try {
        await dup.connect();
      } catch (error) {
        this.#leasesConnecting = this.#leasesCreated = null;
        destroyQuietly(dup);
        throw error;
      }
      if (this.#closed) {
        destroyQuietly(dup);
        throw Object.assign(new Error('The worker is closed'), { code: 'ERR_VELO_CLOSED' });
      }
      this.#leases = dup;
      return dup;
    })();
    return this.#leasesConnecting;
  }

  async #blockingClient(): Promise<RedisClientLike> {
    if (this.#blocking !== null) return this.#blocking;
    this.#connecting ??= (async () => {
      const dup = this.#client.duplicate();
      // node-redis clients are EventEmitters: an 'error' without a listener would throw.
      dup.on('error', this.#onError);
      // Held from the start: close() destroys it even while it is still connecting (to a server that is down).
      this.#duplicate = dup;
      await dup.connect();
      this.#blockingId = String(await send(dup, undefined, ['CLIENT', 'ID']));
      this.#blocking = dup;
      return dup;
    })();
    return this.#connecting;
  }

  async wait(positions: ReadonlyMap<number, string>, ms: number): Promise<number[]> {
    if (positions.size === 0 || this.#closed) return [];
    const names: string[] = [];
    const ids: string[] = [];
    const byName = new Map<string, number>();
    for (const [p, id] of positions) {
      const name = this.#keys.input(p);
      byName.set(name, p);
      names.push(name);
      ids.push(id);
    }
    // A Cluster polls its partitions on the shared client (see connection.ts); a single server blocks on a
    // connection of its own.
    const client = isCluster(this.#client) ? this.#client : await this.#blockingClient();
    this.#waiting = true;
    try {
      const streams = await readStreams(client, ['XREAD', 'COUNT', '1'], names, ids, BUFFERS, ms, this.#waker);
      return [...streams.keys()].map((name) => byName.get(name) as number);
    } finally {
      this.#waiting = false;
    }
  }

  async interrupt(): Promise<void> {
    if (!this.#waiting) return;
    if (isCluster(this.#client)) this.#waker.wake();
    // CLIENT UNBLOCK ends the blocked XREAD as if it had timed out.
    else if (this.#blockingId !== null) await send(this.#client, undefined, ['CLIENT', 'UNBLOCK', this.#blockingId]);
  }

  close(): Promise<void> {
    this.#closed = true;
    const dup = this.#duplicate;
    const leases = this.#leasesCreated;
    this.#blocking = this.#duplicate = this.#leases = this.#leasesCreated = null;
    // destroy, not close: a pending blocked XREAD would hold close() for its whole BLOCK time, and a server that
    // is down would hold a connect or a close for good.
    if (dup !== null) destroyQuietly(dup);
    if (leases !== null) destroyQuietly(leases);
    return Promise.resolve();
  }
}
