// One worker's connection to a `MemoryStore` (memory-store.ts), as a `PartitionLog`: each call applies at once, in
// call order (as Redis applies one connection's commands), and its reply comes at a later step of the clock, so a
// caller never sees a reply within its own turn; a seeded fault policy can delay a reply, lose it after the call
// applied, refuse the call before it applies, apply it late, after calls made after it (as Postgres commits the
// transactions of a pool's connections in any order), or hold it until its caller's bound cuts it (`cut`).
import type { Clock } from '../common/clock';
import type {
  Commit,
  CommitResult,
  Heartbeat,
  Held,
  InputEntry,
  JournalEntry,
  Lease,
  OutputMark,
  PartitionLog,
  ReadResult,
  Refused,
  SessionOpening,
  Snapshot,
  StoredKeyState,
} from '../common/transport';
import type { WorkerAdvert } from '../rules/versions';
import type { MemoryStore } from './memory-store';
/** The calls of a `PartitionLog` that a fault can hit. */
export type LogCall =
  | 'heartbeat'
  | 'leave'
  | 'acquire'
  | 'renew'
  | 'release'
  | 'read'
  | 'entries'
  | 'markClose'
  | 'trim'
  | 'trimOutputs'
  | 'wake'
  | 'snapshots'
  | 'journal'
  | 'openings'
  | 'marks'
  | 'keyState'
  | 'commit'
  | 'pinned'
  | 'lag';

/**
 * What happens to one call: its reply comes `ms` later (virtual time); or it is `lost` after the call applied;
 * or the call is `refused` before it applies (these two reject with the error node-redis gives for a connection
 * that closed with the command in flight); or it applies `ms` later (`late`), after calls made since, and its reply
 * follows: a pooled connection's transaction that commits after another's. A process gone before then applies nothing.
 * Or its connection stalls (`cut`): no reply comes until `ms` later, when the caller's `callTimeout` destroys the
 * connection and the call rejects as `lost` does; the call applied `applyAt` ms in (0: at once, as a command whose
 * reply stalled; up to `ms`: a statement the server finished while the client waited), or never (`applyAt` null:
 * its bytes stalled before the server read them). Infinity as `ms` is a call no bound cuts: it never answers.
 */
export type Fault =
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'late'; readonly ms: number }
  | { readonly kind: 'lost' }
  | { readonly kind: 'refused' }
  | { readonly kind: 'cut'; readonly ms: number; readonly applyAt: number | null };

/** Decides each call's fault (undefined: none); `partition` is the call's, when it has one. Seed it for a replayable run. */
export type FaultPolicy = (call: LogCall, partition: number | undefined) => Fault | undefined;

/**
 * Named as node-redis names the error of a connection that closed with commands in flight: `reportable` (and so
 * the worker) takes it for a lost connection by that name.
 */
export class SocketClosedUnexpectedlyError extends Error {
  constructor() {
    super('Socket closed unexpectedly');
    this.name = 'SocketClosedUnexpectedlyError';
  }
}

/** One worker's connection to a `MemoryStore`: the `PartitionLog` a worker (or a test) calls. */
export class MemoryLog implements PartitionLog {
  readonly partitions: number;
  readonly #store: MemoryStore;
  readonly #clock: Clock;
  readonly #faults: FaultPolicy | undefined;
  /** The pending `wait()`s' ends (with nothing found). */
  readonly #waiting = new Set<() => void>();
  /** Severed: no reply comes any more (the process is gone). */
  #severed = false;

  readonly #waitClock: Clock;

  /**
   * A worker's connection to `store`. `clock`: the clock its replies come on (the worker process's own, which a
   * simulator can pause or stop; default the store's); `waitClock`: the clock of a `wait()`'s timeout (default
   * `clock`; a simulator's moves it on over a quiet span); `faults`: what happens to each of its calls.
   */
  constructor(store: MemoryStore, options: { faults?: FaultPolicy; clock?: Clock; waitClock?: Clock } = {}) {
    const clock = options.clock ?? store.clock;
    const faults = options.faults;
    const waitClock = options.waitClock ?? clock;
    this.#store = store;
    this.#clock = clock;
    this.#waitClock = waitClock;
    this.#faults = faults;
    this.partitions = store.partitions;
  }

  /** The process on this connection is gone: no pending or later call gets a reply (what it applied stays). */
  sever(): void {
    this.#severed = true;
    for (const cancel of [...this.#waiting]) cancel();
  }

  /**
   * Applies `apply` now, unless refused; the reply (or its loss) comes at a later step of the clock. A severed
   * connection applies nothing and answers nothing: a process that is gone sends no command.
   */
  #call<T>(call: LogCall, partition: number | undefined, apply: () => T): Promise<T> {
    if (this.#severed) return new Promise<T>(() => {});
    const fault = this.#faults?.(call, partition);
    const clock = this.#clock;
    if (fault?.kind === 'cut') {
      return new Promise<T>((_resolve, reject) => {
        const { ms, applyAt } = fault;
        const applyNow = () => {
          if (!this.#severed) this.#applied(apply);
        };
        if (applyAt !== null && applyAt <= 0) applyNow();
        else if (applyAt !== null) clock.setTimeout(applyNow, Math.min(applyAt, ms));
        if (ms === Infinity) return;
        clock.setTimeout(() => {
          if (!this.#severed) reject(new SocketClosedUnexpectedlyError());
        }, ms);
      });
    }
    if (fault?.kind === 'late') {
      return new Promise<T>((resolve, reject) => {
        clock.setTimeout(() => {
          if (this.#severed) return;
          let value: T;
          try {
            value = apply();
          } catch (error) {
            clock.setImmediate(() => !this.#severed && reject(error));
            return;
          }
          clock.setImmediate(() => !this.#severed && resolve(value));
        }, fault.ms);
      });
    }
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    if (fault?.kind === 'refused') outcome = { ok: false, error: new SocketClosedUnexpectedlyError() };
    else {
      try {
        outcome = { ok: true, value: apply() };
      } catch (error) {
        outcome = { ok: false, error };
      }
      if (fault?.kind === 'lost') outcome = { ok: false, error: new SocketClosedUnexpectedlyError() };
    }
    return new Promise<T>((resolve, reject) => {
      const reply = () => {
        if (this.#severed) return;
        if (outcome.ok) resolve(outcome.value);
        else reject(outcome.error);
      };
      if (fault?.kind === 'delay') clock.setTimeout(reply, fault.ms);
      else clock.setImmediate(reply);
    });
  }

  /** Applies `apply` for a call whose reply is not coming: what it throws is the store's answer, and lost with it. */
  #applied(apply: () => unknown): void {
    try {
      apply();
    } catch {
      // (The caller gets the connection's error instead.)
    }
  }

  heartbeat(worker: string, ttl: number, extend?: boolean, advert?: WorkerAdvert): Promise<Heartbeat> {
    return this.#call('heartbeat', undefined, () => this.#store.heartbeat(worker, ttl, extend, advert));
  }
  leave(worker: string): Promise<void> {
    return this.#call('leave', undefined, () => this.#store.leave(worker));
  }
  acquire(
    partition: number,
    worker: string,
    ttl: number,
    runs?: readonly string[],
    rescue?: boolean,
  ): Promise<Lease | Held | Refused> {
    return this.#call('acquire', partition, () => this.#store.acquire(partition, worker, ttl, runs, rescue));
  }
  renew(lease: Lease, ttl: number): Promise<boolean> {
    return this.#call('renew', lease.partition, () => this.#store.renew(lease, ttl));
  }
  release(lease: Lease): Promise<void> {
    return this.#call('release', lease.partition, () => this.#store.release(lease));
  }
  read(lease: Lease, from: string, count: number): Promise<ReadResult> {
    return this.#call('read', lease.partition, () => this.#store.read(lease, from, count));
  }
  entries(lease: Lease, ids: readonly string[]): Promise<InputEntry[]> {
    return this.#call('entries', lease.partition, () => this.#store.entries(lease.partition, ids));
  }
  markClose(lease: Lease, key: string, sid: string, reason?: string): Promise<string> {
    return this.#call('markClose', lease.partition, () => this.#store.markClose(lease, key, sid, reason));
  }
  trim(lease: Lease): Promise<number> {
    return this.#call('trim', lease.partition, () => this.#store.trim(lease));
  }
  trimOutputs(lease: Lease, acked: boolean, maxLen: number): Promise<number> {
    return this.#call('trimOutputs', lease.partition, () => this.#store.trimOutputs(lease, acked, maxLen));
  }
  wake(
    lease: Lease,
    key: string,
    sid: string,
    id: number,
    time: number,
    payload: Buffer | string,
    opening?: SessionOpening,
  ): Promise<string | number> {
    return this.#call('wake', lease.partition, () => this.#store.wake(lease, key, sid, id, time, payload, opening));
  }
  snapshots(lease: Lease): Promise<Snapshot[]> {
    return this.#call('snapshots', lease.partition, () => this.#store.snapshots(lease.partition));
  }
  journal(lease: Lease): Promise<JournalEntry[]> {
    return this.#call('journal', lease.partition, () => this.#store.journalEntries(lease.partition));
  }
  openings(lease: Lease): Promise<Map<string, SessionOpening>> {
    return this.#call('openings', lease.partition, () => this.#store.openings(lease.partition));
  }
  marks(lease: Lease, sids: readonly string[]): Promise<Map<string, OutputMark>> {
    return this.#call('marks', lease.partition, () => this.#store.marks(lease.partition, sids));
  }
  keyState(partition: number, key: string): Promise<StoredKeyState | null> {
    return this.#call('keyState', partition, () => this.#store.keyState(partition, key));
  }
  commit(lease: Lease, commit: Commit): Promise<CommitResult> {
    return this.#call('commit', lease.partition, () => this.#store.commit(lease, commit));
  }
  pinned(partition: number): Promise<number> {
    return this.#call('pinned', partition, () => this.#store.pinned(partition));
  }
  lag(partition: number): Promise<number> {
    return this.#call('lag', partition, () => this.#store.lag(partition));
  }

  /** XREAD BLOCK over the partitions at their positions: at once if one has more, else at an append, `ms` (0: never) or `interrupt()`. */
  wait(positions: ReadonlyMap<number, string>, ms: number): Promise<number[]> {
    const store = this.#store;
    const clock = this.#clock;
    const ready = () => [...positions].filter(([p, id]) => store.hasAfter(p, id)).map(([p]) => p);
    if (this.#severed) return new Promise<number[]>(() => {});
    if (positions.size === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const found = ready();
      if (found.length > 0) {
        clock.setImmediate(() => resolve(found));
        return;
      }
      let done = false;
      const finish = (partitions: number[]) => {
        if (done) return;
        done = true;
        unlisten();
        clock.clearTimeout(timer);
        this.#waiting.delete(cancel);
        // A severed connection's wait never answers (its process is gone).
        if (!this.#severed) clock.setImmediate(() => resolve(partitions));
      };
      const cancel = () => finish([]);
      const unlisten = store.listen((p) => {
        if (positions.has(p)) {
          const now = ready();
          if (now.length > 0) finish(now);
        }
      });
      const timer = ms > 0 ? this.#waitClock.setTimeout(cancel, ms) : null;
      this.#waiting.add(cancel);
    });
  }

  /** CLIENT UNBLOCK: the pending `wait()`s end as if their time had passed. */
  interrupt(): Promise<void> {
    for (const cancel of [...this.#waiting]) cancel();
    return Promise.resolve();
  }

  close(): Promise<void> {
    return this.interrupt();
  }
}
