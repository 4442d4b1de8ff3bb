// The partitioned log's server in memory, on a virtual clock: what the Lua scripts and stream commands of
// redis-log.ts do, as plain code over plain maps, for the simulator and tests (no server, no machine time).
// `MemoryStore` holds the streams, the consumer group, leases and the hashes of commit.lua; "Redis' time" is its
// clock's time, and entry ids are `<ms>-<seq>` as XADD makes them. Workers reach it through `MemoryLog`
// (memory-log.ts). The byte formats (entry fields, checkpoint values) are stored.ts's, shared with the Redis log;
// the log contract test runs the same scenarios against both.
import { NO_VERSION } from '../rules/versions';
import { createHash } from 'node:crypto';
import { FencedError } from '../../errors';
import type { Clock } from '../common/clock';
import {
  advertValue,
  endValue,
  inputEntries,
  journalField,
  journalValue,
  keptValue,
  lastPlaces,
  markedSnapshot,
  openingValue,
  parseAdvert,
  parseEnd,
  parseJournal,
  parseKept,
  parseMark,
  parseOpening,
  parseSnapshot,
  snapshotValue,
} from '../common/stored';
import type {
  Commit,
  CommitResult,
  Divergence,
  Heartbeat,
  Held,
  InputEntry,
  JournalEntry,
  KeptState,
  Lease,
  OutputMark,
  ReadResult,
  Refused,
  SessionOpening,
  Snapshot,
  StoredKeyState,
} from '../common/transport';
import type { WorkerAdvert } from '../rules/versions';
import { type Id, Stream, compare, parseId } from './entry-stream';

interface Group {
  delivered: Id;
  readonly pending: Map<string, Id>;
}

/** What one partition holds: the keys of redis-log.ts's layout. */
class PartitionState {
  input: Stream | null = null;
  group: Group | null = null;
  output: Stream | null = null;
  lease: { token: string; until: number } | null = null;
  epoch = 0;
  /** sid -> last output seq written. */
  readonly hw = new Map<string, number>();
  /** sid -> the place of its last output written, as stored beside its mark (`placeValue`). */
  readonly places = new Map<string, string>();
  /** `"<seq> <sid>"` -> the output's entry id and the digest of its field and bytes (checkReplay). */
  readonly check = new Map<string, { id: string; digest: string }>();
  /** The last commit with a serial: for its retry. */
  lastCommit: { token: string; serial: string; first: string | null; count: number } | null = null;
  /** sid -> the checkpoint's stored value. */
  readonly ckpt = new Map<string, Buffer>();
  /** sid -> the timer ids whose wake-ups were written. */
  readonly timers = new Map<string, Set<number>>();
  /** `<sid> <at>` -> a journal entry's stored value (`:journal`: a session's records of one commit). */
  readonly journal = new Map<string, Buffer>();
  /** sid -> where it ended, as stored (checkReplay); with the ms of its first entry, by which a trim drops it. */
  readonly ends = new Map<string, { value: string; ms: number }>();
  /** Versions: sid -> its opening's stored value (`:opened`). */
  readonly opened = new Map<string, string>();
  /** Versions: version -> live sessions of `opened` opened on it (`:versions`). */
  readonly versions = new Map<string, number>();
  /** Versions: until when the partition is marked refused (`:refused`, with PX), ms; 0: not marked. */
  refusedUntil = 0;
  /** keyState: key -> its kept state's stored value, and the time it expires at (a key of its own in Redis, with PX). */
  readonly states = new Map<string, { value: Buffer; until: number }>();

  inputStream(): Stream {
    return (this.input ??= new Stream());
  }
}

/** What is left of a partition's bookkeeping (for "nothing left behind" checks). */
export interface PartitionLeftovers {
  readonly pending: readonly string[];
  readonly hw: readonly string[];
  readonly check: readonly string[];
  readonly ckpt: readonly string[];
  readonly timers: readonly string[];
  /** Journal entries (`<sid> <at>`). */
  readonly journal: readonly string[];
  /** Openings of sessions (`:opened`), and per-version counts left above 0 (`:versions`, as `<version>=<count>`). */
  readonly opened: readonly string[];
  readonly versions: readonly string[];
}

const READ_FENCED = 'the lease is gone: another worker owns the partition, or it expired';
const SCRIPT_FENCED = 'the lease is gone: another worker owns the partition';

/** The ms of a sid's first entry (`<key>@<ms>-<seq>`), as commit.lua scores it; 0 if it has none. */
function sidMs(sid: string): number {
  const match = /@(\d+)-\d+$/.exec(sid);
  return match === null ? 0 : Number(match[1]);
}

/**
 * HSETNX of a session's opening, counted under its version once written (commit.lua, wake.lua); a migrated
 * session's (`replaces`) replaces the one kept, its count moving to its version (commit.lua's mode 'r').
 */
function open(s: PartitionState, o: SessionOpening): boolean {
  const value = openingValue(o);
  const old = s.opened.get(o.sid);
  if (old !== undefined && (o.replaces === undefined || old === value)) return false;
  if (old !== undefined) {
    const was = parseOpening(o.sid, old)?.version ?? '';
    const left = (s.versions.get(was) ?? 0) - 1;
    if (left <= 0) s.versions.delete(was);
    else s.versions.set(was, left);
  }
  s.opened.set(o.sid, value);
  s.versions.set(o.version, (s.versions.get(o.version) ?? 0) + 1);
  return old === undefined;
}

function digest(field: string, data: Buffer | string): string {
  return createHash('sha1').update(field).update(data).digest('hex');
}

/**
 * A write's writer (a worker id), the sessions whose first outputs it wrote (none written before), and those whose
 * opening it wrote first (`:opened`, which every later owner follows).
 */
export interface FirstWrites {
  readonly worker: string;
  readonly outputs: ReadonlySet<string>;
  readonly openings: ReadonlySet<string>;
}

/** The worker id of a lease's token (`<worker>:<epoch>`). */
function writer(lease: Lease): string {
  return lease.token.slice(0, Math.max(0, lease.token.lastIndexOf(':')));
}

/**
 * The server: the partitions of one function and its live workers, on `clock`. Producers append with `append`;
 * workers reach it through a `MemoryLog` each.
 */
export class MemoryStore {
  readonly partitions: number;
  readonly clock: Clock;
  readonly #parts: PartitionState[];
  /** Worker id -> the time its registration runs out. */
  readonly #workers = new Map<string, number>();
  /** Live workers' adverts as stored (`velo:{<name>}:adverts`). */
  readonly #adverts = new Map<string, string>();
  /** Called after every entry added to an input (blocked reads look again). */
  readonly #listeners = new Set<(partition: number) => void>();

  readonly #onWrite: ((kind: 'commit' | 'wake', written: FirstWrites) => void) | undefined;

  /**
   * `onWrite`: called after each commit applied and each wake-up written, with the sessions whose first outputs or
   * opening it wrote
   * written (a simulator crashes an owner there, and learns whose openings stand).
   */
  constructor(partitions: number, clock: Clock, onWrite?: (kind: 'commit' | 'wake', written: FirstWrites) => void) {
    this.partitions = partitions;
    this.clock = clock;
    this.#onWrite = onWrite;
    this.#parts = Array.from({ length: partitions }, () => new PartitionState());
  }

  /** Appends events to a partition's input, in order (append.lua, or append-traced.lua with `trace`); their ids. */
  append(
    partition: number,
    events: ReadonlyArray<readonly [string, Buffer | string]>,
    trace?: readonly [string, string],
  ): string[] {
    const ids = events.map(([key, data]) => {
      const fields: [string, Buffer | string][] = [
        ['k', key],
        ['v', data],
      ];
      if (trace !== undefined) {
        fields.push(['t', trace[0]]);
        if (trace[1] !== '') fields.push(['s', trace[1]]);
      }
      return this.#part(partition).inputStream().add(this.clock.now(), fields);
    });
    this.#added(partition);
    return ids;
  }

  /**
   * Appends events at the ids given (XADD `<id>`: a replay's recorded entries at their recorded ids), in order;
   * throws where an id is not after the input's last.
   */
  appendAt(partition: number, events: ReadonlyArray<readonly [string, string, Buffer | string]>): void {
    const input = this.#part(partition).inputStream();
    for (const [id, key, data] of events) {
      input.add(
        this.clock.now(),
        [
          ['k', key],
          ['v', data],
        ],
        id,
      );
    }
    this.#added(partition);
  }

  /** Every entry of a partition's input, as a worker reads them. */
  input(partition: number): InputEntry[] {
    return inputEntries(this.#part(partition).input?.entries.map((e) => [e.id, e.list]) ?? []);
  }

  /** A partition's output stream as XRANGE gives it with Buffer replies: `[id, [field, value, ...]]` (see `outputItem`). */
  outputs(partition: number): [Buffer, Buffer[]][] {
    return this.#part(partition).output?.entries.map((e) => [Buffer.from(e.id), e.list]) ?? [];
  }

  /** What a partition still keeps per session, and its pending entries. */
  leftovers(partition: number): PartitionLeftovers {
    const s = this.#part(partition);
    return {
      pending: [...(s.group?.pending.keys() ?? [])],
      hw: [...s.hw.keys(), ...[...s.places.keys()].map((sid) => `${sid} p`)],
      check: [...s.check.keys()],
      ckpt: [...s.ckpt.keys()],
      timers: [...s.timers.keys()],
      journal: [...s.journal.keys()],
      opened: [...s.opened.keys()],
      versions: [...s.versions].filter(([, n]) => n !== 0).map(([v, n]) => `${v}=${n}`),
    };
  }

  /**
   * @internal How many things a partition still keeps (the sizes `leftovers()` would list), in constant time: a
   * simulator asks after every step whether its run has settled, and an open session's pending entries grow with
   * every wake-up, so listing them each time made a run cost the square of its steps.
   */
  kept(partition: number): number {
    const s = this.#part(partition);
    return (
      (s.group?.pending.size ?? 0) +
      s.hw.size +
      s.places.size +
      s.check.size +
      s.ckpt.size +
      s.timers.size +
      s.journal.size +
      s.opened.size
    );
  }

  /** The ends a partition keeps for checkReplay (sid -> `<reason> <last input>`): kept after their sessions, until a trim. */
  ends(partition: number): Map<string, string> {
    return new Map([...this.#part(partition).ends].map(([sid, e]) => [sid, e.value]));
  }

  /**
   * The state `key` keeps (`keyState`) as stored, and its time left (ms), or null: none, or expired (Redis expires a
   * key once its time is past).
   */
  keptState(partition: number, key: string): { value: Buffer; ttl: number } | null {
    const s = this.#part(partition);
    const kept = s.states.get(key);
    if (kept === undefined) return null;
    // (As Redis: a key is expired once the time is past its expiry, not at it.)
    const left = kept.until - this.clock.now();
    if (left < 0) {
      s.states.delete(key);
      return null;
    }
    return { value: kept.value, ttl: left };
  }

  /** DEL of a key's kept state: true if there was one. */
  /** Sets the state `k.key` keeps, for `retention` ms, as a commit that ends its session would (a test's seed). */
  setKept(partition: number, k: KeptState, retention: number): void {
    this.#part(partition).states.set(k.key, { value: Buffer.from(keptValue(k)), until: this.clock.now() + retention });
  }

  deleteKept(partition: number, key: string): boolean {
    const had = this.keptState(partition, key) !== null;
    this.#part(partition).states.delete(key);
    return had;
  }

  /** The keys of a partition with a kept state now (expired ones left out). */
  keptKeys(partition: number): string[] {
    const s = this.#part(partition);
    return [...s.states.keys()].filter((key) => this.keptState(partition, key) !== null);
  }

  /** @internal GET of a key's kept state. */
  keyState(partition: number, key: string): StoredKeyState | null {
    const kept = this.keptState(partition, key);
    return kept === null ? null : parseKept(kept.value);
  }

  /** The token of the lease on the partition, or null if none is live. */
  holder(partition: number): string | null {
    return this.#lease(this.#part(partition))?.token ?? null;
  }

  /**
   * @internal Every live lease and registration lasts `by` ms longer: a simulator that moves its clock over a span
   * where its processes would only have renewed them (`VirtualClock.postpone`).
   */
  extendLeases(by: number): void {
    for (const s of this.#parts) {
      const lease = this.#lease(s);
      if (lease !== null) lease.until += by;
    }
    for (const [w, until] of this.#workers) this.#workers.set(w, until + by);
  }

  /** @internal A blocked read's hook (MemoryLog.wait). */
  listen(listener: (partition: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** @internal Whether the partition has input entries after `position` (XREAD COUNT 1 from it finds one). */
  hasAfter(partition: number, position: string): boolean {
    const input = this.#part(partition).input;
    return input !== null && input.after(parseId(position)) < input.entries.length;
  }

  #part(partition: number): PartitionState {
    const s = this.#parts[partition];
    if (s === undefined) throw new RangeError(`No partition ${partition} (of ${this.partitions})`);
    return s;
  }

  #added(partition: number): void {
    for (const listener of [...this.#listeners]) listener(partition);
  }

  /** The live lease (an expired one is gone: Redis expires a key once its time is past). */
  #lease(s: PartitionState): { token: string; until: number } | null {
    if (s.lease !== null && this.clock.now() > s.lease.until) s.lease = null;
    return s.lease;
  }

  /** fence.lua (or the fence stream, for reads): the partition's state if `lease` still holds it. */
  #owned(lease: Lease, message = SCRIPT_FENCED): PartitionState {
    const s = this.#part(lease.partition);
    if (this.#lease(s)?.token !== lease.token) throw new FencedError(lease.partition, message);
    return s;
  }

  // The commands, each atomic (one script or command of redis-log.ts), synchronous: MemoryLog makes them calls.

  /** @internal heartbeat.lua */
  heartbeat(worker: string, ttl: number, extend = true, advert: WorkerAdvert = NO_VERSION): Heartbeat {
    const now = this.clock.now();
    for (const [w, until] of this.#workers) {
      if (until > now) continue;
      this.#workers.delete(w);
      this.#adverts.delete(w);
    }
    if (extend || !this.#workers.has(worker)) this.#workers.set(worker, now + ttl);
    this.#adverts.set(worker, advertValue(advert));
    const first = [...this.#workers]
      .sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, 2)
      .find(([w]) => w !== worker);
    const live = this.#workers.size;
    for (const w of this.#adverts.keys()) if (!this.#workers.has(w)) this.#adverts.delete(w);
    const adverts = new Map([...this.#adverts].map(([w, value]) => [w, parseAdvert(value)]));
    return first === undefined ? { live, adverts } : { live, next: { worker: first[0], left: first[1] - now }, adverts };
  }

  /** @internal For a simulator's checks: whether `worker`'s registration is live now (what the others see of it). */
  registered(worker: string): boolean {
    return (this.#workers.get(worker) ?? -Infinity) > this.clock.now();
  }

  /** @internal ZREM of the live set, HDEL of its advert */
  leave(worker: string): void {
    this.#workers.delete(worker);
    this.#adverts.delete(worker);
  }

  /** @internal acquire.lua */
  acquire(partition: number, worker: string, ttl: number, runs: readonly string[] = [], rescue = false): Lease | Held | Refused {
    const s = this.#part(partition);
    const held = this.#lease(s);
    const now = this.clock.now();
    if (held !== null) return { holder: held.token.slice(0, Math.max(0, held.token.lastIndexOf(':'))), left: held.until - now };
    if (rescue && s.refusedUntil <= now) return { refused: [] };
    const refused = [...s.versions.keys()].filter((v) => v !== '' && !runs.includes(v) && !runs.includes('*'));
    if (refused.length > 0) {
      s.refusedUntil = now + ttl;
      return { refused };
    }
    s.refusedUntil = 0;
    const token = `${worker}:${++s.epoch}`;
    s.lease = { token, until: now + ttl };
    s.inputStream();
    s.group ??= { delivered: [0, 0], pending: new Map() };
    return { partition, token };
  }

  /** @internal renew.lua */
  renew(lease: Lease, ttl: number): boolean {
    const s = this.#part(lease.partition);
    const held = this.#lease(s);
    if (held?.token !== lease.token) return false;
    held.until = this.clock.now() + ttl;
    return true;
  }

  /** @internal release.lua */
  release(lease: Lease): void {
    const s = this.#part(lease.partition);
    if (this.#lease(s)?.token === lease.token) s.lease = null;
  }

  /** @internal The fenced XREADGROUP, then read.lua when it finds nothing. */
  read(lease: Lease, from: string, count: number): ReadResult {
    const s = this.#owned(lease, READ_FENCED);
    const input = s.inputStream();
    const group = s.group as Group;
    const raw: [string, Buffer[] | null][] = [];
    if (from === '>') {
      for (let i = input.after(group.delivered); i < input.entries.length && raw.length < count; i++) {
        const e = input.entries[i];
        group.delivered = e.at;
        group.pending.set(e.id, e.at);
        raw.push([e.id, e.list]);
      }
    } else {
      const after = parseId(from);
      for (const [id, at] of group.pending) {
        if (raw.length === count) break;
        // A pending entry trimmed away comes back with nil fields.
        if (compare(at, after) > 0) raw.push([id, input.find(id)?.list ?? null]);
      }
    }
    if (raw.length > 0) return { entries: inputEntries(raw), tail: '' };
    return { entries: [], tail: input.entries.at(-1)?.id ?? '0-0' };
  }

  /** @internal One XRANGE per id. */
  entries(partition: number, ids: readonly string[]): InputEntry[] {
    const input = this.#part(partition).input;
    return ids.map((id) => {
      const e = input?.find(id);
      return e === undefined ? { id, key: '' } : inputEntries([[e.id, e.list]])[0];
    });
  }

  /** @internal mark.lua */
  markClose(lease: Lease, key: string, sid: string, reason?: string): string {
    const s = this.#owned(lease);
    const fields: [string, string][] = [
      ['k', key],
      ['c', sid],
    ];
    if (reason !== undefined) fields.push(['r', reason]);
    const id = s.inputStream().add(this.clock.now(), fields);
    this.#added(lease.partition);
    return id;
  }

  /** @internal trim.lua */
  trim(lease: Lease): number {
    const s = this.#owned(lease);
    const group = s.group as Group;
    const oldest = group.pending.values().next();
    const min = oldest.done === true ? group.delivered : oldest.value;
    for (const [sid, end] of s.ends) if (end.ms < min[0]) s.ends.delete(sid);
    return s.inputStream().trimBefore(min);
  }

  /**
   * @internal trim-outputs.lua. No consumer group reads a memory log's outputs, so `acked` removes nothing (as
   * Redis does for a stream without groups); `maxLen` keeps exactly the newest `maxLen` (Redis' `~` keeps at
   * least that many: whole nodes).
   */
  trimOutputs(lease: Lease, _acked: boolean, maxLen: number): number {
    const s = this.#owned(lease);
    const output = s.output;
    if (output === null || maxLen <= 0 || output.entries.length <= maxLen) return 0;
    return output.entries.splice(0, output.entries.length - maxLen).length;
  }

  /** @internal wake.lua */
  wake(
    lease: Lease,
    key: string,
    sid: string,
    id: number,
    time: number,
    payload: Buffer | string,
    opening?: SessionOpening,
  ): string | number {
    const s = this.#owned(lease);
    const now = this.clock.now();
    if (now < time) return time - now;
    const fired = s.timers.get(sid) ?? new Set<number>();
    if (fired.has(id)) return '';
    s.timers.set(sid, fired.add(id));
    const openings = new Set<string>();
    if (opening !== undefined && open(s, opening)) openings.add(sid);
    const entry = s.inputStream().add(now, [
      ['k', key],
      ['w', `${sid} ${id}`],
      ['d', String(time)],
      ['v', payload],
    ]);
    this.#added(lease.partition);
    this.#onWrite?.('wake', { worker: writer(lease), outputs: new Set(), openings });
    return entry;
  }

  /** @internal HSCAN of the openings */
  openings(partition: number): Map<string, SessionOpening> {
    const found = new Map<string, SessionOpening>();
    for (const [sid, value] of this.#part(partition).opened) {
      const opening = parseOpening(sid, value);
      if (opening !== undefined) found.set(sid, opening);
    }
    return found;
  }

  /** The live sessions of `partition` per version (`:versions`), for tests. */
  versions(partition: number): Map<string, number> {
    return new Map(this.#part(partition).versions);
  }

  /** @internal HSCAN of the checkpoints, with each session's high-water mark. */
  snapshots(partition: number): Snapshot[] {
    const s = this.#part(partition);
    return [...s.ckpt].map(([sid, value]) => markedSnapshot(parseSnapshot(sid, value), this.#mark(s, sid)));
  }

  /** @internal HSCAN of the journal: every entry of the partition's live sessions (one that cannot be read is left out). */
  journalEntries(partition: number): JournalEntry[] {
    const found: JournalEntry[] = [];
    for (const [field, value] of this.#part(partition).journal) {
      const entry = parseJournal(field, value);
      if (entry !== undefined) found.push(entry);
    }
    return found;
  }

  /** @internal HMGET of these sessions' marks (and their places). */
  marks(partition: number, sids: readonly string[]): Map<string, OutputMark> {
    const s = this.#part(partition);
    const found = new Map<string, OutputMark>();
    for (const sid of sids) {
      const mark = this.#mark(s, sid);
      if (mark !== undefined) found.set(sid, mark);
    }
    return found;
  }

  #mark(s: PartitionState, sid: string): OutputMark | undefined {
    const written = s.hw.get(sid);
    return written === undefined ? undefined : parseMark(written, s.places.get(sid));
  }

  /** @internal commit.lua */
  commit(lease: Lease, commit: Commit): CommitResult {
    const s = this.#owned(lease);
    const serial = commit.serial === undefined ? '' : String(commit.serial);
    const withIds = serial !== '' && commit.ids !== false;
    if (serial !== '' && s.lastCommit !== null && s.lastCommit.token === lease.token && s.lastCommit.serial === serial) {
      if (!withIds) return { ids: [], diverged: [] };
      // The retry of a commit that was applied: the ids it wrote, found among the outputs it wrote (contiguous).
      const { first, count } = s.lastCommit;
      const written = new Map<string, string>();
      if (first !== null && s.output !== null) {
        const from = s.output.from(parseId(first));
        for (const e of s.output.entries.slice(from, from + count)) {
          written.set(`${e.list[1].toString()} ${e.list[3].toString()}`, e.id);
        }
      }
      return { ids: commit.outputs.map((o) => written.get(`${o.sid} ${o.seq}`) ?? null), diverged: [] };
    }
    const check = commit.check === true;
    const ids: (string | null)[] = [];
    const diverged: Divergence[] = [];
    let first: string | null = null;
    let count = 0;
    const raised = new Map<string, number>();
    const firsts = new Set<string>();
    commit.outputs.forEach((o, index) => {
      const field = o.error !== undefined ? 'e' : 'v';
      const data = o.error ?? o.payload ?? '';
      const mark = s.hw.get(o.sid) ?? 0;
      if (o.seq > mark && mark === 0) firsts.add(o.sid);
      const checkKey = `${o.seq} ${o.sid}`;
      if (o.seq > mark) {
        const fields: [string, Buffer | string][] = [
          ['sid', o.sid],
          ['seq', String(o.seq)],
          ['k', o.key],
          [field, data],
        ];
        if (o.traceparent !== undefined) fields.push(['t', o.traceparent]);
        const id = (s.output ??= new Stream()).add(this.clock.now(), fields);
        s.hw.set(o.sid, o.seq);
        raised.set(o.sid, o.seq);
        if (check) s.check.set(checkKey, { id, digest: digest(field, data) });
        first ??= id;
        count++;
        if (withIds) ids.push(id);
        return;
      }
      if (withIds) ids.push(null);
      const stored = check ? s.check.get(checkKey) : undefined;
      if (stored === undefined || stored.digest === digest(field, data)) return;
      const entry = s.output?.find(stored.id);
      let committed: { id: string; payload?: Buffer; error?: string } | undefined;
      if (entry !== undefined) {
        // The entry's last `v` or `e` field, as commit.lua reads it.
        for (let j = 0; j + 1 < entry.list.length; j += 2) {
          const name = entry.list[j].toString();
          if (name === 'v') committed = { id: stored.id, payload: entry.list[j + 1] };
          else if (name === 'e') committed = { id: stored.id, error: entry.list[j + 1].toString() };
        }
      }
      diverged.push({ kind: 'output', index, committed });
    });
    for (const [sid, place] of lastPlaces(commit.outputs)) {
      if (place.startsWith(`${raised.get(sid)} `)) s.places.set(sid, place);
    }
    for (const c of commit.checkpoints ?? []) s.ckpt.set(c.sid, Buffer.from(snapshotValue(c)));
    // The journal: entries written (one field per session's records of the commit), then those forgotten (a
    // checkpoint's, an ended session's).
    for (const e of commit.journal ?? []) s.journal.set(journalField(e.sid, e.records[0].at), Buffer.from(journalValue(e)));
    for (const field of commit.unjournal ?? []) s.journal.delete(field);
    const pending = (s.group as Group).pending;
    for (const id of commit.acks) pending.delete(id);
    if (commit.ended.length > 0) {
      // Digests of ended sessions go too, also those a checking worker left for this one.
      const checked = check || s.check.size > 0;
      commit.ended.forEach((sid, i) => {
        const end = commit.endedAt?.[i];
        if (check && end !== undefined) {
          const value = endValue(end);
          const stored = s.ends.get(sid);
          if (stored === undefined) s.ends.set(sid, { value, ms: sidMs(sid) });
          else if (stored.value !== value) diverged.push({ kind: 'boundary', index: i, committed: parseEnd(stored.value) });
        }
        if (checked) {
          const hw = s.hw.get(sid) ?? 0;
          const last = commit.endedSeqs?.[i] ?? 0;
          if (check && hw > last) diverged.push({ kind: 'count', sid, committed: hw, replayed: last });
          for (let seq = 1; seq <= hw; seq++) s.check.delete(`${seq} ${sid}`);
        }
      });
      for (const sid of commit.ended) {
        s.hw.delete(sid);
        s.places.delete(sid);
        s.ckpt.delete(sid);
        s.timers.delete(sid);
        const opening = s.opened.get(sid);
        if (opening === undefined) continue;
        s.opened.delete(sid);
        const version = parseOpening(sid, opening)?.version ?? '';
        const left = (s.versions.get(version) ?? 0) - 1;
        if (left <= 0) s.versions.delete(version);
        else s.versions.set(version, left);
      }
    }
    // keyState: SET ... PX retention of each kept state, after the ends.
    for (const k of commit.kept ?? [])
      s.states.set(k.key, { value: Buffer.from(keptValue(k)), until: this.clock.now() + (commit.retention ?? 1) });
    const openings = new Set<string>();
    for (const o of commit.opened ?? []) if (open(s, o)) openings.add(o.sid);
    if (serial !== '') s.lastCommit = { token: lease.token, serial, first, count };
    this.#onWrite?.('commit', { worker: writer(lease), outputs: firsts, openings });
    return { ids, diverged };
  }

  /** @internal pinned.lua */
  pinned(partition: number): number {
    const oldest = this.#part(partition).group?.pending.values().next();
    if (oldest === undefined || oldest.done === true) return 0;
    return Math.max(0, this.clock.now() - oldest.value[0]);
  }

  /** @internal lag.lua (the group's lag is its undelivered entries: a trim never removes one) */
  lag(partition: number): number {
    const s = this.#part(partition);
    if (s.input === null) return 0;
    if (s.group === null) return s.input.entries.length;
    return s.input.entries.length - s.input.after(s.group.delivered);
  }
}
