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
//   velo:{name:pN}:ckpt    hash: session id -> its last checkpoint (a JSON header line, then the state's bytes)
//   velo:{name:pN}:journal hash: "<sid> <at>" -> a journal entry (ctx.run, ctx.stream): a session's records of one
//                          commit, each "<kind><at> <bytes> <yielded> <name>\n" then its payload (stored.ts)
//   velo:{name:pN}:timers  hash: session id -> the ids of its timers whose wake-ups were written
//   velo:{name:pN}:ends    hash (checkReplay): session id -> where it ended, "<reason> <last input>"
//   velo:{name:pN}:ended   sorted set (checkReplay): the sids in :ends, by their first entry's ms (trimmed with the input)
//   velo:{name:pN}:state:K  string with an expiry (keyState): key K's state, kept after its last session ended
//   velo:{name:pN}:fence:E the fence stream of the lease of epoch E: empty, with the group `velo`; it lives
//                          exactly as long as that lease (same expiry, deleted with it), so a plain
//                          XREADGROUP that names it first is refused (NOGROUP) once the lease is gone
//
// One consumer group (`velo`) per input stream and one consumer name
// (`owner`): whoever holds the lease reads as `owner`, so a new owner's
// `XREADGROUP ... 0` returns exactly what the last owner left unacked.
import { NO_VERSION } from '../../durable/rules/versions';
import type {
  Commit,
  CommitResult,
  Divergence,
  Heartbeat,
  Held,
  InputEntry,
  Lease,
  OutputMark,
  OutputRecord,
  PartitionLog,
  ReadResult,
  Refused,
  SessionOpening,
  Snapshot,
  JournalEntry,
  StoredKeyState,
} from '../../durable/common/transport';
import type { WorkerAdvert } from '../../durable/rules/versions';
import { FencedError, workerClosedError } from '../../errors';
import { PollWaker, type RedisClientLike, isCluster, readStreams, send, xreadStreams } from './connection';
import { Script } from './script';
import {
  advertValue,
  endValue,
  inputEntries,
  journalField,
  journalValue,
  keptValue,
  markedSnapshot,
  openingValue,
  parseAdvert,
  parseEnd,
  parseJournal,
  parseKept,
  parseMark,
  parseOpening,
  parseSnapshot,
  placeValue,
  snapshotValue,
} from '../../durable/common/stored';

export type { RedisClientLike } from './connection';

// RESP type bytes as node-redis' `RESP_TYPES` names them: blob strings as
// Buffers (payloads are bytes), maps as flat arrays (RESP3 XREAD replies).
const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
/** Blob strings as strings: input entries of a worker whose codec `readsText`. */
const TEXT = { typeMapping: { 37: Array } };

// The scripts (lua/: each file says its KEYS, ARGV and reply). `true`: the owner's, run after the lease check.
const HEARTBEAT = new Script('heartbeat.lua');
const ACQUIRE = new Script('acquire.lua');
const RENEW = new Script('renew.lua');
const RELEASE = new Script('release.lua');
const READ = new Script('read.lua', true);
const MARK = new Script('mark.lua', true);
const COMMIT = new Script('commit.lua', true);
const TRIM = new Script('trim.lua', true);
const TRIM_OUTPUTS = new Script('trim-outputs.lua', true);
const LAG = new Script('lag.lua');
const PINNED = new Script('pinned.lua');
const WAKE = new Script('wake.lua', true);
const APPEND = new Script('append.lua');
const APPEND_TRACED = new Script('append-traced.lua');

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
  /** A partition's journal (`ctx.run`, `ctx.stream`): a hash, `<sid> <at>` -> entry (a session's records of a commit). */
  journal(p: number): string {
    return `${this.input(p)}:journal`;
  }
  /** Checkpoints: the last snapshot of each live session that made one. */
  ckpt(p: number): string {
    return `${this.input(p)}:ckpt`;
  }
  /** Timers: per live session, the ids of its timers whose wake-ups are in the input. */
  timers(p: number): string {
    return `${this.input(p)}:timers`;
  }
  /** checkReplay: where recently ended sessions ended, while their first entries are in the input. */
  ends(p: number): string {
    return `${this.input(p)}:ends`;
  }
  /** checkReplay: the sids of `ends`, by the ms of their first entry (what a trim finds the old ones by). */
  ended(p: number): string {
    return `${this.input(p)}:ended`;
  }
  /** keyState: the state key `key` kept after its last session (a key of its own: Redis expires it). */
  state(p: number, key: string): string {
    return `${this.input(p)}:state:${key}`;
  }
  /** Versions: what each live session opened with (its version and caps), once it wrote anything. */
  opened(p: number): string {
    return `${this.input(p)}:opened`;
  }
  /** Versions: the partition's live sessions of `opened`, counted per version. */
  versions(p: number): string {
    return `${this.input(p)}:versions`;
  }
  workers(): string {
    return `velo:{${this.name}}:workers`;
  }
  /** Versions: set while the partition is refused to a worker for its sessions' versions (a rescue may take it). */
  refused(p: number): string {
    return `${this.input(p)}:refused`;
  }
  /** Versions: what each live worker runs. */
  adverts(): string {
    return `velo:{${this.name}}:adverts`;
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

/**
 * Appends events to a partition's input in one script call, in order. Resolves with the entry ids of those
 * written: all of them, or those before the one Redis refused (`refused`, its error message). `trace`: the
 * producer's `[traceparent, tracestate]`, written into each entry (fields `t`, `s`).
 */
export async function appendEvents(
  client: RedisClientLike,
  keys: KeySpace,
  partition: number,
  events: ReadonlyArray<readonly [string, Buffer | string]>,
  trace?: readonly [string, string],
): Promise<{ ids: string[]; refused?: string }> {
  const args: (string | Buffer)[] = trace === undefined ? [] : [trace[0], trace[1]];
  for (const [key, data] of events) args.push(key, data);
  const script = trace === undefined ? APPEND : APPEND_TRACED;
  const [ids, refused] = (await script.run(client, [keys.input(partition)], args)) as [string[], string?];
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

/** A session of a commit's outputs: its index in the call, its key, its highest seq and its last output. */
interface CommitSession {
  readonly index: string;
  readonly key: string;
  last: number;
  output: OutputRecord;
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
  /** How input entries are read: their fields as strings (`text`) or as Buffers. */
  readonly #inputs: typeof BUFFERS | typeof TEXT;
  /**
   * The duplicates' 'error' listener: what close() itself causes is not reported (destroying a connection rejects
   * what is in flight on it, such as the PING of node-redis' `pingInterval`, with an error the client emits).
   */
  readonly #reportOpen = (error: Error): void => {
    if (!this.#closed) this.#onError(error);
  };

  /**
   * `onError`: errors of the log's own connection (it reconnects by itself; its commands fail meanwhile). `text`:
   * input entries' payloads are read as strings (for a codec that `readsText`), else as Buffers.
   */
  constructor(client: RedisClientLike, keys: KeySpace, partitions: number, onError: (error: Error) => void, text = false) {
    this.#onError = onError;
    this.#inputs = text ? TEXT : BUFFERS;
    this.#client = client;
    this.#keys = keys;
    this.partitions = partitions;
  }

  async heartbeat(worker: string, ttl: number, extend = true, advert: WorkerAdvert = NO_VERSION): Promise<Heartbeat> {
    // On the lease connection, with the renewals: never queued behind this worker's reads and commits.
    const args = [worker, String(ttl), extend ? '' : 'nx', advertValue(advert)];
    const k = this.#keys;
    const reply = (await HEARTBEAT.run(await this.#leaseClient(), [k.workers(), k.adverts()], args)) as unknown[];
    const live = Number(reply[0]);
    const adverts = new Map<string, WorkerAdvert>();
    const flat = reply[3] as unknown[];
    for (let j = 0; j + 1 < flat.length; j += 2) adverts.set(String(flat[j]), parseAdvert(String(flat[j + 1])));
    const next = String(reply[1]);
    return next === '' ? { live, adverts } : { live, next: { worker: next, left: Number(reply[2]) }, adverts };
  }

  async leave(worker: string): Promise<void> {
    await send(this.#client, this.#keys.workers(), ['ZREM', this.#keys.workers(), worker]);
    await send(this.#client, this.#keys.adverts(), ['HDEL', this.#keys.adverts(), worker]);
  }

  async acquire(
    partition: number,
    worker: string,
    ttl: number,
    runs: readonly string[] = [],
    rescue = false,
  ): Promise<Lease | Held | Refused> {
    const k = this.#keys;
    const reply = await ACQUIRE.run(
      await this.#leaseClient(),
      [
        k.lease(partition),
        k.epoch(partition),
        k.input(partition),
        k.fence(partition),
        k.versions(partition),
        k.refused(partition),
      ],
      [worker, String(ttl), rescue ? 'rescue' : '', ...runs],
    );
    if (typeof reply === 'string') return { partition, token: reply };
    if (String((reply as unknown[])[0]) === 'versions') return { refused: (reply as unknown[]).slice(1).map(String) };
    const [left, token] = reply as [unknown, unknown];
    const holder = String(token);
    return { holder: holder.slice(0, Math.max(0, holder.lastIndexOf(':'))), left: Number(left) };
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
        this.#inputs,
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
    let reply: [unknown, Buffer | string];
    try {
      reply = (await READ.run(
        this.#client,
        [this.#keys.lease(p), this.#keys.input(p)],
        [lease.token, from, String(count)],
        this.#inputs,
      )) as [unknown, Buffer | string];
    } catch (error) {
      throw fenced(p, error);
    }
    return { entries: inputEntries(reply[0]), tail: reply[1].toString() };
  }

  async entries(lease: Lease, ids: readonly string[]): Promise<InputEntry[]> {
    const input = this.#keys.input(lease.partition);
    // One XRANGE per id, sent together (node-redis pipelines the commands of one turn).
    const replies = await Promise.all(ids.map((id) => send(this.#client, input, ['XRANGE', input, id, id], this.#inputs)));
    return replies.map((reply, i) => inputEntries(reply)[0] ?? { id: ids[i], key: '' });
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
    // The call's sessions, each named once (sid, key, the place of its last output) and by its index in the
    // outputs' runs; `ordered` while each session's outputs come in rising seq order (flag 'o', see commit.lua).
    // The outputs go as runs (a session's outputs one after another, values or failures: its index and their count,
    // negative for failures) and then their seqs and data, two arguments each: a session's outputs come together
    // in its outbox, and an argument costs its encoding here and its parsing in Redis.
    const outputs = commit.outputs;
    const sessions = new Map<string, CommitSession>();
    const runs: string[] = [];
    const data: (string | Buffer)[] = new Array<string | Buffer>(2 * outputs.length);
    let ordered = true;
    let run: CommitSession | undefined;
    let runError = false;
    let runCount = 0;
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i];
      let session = sessions.get(o.sid);
      if (session === undefined)
        sessions.set(o.sid, (session = { index: String(sessions.size + 1), key: o.key, last: o.seq, output: o }));
      else {
        if (o.seq > session.last) session.last = o.seq;
        else ordered = false;
        session.output = o;
      }
      const error = o.error !== undefined;
      data[2 * i] = String(o.seq);
      data[2 * i + 1] = error ? o.error : (o.payload ?? '');
      if (session === run && error === runError) runCount++;
      else {
        if (run !== undefined) runs.push(run.index, String(runError ? -runCount : runCount));
        run = session;
        runError = error;
        runCount = 1;
      }
    }
    if (run !== undefined) runs.push(run.index, String(runError ? -runCount : runCount));
    const flags = `${commit.check === true ? 'c' : ''}${serial !== '' && commit.ids !== false ? 'i' : ''}${ordered ? 'o' : ''}`;
    const args: (string | Buffer)[] = [
      lease.token,
      serial,
      flags,
      String(outputs.length),
      String(sessions.size),
      String(runs.length / 2),
    ];
    // The place of each session's last output in the call (as `lastPlaces` finds it: read once per session).
    for (const [sid, session] of sessions) {
      const at = session.output.at;
      args.push(sid, session.key, at === undefined ? '' : placeValue(session.output.seq, at, session.output.digest));
    }
    for (const arg of runs) args.push(arg);
    for (const arg of data) args.push(arg);
    const checkpoints = commit.checkpoints ?? [];
    args.push(String(checkpoints.length));
    for (const c of checkpoints) args.push(c.sid, snapshotValue(c));
    // (A loop, not a spread: a long session's end acks more entries than a call takes arguments.)
    args.push(String(commit.acks.length));
    for (const id of commit.acks) args.push(id);
    args.push(String(commit.ended.length));
    commit.ended.forEach((sid, i) => {
      const end = commit.endedAt?.[i];
      args.push(sid, String(commit.endedSeqs?.[i] ?? 0), end === undefined ? '' : endValue(end));
    });
    const kept = commit.kept ?? [];
    args.push(String(kept.length), String(commit.retention ?? 1));
    for (const k of kept) args.push(keptValue(k));
    const opened = commit.opened ?? [];
    args.push(String(opened.length));
    for (const o of opened) args.push(o.sid, o.version, openingValue(o), o.replaces === undefined ? '' : 'r');
    // Traced sessions' outputs: their session span's traceparent (field t), as (output index, traceparent).
    const traced: string[] = [];
    for (let i = 0; i < commit.outputs.length; i++) {
      const traceparent = commit.outputs[i].traceparent;
      if (traceparent !== undefined) traced.push(String(i + 1), traceparent);
    }
    // The journal (the last section, only when the commit journals: the traced count goes before it, 0 or not).
    const journal = commit.journal ?? [];
    const unjournal = commit.unjournal ?? [];
    const journals = journal.length > 0 || unjournal.length > 0;
    if (traced.length > 0 || journals) {
      args.push(String(traced.length / 2));
      for (const arg of traced) args.push(arg);
    }
    if (journals) {
      args.push(String(journal.length));
      for (const e of journal) args.push(journalField(e.sid, e.records[0].at), journalValue(e));
      args.push(String(unjournal.length));
      for (const field of unjournal) args.push(field);
    }
    let reply: [Buffer[], Buffer[]];
    try {
      reply = (await COMMIT.run(
        this.#client,
        [
          k.lease(p),
          k.input(p),
          k.output(p),
          k.hw(p),
          k.check(p),
          k.commits(p),
          k.ckpt(p),
          k.timers(p),
          k.ends(p),
          k.ended(p),
          k.opened(p),
          k.versions(p),
          k.journal(p),
          ...kept.map((c) => k.state(p, c.key)),
        ],
        args,
        BUFFERS,
      )) as [Buffer[], Buffer[]];
    } catch (error) {
      throw fenced(p, error);
    }
    const ids = reply[0].map((id) => (id.length === 0 ? null : id.toString()));
    const diverged: Divergence[] = [];
    const d = reply[1];
    for (let j = 0; j + 4 < d.length; j += 5) {
      if (d[j].toString() === 'o') {
        const id = d[j + 2].toString();
        const field = d[j + 3].toString();
        const committed =
          field === 'v' ? { id, payload: d[j + 4] } : field === 'e' ? { id, error: d[j + 4].toString() } : undefined;
        diverged.push({ kind: 'output', index: Number(d[j + 1].toString()) - 1, committed });
      } else if (d[j].toString() === 'b') {
        diverged.push({ kind: 'boundary', index: Number(d[j + 1].toString()) - 1, committed: parseEnd(d[j + 2].toString()) });
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

  async wake(
    lease: Lease,
    key: string,
    sid: string,
    id: number,
    time: number,
    payload: Buffer | string,
    opening?: SessionOpening,
  ): Promise<string | number> {
    const p = lease.partition;
    const k = this.#keys;
    const args = [lease.token, key, sid, String(id), String(time), payload];
    if (opening !== undefined) args.push(opening.version, openingValue(opening));
    try {
      const reply = await WAKE.run(this.#client, [k.lease(p), k.input(p), k.timers(p), k.opened(p), k.versions(p)], args);
      return typeof reply === 'number' ? reply : String(reply);
    } catch (error) {
      throw fenced(p, error);
    }
  }

  async pinned(partition: number): Promise<number> {
    return Number(await PINNED.run(this.#client, [this.#keys.input(partition)], []));
  }

  async keyState(partition: number, key: string): Promise<StoredKeyState | null> {
    const name = this.#keys.state(partition, key);
    const value = (await send(this.#client, name, ['GET', name], BUFFERS)) as Buffer | null;
    return value === null ? null : parseKept(value);
  }

  async journal(lease: Lease): Promise<JournalEntry[]> {
    const key = this.#keys.journal(lease.partition);
    const found: JournalEntry[] = [];
    let cursor = '0';
    do {
      const reply = (await send(this.#client, key, ['HSCAN', key, cursor, 'COUNT', '1000'], BUFFERS)) as [Buffer, Buffer[]];
      cursor = reply[0].toString();
      const fields = reply[1];
      for (let j = 0; j + 1 < fields.length; j += 2) {
        const entry = parseJournal(fields[j].toString(), fields[j + 1]);
        if (entry !== undefined) found.push(entry);
      }
    } while (cursor !== '0');
    return found;
  }

  async snapshots(lease: Lease): Promise<Snapshot[]> {
    const key = this.#keys.ckpt(lease.partition);
    const found: Snapshot[] = [];
    let cursor = '0';
    do {
      const reply = (await send(this.#client, key, ['HSCAN', key, cursor, 'COUNT', '1000'], BUFFERS)) as [Buffer, Buffer[]];
      cursor = reply[0].toString();
      const fields = reply[1];
      for (let j = 0; j + 1 < fields.length; j += 2) found.push(parseSnapshot(fields[j].toString(), fields[j + 1]));
    } while (cursor !== '0');
    // Each session's high-water mark: the outputs written after its checkpoint count too.
    const marks = await this.marks(
      lease,
      found.map((f) => f.sid),
    );
    return found.map((f) => markedSnapshot(f, marks.get(f.sid)));
  }

  async marks(lease: Lease, sids: readonly string[]): Promise<Map<string, OutputMark>> {
    const hw = this.#keys.hw(lease.partition);
    const found = new Map<string, OutputMark>();
    for (let j = 0; j < sids.length; j += 500) {
      const batch = sids.slice(j, j + 500);
      const fields = batch.flatMap((sid) => [sid, `${sid} p`]);
      const got = (await send(this.#client, hw, ['HMGET', hw, ...fields])) as (string | null)[];
      batch.forEach((sid, i) => {
        const written = got[2 * i];
        if (written !== null) found.set(sid, parseMark(Number(written), got[2 * i + 1]));
      });
    }
    return found;
  }

  async openings(lease: Lease): Promise<Map<string, SessionOpening>> {
    const key = this.#keys.opened(lease.partition);
    const found = new Map<string, SessionOpening>();
    let cursor = '0';
    do {
      const reply = (await send(this.#client, key, ['HSCAN', key, cursor, 'COUNT', '1000'])) as [unknown, unknown[]];
      cursor = String(reply[0]);
      const fields = reply[1];
      for (let j = 0; j + 1 < fields.length; j += 2) {
        const sid = String(fields[j]);
        const opening = parseOpening(sid, String(fields[j + 1]));
        if (opening !== undefined) found.set(sid, opening);
      }
    } while (cursor !== '0');
    return found;
  }

  lag(partition: number): Promise<number> {
    return partitionLag(this.#client, this.#keys, partition);
  }

  async trim(lease: Lease): Promise<number> {
    const p = lease.partition;
    try {
      const k = this.#keys;
      return Number(await TRIM.run(this.#client, [k.lease(p), k.input(p), k.ends(p), k.ended(p)], [lease.token]));
    } catch (error) {
      throw fenced(p, error);
    }
  }

  async trimOutputs(lease: Lease, acked: boolean, maxLen: number): Promise<number> {
    const p = lease.partition;
    try {
      return Number(
        await TRIM_OUTPUTS.run(
          this.#client,
          [this.#keys.lease(p), this.#keys.output(p)],
          [lease.token, acked ? '1' : '', String(maxLen)],
        ),
      );
    } catch (error) {
      throw fenced(p, error);
    }
  }

  async #leaseClient(): Promise<RedisClientLike> {
    if (this.#leases !== null) return this.#leases;
    if (this.#closed) throw workerClosedError();
    this.#leasesConnecting ??= (async () => {
      const dup = this.#client.duplicate();
      dup.on('error', this.#reportOpen);
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
        throw workerClosedError();
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
      dup.on('error', this.#reportOpen);
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
