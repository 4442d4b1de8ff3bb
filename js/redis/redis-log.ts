// The partitioned log on Redis Streams (Redis/Valkey 7.0+). Keys of
// partition N of function `name`, all under one hash tag so that every
// script's keys share one Cluster slot:
//
//   velo:{name:pN}         input stream (events: k, v; close markers: k, c)
//   velo:{name:pN}:lease   "<worker>:<epoch>" while a worker owns the partition
//   velo:{name:pN}:epoch   fencing counter (INCR at each grant)
//   velo:{name:pN}:out     output stream (sid, seq, k, v | e)
//   velo:{name:pN}:hw      hash: session id -> last output seq written
//
// One consumer group (`velo`) per input stream and one consumer name
// (`owner`): whoever holds the lease reads as `owner`, so a new owner's
// `XREADGROUP ... 0` returns exactly what the last owner left unacked.
import { createHash } from 'node:crypto';
import type { Commit, InputEntry, Lease, PartitionLog, ReadResult } from './transport';
import { FencedError } from './transport';

/**
 * The node-redis client calls this package makes (v5 and v6 clients fit).
 * Pass your own connected client: TLS, auth and reconnection are its settings.
 */
export interface RedisClientLike {
  sendCommand(args: ReadonlyArray<string | Buffer>, options?: object): Promise<unknown>;
  duplicate(): RedisClientLike;
  connect(): Promise<unknown>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  close?(): Promise<unknown>;
  destroy(): unknown;
}

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
      return await client.sendCommand(['EVALSHA', this.sha, String(keys.length), ...keys, ...args], options);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
      return client.sendCommand(['EVAL', this.source, String(keys.length), ...keys, ...args], options);
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

// KEYS lease, epoch, input. The group is made with the partition's first lease.
const ACQUIRE = new Script(`if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.pcall('XGROUP', 'CREATE', KEYS[3], 'velo', '0', 'MKSTREAM')
return token`);

const RENEW = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`);

const RELEASE = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`);

// KEYS lease, input; ARGV token, from, count. Reads as the group's one
// consumer; with nothing new, returns the input's last id: every entry up to
// it has been delivered, so a wake-up waits for entries after it.
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

// KEYS lease, input, out, hw; ARGV token, n, n x (sid, seq, key, field, data),
// acks count, ids, ended count, sids. An output whose seq is not above its
// session's high-water mark was written before (by an earlier owner, or this
// one before a replay): skipped.
const COMMIT = new Script(`${FENCE}local i = 3
local written = 0
for _ = 1, tonumber(ARGV[2]) do
  local seq = tonumber(ARGV[i + 1])
  if seq > tonumber(redis.call('HGET', KEYS[4], ARGV[i]) or '0') then
    redis.call('XADD', KEYS[3], '*', 'sid', ARGV[i], 'seq', ARGV[i + 1], 'k', ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
    written = written + 1
  end
  i = i + 5
end
local n = tonumber(ARGV[i])
i = i + 1
local stop = i + n
while i < stop do
  local last = math.min(i + 999, stop - 1)
  redis.call('XACK', KEYS[2], 'velo', unpack(ARGV, i, last))
  i = last + 1
end
n = tonumber(ARGV[i])
i = i + 1
stop = i + n
while i < stop do
  local last = math.min(i + 999, stop - 1)
  redis.call('HDEL', KEYS[4], unpack(ARGV, i, last))
  i = last + 1
end
return written`);

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

// KEYS input; ARGV n x (key, data).
const APPEND = new Script(`local ids = {}
for i = 1, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'k', ARGV[i], 'v', ARGV[i + 1])
end
return ids`);

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
  workers(): string {
    return `velo:{${this.name}}:workers`;
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
    const f = fields(list);
    const close = f.get('c');
    // A pending entry trimmed away comes back with nil fields: no key, no payload.
    out.push({
      id: id.toString(),
      key: f.get('k')?.toString() ?? '',
      payload: f.get('v'),
      close: close?.toString(),
      reason: f.get('r')?.toString(),
    });
  }
  return out;
}

/**
 * Stream -> entries of an XREAD / XREADGROUP reply, in RESP2 (`[[stream,
 * entries], ...]`) or RESP3 with maps as flat arrays (`[stream, entries, ...]`).
 */
export function xreadStreams(reply: unknown): Map<string, [Buffer, unknown][]> {
  const out = new Map<string, [Buffer, unknown][]>();
  if (!Array.isArray(reply)) return out;
  if (reply.length > 0 && Array.isArray(reply[0])) {
    for (const [name, entries] of reply as [Buffer, [Buffer, unknown][]][]) out.set(name.toString(), entries);
  } else {
    for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), reply[i + 1] as [Buffer, unknown][]);
  }
  return out;
}

/** Parses the stored fields of an entry (as Buffers). */
export { fields as entryFields };

/** Appends events to a partition's input in one script call, in order. Resolves with their entry ids. */
export async function appendEvents(
  client: RedisClientLike,
  keys: KeySpace,
  partition: number,
  events: ReadonlyArray<readonly [string, Buffer | string]>,
): Promise<string[]> {
  const args: (string | Buffer)[] = [];
  for (const [key, data] of events) args.push(key, data);
  return (await APPEND.run(client, [keys.input(partition)], args)) as string[];
}

/** The lag of a partition's input for its consumer group (see LAG): entries not yet read by the partition's owner. */
export async function partitionLag(client: RedisClientLike, keys: KeySpace, partition: number): Promise<number> {
  return Number(await LAG.run(client, [keys.input(partition)], []));
}

export class RedisLog implements PartitionLog {
  readonly partitions: number;
  readonly #client: RedisClientLike;
  readonly #keys: KeySpace;
  /** The connection blocking reads wait on (a blocked connection delays every command behind it). */
  #blocking: RedisClientLike | null = null;
  #blockingId: string | null = null;
  #connecting: Promise<RedisClientLike> | null = null;
  #waiting = false;
  #closed = false;

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
    await this.#client.sendCommand(['ZREM', this.#keys.workers(), worker]);
  }

  async acquire(partition: number, worker: string, ttl: number): Promise<Lease | null> {
    const k = this.#keys;
    const token = await ACQUIRE.run(
      this.#client,
      [k.lease(partition), k.epoch(partition), k.input(partition)],
      [worker, String(ttl)],
    );
    return typeof token === 'string' ? { partition, token } : null;
  }

  async renew(lease: Lease, ttl: number): Promise<boolean> {
    return Number(await RENEW.run(this.#client, [this.#keys.lease(lease.partition)], [lease.token, String(ttl)])) === 1;
  }

  async release(lease: Lease): Promise<void> {
    await RELEASE.run(this.#client, [this.#keys.lease(lease.partition)], [lease.token]);
  }

  async read(lease: Lease, from: string, count: number): Promise<ReadResult> {
    const p = lease.partition;
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

  async markClose(lease: Lease, key: string, sid: string, reason?: string): Promise<void> {
    const p = lease.partition;
    try {
      const args = reason === undefined ? [lease.token, key, sid] : [lease.token, key, sid, reason];
      await MARK.run(this.#client, [this.#keys.lease(p), this.#keys.input(p)], args);
    } catch (error) {
      throw fenced(p, error);
    }
  }

  async commit(lease: Lease, commit: Commit): Promise<void> {
    const p = lease.partition;
    const k = this.#keys;
    const args: (string | Buffer)[] = [lease.token, String(commit.outputs.length)];
    for (const o of commit.outputs) {
      args.push(o.sid, String(o.seq), o.key);
      if (o.error !== undefined) args.push('e', o.error);
      else args.push('v', o.payload ?? '');
    }
    args.push(String(commit.acks.length), ...commit.acks, String(commit.ended.length), ...commit.ended);
    try {
      await COMMIT.run(this.#client, [k.lease(p), k.input(p), k.output(p), k.hw(p)], args);
    } catch (error) {
      throw fenced(p, error);
    }
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

  async #blockingClient(): Promise<RedisClientLike> {
    if (this.#blocking !== null) return this.#blocking;
    this.#connecting ??= (async () => {
      const dup = this.#client.duplicate();
      // node-redis clients are EventEmitters: an 'error' without a listener would throw.
      dup.on('error', this.#onError);
      await dup.connect();
      this.#blockingId = String(await dup.sendCommand(['CLIENT', 'ID']));
      this.#blocking = dup;
      return dup;
    })();
    return this.#connecting;
  }

  async wait(positions: ReadonlyMap<number, string>, ms: number): Promise<number[]> {
    if (positions.size === 0 || this.#closed) return [];
    const blocking = await this.#blockingClient();
    const names: string[] = [];
    const ids: string[] = [];
    const byName = new Map<string, number>();
    for (const [p, id] of positions) {
      const name = this.#keys.input(p);
      byName.set(name, p);
      names.push(name);
      ids.push(id);
    }
    this.#waiting = true;
    try {
      const reply = await blocking.sendCommand(
        ['XREAD', 'COUNT', '1', 'BLOCK', String(ms), 'STREAMS', ...names, ...ids],
        BUFFERS,
      );
      return [...xreadStreams(reply).keys()].map((name) => byName.get(name) as number);
    } finally {
      this.#waiting = false;
    }
  }

  async interrupt(): Promise<void> {
    // CLIENT UNBLOCK ends the blocked XREAD as if it had timed out.
    if (this.#waiting && this.#blockingId !== null) await this.#client.sendCommand(['CLIENT', 'UNBLOCK', this.#blockingId]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const blocking = this.#blocking ?? (this.#connecting ? await this.#connecting.catch(() => null) : null);
    this.#blocking = null;
    // destroy, not close: a pending blocked XREAD would hold close() for its whole BLOCK time.
    blocking?.destroy();
  }
}
