// A `MemoryStore` that records every operation applied to it, in order, with the store's time at application, its
// arguments and its answer (or the error it threw): a simulated run's schedule of the log, for a replay of the same
// operations on another log (the Postgres one: __test__/helpers/sim-on-postgres.mjs). It changes nothing the store
// does: each override records and calls the store's own method.
//
// What is recorded: the calls of `PartitionLog` as the store takes them (through each process's `MemoryLog`, named
// by its connection: `connection(id)`; `journal` as the store's `journalEntries`), the producer's `append`, and the
// simulator's `extendLeases` (a quiet span moved over). A call a fault refused never reached the store (nothing to
// replay); a lost one applied (its answer is recorded, though its caller never got it). Not recorded:
// `wait()`/`interrupt()` (wake-up hints: they change nothing and answer nothing but a time to look again), and the
// simulator's own looks at the store for its checks (`holder`, `kept`, `versions`, `outputs`, and the `lag` of
// `settled()`, made through `unrecorded`).
import type { Clock } from '../common/clock';
import { type FirstWrites, MemoryStore } from '../memory/memory-store';
import type {
  Commit,
  CommitResult,
  Heartbeat,
  Held,
  InputEntry,
  JournalEntry,
  Lease,
  OutputMark,
  ReadResult,
  Refused,
  SessionOpening,
  Snapshot,
  StoredKeyState,
} from '../common/transport';
import type { WorkerAdvert } from '../rules/versions';
import type { LogCall } from '../memory/memory-log';

/** The store's operations a record holds: every call of a worker's log, the producer's appends (`appendAt`: at ids given), and the simulator's lease extensions. */
export type StoreCall = LogCall | 'append' | 'appendAt' | 'extendLeases';

/** An operation's answer: the value it returned, or the error it threw. */
export type StoreAnswer = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** One operation applied to the store. */
export interface StoreOp {
  /** The store's (virtual) time when it applied, ms. */
  readonly at: number;
  /** Whose: a process's connection (its id, `w1`...), `producer` (appends), or `sim` (the simulator's own). */
  readonly by: string;
  readonly call: StoreCall;
  /** Its arguments as the store took them (copies: a caller may change its objects after). */
  readonly args: readonly unknown[];
  readonly answer: StoreAnswer;
}

/**
 * A run's record: its operations in order, and what each partition's output stream, kept ends and journal hold at
 * its end.
 */
export interface StoreRecord {
  readonly partitions: number;
  readonly ops: readonly StoreOp[];
  /** Per partition, its output stream as `MemoryStore.outputs` gives it. */
  readonly outputs: readonly [Buffer, Buffer[]][][];
  /** Per partition, its kept ends (checkReplay) as `[sid, value]`, by sid. */
  readonly ends: readonly [string, string][][];
  /** Per partition, its journal entries (`ctx.run`, `ctx.stream`) as `PartitionLog.journal` reads them, by sid and place. */
  readonly journal: readonly JournalEntry[][];
}

/** Journal entries by sid, then their first record's place (a hash's fields come in no order). */
function byPlace(entries: JournalEntry[]): JournalEntry[] {
  const name = (e: JournalEntry): string => `${e.sid} ${e.records[0].at}`;
  return entries.sort((a, b) => (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0));
}

/** A deep copy of an argument or answer (Buffers, arrays, Maps, plain objects; errors as they are). */
function copy(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  if (Array.isArray(value)) return value.map(copy);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [copy(k), copy(v)]));
  if (value instanceof Set) return new Set([...value].map(copy));
  if (value instanceof Error || value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copy(v)]));
}

/** A `MemoryStore` that records each operation applied (see the file's comment). */
export class RecordingStore extends MemoryStore {
  readonly #ops: { at: number; by: string; call: StoreCall; args: readonly unknown[]; answer: StoreAnswer | null }[] = [];
  /** Whose call is being applied (set by a connection's view around its calls). */
  #by = 'sim';
  /** Above 0: inside an operation (its inner calls are its own) or `unrecorded`. */
  #depth = 0;

  constructor(partitions: number, clock: Clock, onWrite?: (kind: 'commit' | 'wake', written: FirstWrites) => void) {
    super(partitions, clock, onWrite);
  }

  /** The operations recorded so far, and the partitions' outputs and ends now. */
  record(): StoreRecord {
    const sorted = (m: Map<string, string>): [string, string][] => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return {
      partitions: this.partitions,
      ops: this.#ops as StoreOp[],
      outputs: Array.from({ length: this.partitions }, (_, p) => this.outputs(p)),
      ends: Array.from({ length: this.partitions }, (_, p) => sorted(this.ends(p))),
      // (The store's own read, not one of a process: left out of the operations.)
      journal: this.unrecorded(() => Array.from({ length: this.partitions }, (_, p) => byPlace(this.journalEntries(p)))),
    };
  }

  /** `fn()`, its calls of the store not recorded (the simulator's own looks). */
  unrecorded<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      this.#depth--;
    }
  }

  /**
   * The store as process `by`'s connection: the same store, each call through it recorded as `by`'s. (A view: its
   * methods are the store's, bound to it.)
   */
  connection(by: string): MemoryStore {
    return new Proxy(this, {
      get: (target, prop) => {
        const value: unknown = Reflect.get(target, prop, target);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]): unknown => {
          const was = target.#by;
          target.#by = by;
          try {
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          } finally {
            target.#by = was;
          }
        };
      },
    });
  }

  /** Applies `apply` (the store's own method), recorded: its place in the order is taken before it runs. */
  #op<T>(call: StoreCall, args: readonly unknown[], apply: () => T): T {
    if (this.#depth > 0) return apply();
    const op = { at: this.clock.now(), by: this.#by, call, args: args.map(copy), answer: null as StoreAnswer | null };
    this.#ops.push(op);
    this.#depth++;
    try {
      const value = apply();
      op.answer = { ok: true, value: copy(value) };
      return value;
    } catch (error) {
      op.answer = { ok: false, error };
      throw error;
    } finally {
      this.#depth--;
    }
  }

  override append(
    partition: number,
    events: ReadonlyArray<readonly [string, Buffer | string]>,
    trace?: readonly [string, string],
  ): string[] {
    // (The producer's: the simulator appends outside any process's connection.)
    const was = this.#by;
    if (was === 'sim') this.#by = 'producer';
    try {
      return this.#op('append', trace === undefined ? [partition, events] : [partition, events, trace], () =>
        super.append(partition, events, trace),
      );
    } finally {
      this.#by = was;
    }
  }
  override appendAt(partition: number, events: ReadonlyArray<readonly [string, string, Buffer | string]>): void {
    const was = this.#by;
    if (was === 'sim') this.#by = 'producer';
    try {
      this.#op('appendAt', [partition, events], () => super.appendAt(partition, events));
    } finally {
      this.#by = was;
    }
  }
  override extendLeases(by: number): void {
    this.#op('extendLeases', [by], () => super.extendLeases(by));
  }
  override heartbeat(worker: string, ttl: number, extend = true, advert?: WorkerAdvert): Heartbeat {
    return this.#op('heartbeat', advert === undefined ? [worker, ttl, extend] : [worker, ttl, extend, advert], () =>
      super.heartbeat(worker, ttl, extend, advert),
    );
  }
  override leave(worker: string): void {
    this.#op('leave', [worker], () => super.leave(worker));
  }
  override acquire(
    partition: number,
    worker: string,
    ttl: number,
    runs: readonly string[] = [],
    rescue = false,
  ): Lease | Held | Refused {
    return this.#op('acquire', [partition, worker, ttl, runs, rescue], () => super.acquire(partition, worker, ttl, runs, rescue));
  }
  override renew(lease: Lease, ttl: number): boolean {
    return this.#op('renew', [lease, ttl], () => super.renew(lease, ttl));
  }
  override release(lease: Lease): void {
    this.#op('release', [lease], () => super.release(lease));
  }
  override read(lease: Lease, from: string, count: number): ReadResult {
    return this.#op('read', [lease, from, count], () => super.read(lease, from, count));
  }
  override entries(partition: number, ids: readonly string[]): InputEntry[] {
    return this.#op('entries', [partition, ids], () => super.entries(partition, ids));
  }
  override markClose(lease: Lease, key: string, sid: string, reason?: string): string {
    return this.#op('markClose', reason === undefined ? [lease, key, sid] : [lease, key, sid, reason], () =>
      super.markClose(lease, key, sid, reason),
    );
  }
  override trim(lease: Lease): number {
    return this.#op('trim', [lease], () => super.trim(lease));
  }
  override trimOutputs(lease: Lease, acked: boolean, maxLen: number): number {
    return this.#op('trimOutputs', [lease, acked, maxLen], () => super.trimOutputs(lease, acked, maxLen));
  }
  override wake(
    lease: Lease,
    key: string,
    sid: string,
    id: number,
    time: number,
    payload: Buffer | string,
    opening?: SessionOpening,
  ): string | number {
    const args = [lease, key, sid, id, time, payload, ...(opening === undefined ? [] : [opening])];
    return this.#op('wake', args, () => super.wake(lease, key, sid, id, time, payload, opening));
  }
  override openings(partition: number): Map<string, SessionOpening> {
    return this.#op('openings', [partition], () => super.openings(partition));
  }
  override snapshots(partition: number): Snapshot[] {
    return this.#op('snapshots', [partition], () => super.snapshots(partition));
  }
  override journalEntries(partition: number): JournalEntry[] {
    return this.#op('journal', [partition], () => super.journalEntries(partition));
  }
  override marks(partition: number, sids: readonly string[]): Map<string, OutputMark> {
    return this.#op('marks', [partition, sids], () => super.marks(partition, sids));
  }
  override keyState(partition: number, key: string): StoredKeyState | null {
    return this.#op('keyState', [partition, key], () => super.keyState(partition, key));
  }
  override commit(lease: Lease, commit: Commit): CommitResult {
    return this.#op('commit', [lease, commit], () => super.commit(lease, commit));
  }
  override pinned(partition: number): number {
    return this.#op('pinned', [partition], () => super.pinned(partition));
  }
  override lag(partition: number): number {
    return this.#op('lag', [partition], () => super.lag(partition));
  }
}

/** `store` as process `by`'s connection: a recording store's view naming its calls `by`'s; any other store itself. */
export function connectionOf(store: MemoryStore, by: string): MemoryStore {
  return store instanceof RecordingStore ? store.connection(by) : store;
}

/** `fn()`, not recorded if `store` records (the simulator's own looks at the store). */
export function unrecorded<T>(store: MemoryStore, fn: () => T): T {
  return store instanceof RecordingStore ? store.unrecorded(fn) : fn();
}
