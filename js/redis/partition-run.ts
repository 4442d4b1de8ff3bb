// One partition this worker owns, for as long as its lease lasts: it reads the partition's log, runs a session
// per live key (`Session`), holds entries of keys waiting for a session slot, ends sessions where the log says
// (idle by the log's clock, caps, markers) or where their handlers stop, and commits outputs and acks fenced.
// What it needs of the worker is `PartitionHost`.
import { drainOutputs } from '../core/drive';
import { type SessionHooks, kFinished, kSendNow, kTaken, kTakenEnd, type StreamKind } from '../core/protocol';
import type { StreamFn } from '../types';
import { type Clock, type ClockTimer, sleepOn } from './clock';
import { type Codec, encodeChecked } from './codec';
import {
  CheckpointTooLargeError,
  type OutputContent,
  FencedError,
  ReplayDivergedError,
  type SessionLimitError,
  TooManyTimersError,
  decodeError,
  sessionAgeError,
  sessionEventsError,
} from '../errors';
import type { LocalDelivery } from './local-delivery';
import { idBefore, idTime, logOrder } from './log-ids';
import type { HandlerFailure, OutputItem } from './reader';
import { type CheckpointCall, Checkpoints, Session, type Timer, serializeError, sidTime } from './session';
import { type Decision, type EndReason, type SessionLimits, deadline, decide, newState, take, wouldTake } from './session-rules';
import { sessionScope } from './trace-context';
import {
  type CommitResult,
  type Divergence,
  type InputEntry,
  type Lease,
  type OutputRecord,
  type PartitionLog,
  type Snapshot,
} from './transport';

/** The function's internal open, without its idle timer: a session's end must come from the log (registered symbol, core/function.ts). */
export const kOpen = Symbol.for('velo-stream.open');
export type Openable<I, O> = {
  [kOpen](signal: AbortSignal | undefined, idle: boolean, hooks?: SessionHooks): StreamKind<I, O>;
};

/** What a partition's run uses of its worker: the function and settings, the log, counters, and the worker's shared state. */
export interface PartitionHost<I, O> {
  readonly fn: StreamFn<I, O> & Openable<I, O>;
  readonly log: PartitionLog;
  /** Time and timers (production: `realClock`; a simulation: a virtual clock). */
  readonly clock: Clock;
  readonly ttl: number;
  readonly readCount: number;
  readonly codec: Codec<unknown>;
  readonly maxEventBytes: number;
  readonly maxSessionEvents: number;
  readonly maxSessionAge: number;
  /** Largest encoded checkpoint state (with its pending timers), bytes. */
  readonly maxCheckpointBytes: number;
  /** Most timers of a session not fired yet. */
  readonly maxSessionTimers: number;
  readonly checkReplay: boolean;
  /** Local delivery (`onOutput`), or null. */
  readonly delivery: LocalDelivery<O> | null;
  readonly counters: WorkerCounters;
  /** Live sessions of the worker, all partitions. */
  live: number;
  /** Redis' clock less this machine's, ms (ticks are set from it). */
  clockOffset: number;
  /** This partition's share of `maxBufferedEvents`. */
  share(): number;
  report(error: unknown): void;
  /** The partition was lost (fenced, or its lease ran out). */
  lose(run: PartitionRun<I, O>): void;
  /** Resolves when the partition's log may have more after `tail`. */
  idle(run: PartitionRun<I, O>, tail: string): Promise<void>;
  wakeIdle(partition: number): void;
  /** A session of this worker ended: held entries of every partition may now get a slot. */
  notifySessionEnded(): void;
}

/** The worker's counters (`RedisWorkerStats` reads them). */
export interface WorkerCounters {
  acquired: number;
  lost: number;
  fenced: number;
  released: number;
  trimmed: number;
  trimmedOutputs: number;
  replayed: number;
  replayedSessions: number;
  outputs: number;
  errors: number;
  capped: number;
  /** Ticks written (`PartitionRun.#tick`). */
  ticks: number;
  handedOn: number;
  diverged: number;
  /** Checkpoints committed (the latest of a session per commit). */
  checkpoints: number;
  /** Sessions started from a checkpoint. */
  restored: number;
  /** Timers' wake-ups written into the input (`ctx.wakeAt`). */
  wakeups: number;
}

/** Outputs and acks waiting for a commit, held per partition before the outbox makes sessions wait. */
const OUTBOX_LIMIT = 1024;
/**
 * Entries held in memory for a session slot per partition, in reads (readCount): past it, they are left in the
 * pending list and read again by id (`PartitionRun.reread`).
 */
const HELD_BATCHES = 64;
/** Held entries delivered between two turns of the event loop given by `drainHeld`. */
const DRAIN_STEPS_PER_TURN = 256;
/** Entries per read of the pending list again (`reread`), at least: bounded by the partition's share. */
const REREAD_COUNT = 1024;
/** Outputs per fenced commit call. */
const COMMIT_BATCH = 512;
/** Node's longest timer delay, ms (2^31 - 1). */
export const MAX_TIMER_MS = 2_147_483_647;
/** Wait before retrying after a non-fencing error, ms. */
export const RETRY_MS = 100;
/**
 * A partition at its share of `maxBufferedEvents` learns that a handler took events at the handler's next
 * output or end; one that takes events without either is found by re-checking, first after this (ms),
 * then twice as long each time, up to BUDGET_RECHECK_MAX_MS.
 */
const BUDGET_RECHECK_MS = 5;
const BUDGET_RECHECK_MAX_MS = 200;

/** What became of an entry given to `PartitionRun.#deliver`. */
const enum Delivery {
  /** Sent to its session (or consumed: a marker, a trimmed entry). */
  Done,
  /** It needs a new session, and `maxConcurrent` sessions are open. */
  NoSlot,
  /** An earlier entry of its key must be delivered first. */
  Behind,
}

/** How `PartitionRun.#drainKey` left a key's held entries. */
const enum KeyDrain {
  /** None left, or (only keys with a live session) its session is gone. */
  Done,
  /** One needs a session slot, and none is free. */
  NoSlot,
  /** The partition stops. */
  Stopped,
}

/** What became of an entry read again from the pending list (`PartitionRun.#redeliver`). */
const enum Redelivery {
  /** Delivered or held. */
  Done,
  /** Held entries are at their bound: it waits on in the pending list. */
  NoRoom,
  /** As NoRoom, and it needed a new session while `maxConcurrent` sessions are open. */
  NoRoomNoSlot,
}

/**
 * A key whose entries were read past the bound of held entries and not kept: they wait in the pending list,
 * and every entry of the key read after them joins them (its later entries must not pass them). `after` is
 * the last of the key's entries handled; those after it, up to `last`, are read again by id (`reread`).
 */
interface Spilled {
  after: string;
  last: string;
  /**
   * The ids of the key's entries after `after`, in log order, while there are at most SPILLED_IDS: they are read
   * again exactly, by id. Null past that: the key's entries are found by a pass over the pending list.
   */
  ids: string[] | null;
}

/** Ids kept per key whose entries wait in the pending list (a small record per key; past it, passes find them). */
const SPILLED_IDS = 64;

type OutboxItem = { output: OutputRecord } | { acks: string[]; ended?: string; lastSeq?: number; checkpoint?: Snapshot };

/** An event of its key (not a close marker, a wake-up, or an entry trimmed away while pending). */
function isEvent(entry: InputEntry): boolean {
  return entry.close === undefined && entry.wake === undefined && entry.payload !== undefined;
}

function decodedOutput<O>(codec: Codec<O>, o: OutputRecord): OutputContent<O> {
  if (o.error !== undefined) return { error: JSON.parse(o.error) as HandlerFailure };
  const payload = o.payload ?? '';
  return { value: codec.decode(typeof payload === 'string' ? Buffer.from(payload) : payload) };
}

export class PartitionRun<I, O> {
  readonly sessions = new Map<string, Session<I, O>>();
  /** Sessions whose marker was read, until their acks are queued: the key's next session waits for it. */
  readonly finishing = new Map<string, Promise<void>>();
  readonly #outbox: OutboxItem[] = [];
  #outputsQueued = 0;
  #flushing: Promise<void> | null = null;
  /** Commits made under this lease (their `serial`). */
  #serial = 0;
  readonly #room: (() => void)[] = [];
  /** Set when the pump must stop reading. */
  stopping = false;
  /** Set when this worker stops serving the partition: sessions make no more outputs, and none is acked. */
  dropped = false;
  /** Set when the partition was lost: what is queued is thrown away. */
  #discard = false;
  /** Sessions whose handler has not finished (live, or ending after their marker). */
  readonly #running = new Set<Session<I, O>>();
  /** Entries of keys waiting for a session slot (`maxConcurrent`), per key in log order. */
  readonly #held = new Map<string, InputEntry[]>();
  #heldCount = 0;
  /** Checkpoints of sessions the last owner left, per key, until their session is opened again (`#open`). */
  readonly #snapshots = new Map<string, Snapshot>();
  /** Keys whose entries wait in the pending list only (read past the held bound), in the order they were left. */
  readonly #spilled = new Map<string, Spilled>();
  #rereading = false;
  #rereadAgain = false;
  #draining = false;
  /** Entries `#drainKey` handled, for its yields to the event loop. */
  #drainSteps = 0;
  #drainAgain = false;
  /** The held entry drainHeld is delivering (out of its list meanwhile). */
  #drainingEntry: InputEntry | null = null;
  /**
   * This partition's part of `maxBufferedEvents`: entries reserved for a read in flight, read and not yet
   * dispatched, and entries delivered to sessions whose handlers have not taken them (their `sent`).
   * Held entries are not in it. An upper bound, lowered by `reconcile()`.
   */
  buffered = 0;
  /** Sessions without hooks with entries in `sent` (their handlers' takes are counted by `reconcile`). */
  readonly #holding = new Set<Session<I, O>>();
  /** Waiting for room in this partition's share (the pump, drainHeld). */
  readonly #budgetWaiters = new Set<() => void>();
  replayDone = false;
  /** Redis' time of the latest entry read from the partition, ms: how far the log's clock has gone. */
  logTime = 0;
  /** The partition's tick (`#tickFor`): its timer, the deadline it is set for, and a write in flight. */
  #tickTimer: ClockTimer | null = null;
  #tickDeadline = Infinity;
  #ticking = false;
  /**
   * The latest deadline whose tick was due while another was being written (0: none): once that one is written,
   * another is, unless its id passed this already (else nothing would move the log's clock past it).
   */
  #tickAgain = 0;
  /**
   * Redis' time of the last tick written (its id), ms. Until the pump reads it back, a deadline at or before it
   * needs no tick of its own: reading that one passes it. (Without this, every pass over the sessions while the
   * pump was still behind, on a backlog, wrote another tick.)
   */
  #tickWritten = 0;
  validUntil: number;
  /** When the lease's last successful renewal (or its grant) was sent: the next is due `ttl/3` after it. */
  renewedAt: number;
  /** A renewal is in flight. */
  renewing = false;
  lastTrim: number;
  /** Undelivered entries at the last measure. */
  lag = 0;
  /** Age of the oldest pending entry at the last measure, ms. */
  pinned = 0;
  readonly pumped: Promise<void>;
  /** The caps the session rule applies. */
  readonly #limits: SessionLimits;

  constructor(
    readonly worker: PartitionHost<I, O>,
    readonly lease: Lease,
    grantedAt: number,
  ) {
    this.#limits = {
      idleTimeout: worker.fn.config.idleTimeout,
      maxSessionAge: worker.maxSessionAge,
      maxSessionEvents: worker.maxSessionEvents,
      maxSessionTimers: worker.maxSessionTimers,
    };
    this.validUntil = grantedAt + worker.ttl;
    this.renewedAt = grantedAt;
    this.lastTrim = grantedAt;
    this.pumped = this.#pump().catch((error: unknown) => {
      worker.report(error);
      worker.lose(this);
    });
  }

  get partition(): number {
    return this.lease.partition;
  }

  async #pump(): Promise<void> {
    const w = this.worker;
    // Where pending entries are read from: the start (a takeover replays the last owner's), or after the last
    // entry dispatched (a read whose reply was lost may have made entries pending that never arrived here).
    // null: new entries.
    let pendingFrom: string | null = '0-0';
    let last = '0-0';
    if (!(await this.#loadSnapshots())) return;
    while (!this.stopping) {
      // Room in this partition's share first, reserved for the read (drainHeld takes from the same share).
      const count = await this.#reserve(w.readCount);
      if (count === 0) return;
      let read;
      try {
        read = await w.log.read(this.lease, pendingFrom ?? '>', count);
      } catch (error) {
        this.buffered -= count;
        if (this.#failed(error)) return;
        pendingFrom = last;
        await sleepOn(this.worker.clock, RETRY_MS);
        continue;
      }
      this.buffered -= count - read.entries.length;
      if (read.entries.length === 0) {
        if (pendingFrom !== null) {
          pendingFrom = null;
          if (!this.replayDone) {
            this.replayDone = true;
            for (const s of this.sessions.values()) this.#armAge(s);
            this.#redecide();
          }
          continue;
        }
        await w.idle(this, read.tail);
        continue;
      }
      if (!this.replayDone) w.counters.replayed += read.entries.length;
      last = read.entries[read.entries.length - 1].id;
      if (pendingFrom !== null) pendingFrom = last;
      let rereadable = false;
      for (const entry of read.entries) {
        if (this.stopping) return;
        this.logTime = Math.max(this.logTime, idTime(entry.id));
        // Synchronous unless the entry must wait (a full session input, a session still finishing): no
        // microtask per entry on the way.
        const dispatched = this.#dispatch(entry);
        rereadable = (typeof dispatched === 'boolean' ? dispatched : await dispatched) || rereadable;
      }
      this.#redecide();
      if (rereadable) this.reread().catch((error: unknown) => w.report(error));
      // A short read took all there was: wait for more after its last entry rather than ask again (at live
      // rates, asking again was one more fenced read, an empty one, per wake-up).
      if (pendingFrom === null && read.entries.length < count) await w.idle(this, last);
    }
  }

  /**
   * Before the replay: the checkpoints of the sessions the last owner left. Each session is started again from
   * its snapshot now if a slot is free (it may have no entry left to replay, and must still end where the log
   * says), else when its key's next entry needs it, or when a slot frees (`drainHeld`). False once the
   * partition stops.
   */
  async #loadSnapshots(): Promise<boolean> {
    for (;;) {
      if (this.stopping) return false;
      try {
        for (const snapshot of await this.worker.log.snapshots(this.lease)) this.#snapshots.set(snapshot.key, snapshot);
        break;
      } catch (error) {
        if (this.#failed(error)) return false;
        await sleepOn(this.worker.clock, RETRY_MS);
      }
    }
    this.#restoreWaiting();
    return true;
  }

  /** Starts the sessions whose snapshots wait, while slots are free. */
  #restoreWaiting(): void {
    for (const key of [...this.#snapshots.keys()]) {
      if (this.stopping || this.sessions.has(key) || this.finishing.has(key)) continue;
      if (this.#open(key, '') === undefined) return;
    }
  }

  /**
   * Takes up to `want` of this partition's share of `maxBufferedEvents` (into `buffered`), waiting while none
   * is free. Resolves with how much it took: 0 once the partition stops.
   */
  async #reserve(want: number): Promise<number> {
    let delay = BUDGET_RECHECK_MS;
    for (;;) {
      if (this.stopping) return 0;
      let free = this.worker.share() - this.buffered;
      if (free <= 0) {
        this.reconcile();
        free = this.worker.share() - this.buffered;
      }
      if (free > 0) {
        const n = Math.min(free, want);
        this.buffered += n;
        return n;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          this.worker.clock.clearTimeout(timer);
          this.#budgetWaiters.delete(done);
          resolve();
        };
        const timer = this.worker.clock.setTimeout(done, delay);
        this.#budgetWaiters.add(done);
      });
      delay = Math.min(delay * 2, BUDGET_RECHECK_MAX_MS);
    }
  }

  /** Wakes whatever waits for room in the share (a handler may have taken events; the share may have grown). */
  budgetFreed(): void {
    for (const wake of [...this.#budgetWaiters]) wake();
  }

  /** Takes out of the share the entries each session without hooks has taken since (the others' are counted as given). */
  reconcile(): void {
    for (const s of this.#holding) {
      this.#trimSent(s);
      if (s.sent.length === 0) this.#holding.delete(s);
    }
  }

  /** Drops from `sent` the entries the handler of a session without hooks has taken. */
  #trimSent(s: Session<I, O>): void {
    const taken = Math.min(s.stream[kTaken]() - s.sentBase, s.given);
    if (taken <= 0) return;
    s.sent.splice(0, taken);
    s.given -= taken;
    s.sentBase += taken;
    this.buffered -= taken;
  }

  /** True if the error ended this partition's ownership; otherwise it is reported and the caller retries. */
  #failed(error: unknown): boolean {
    if (this.dropped) return true;
    if (error instanceof FencedError) {
      this.worker.counters.fenced++;
      this.worker.lose(this);
      return true;
    }
    this.worker.report(error);
    return false;
  }

  /**
   * Delivers the entry (counted in `buffered`), or holds it behind the key's held entries, or, past the bound
   * of held entries, leaves it in the pending list. Never waits for a session to end, so the partition goes on
   * being read: close markers behind held entries are reached, and sessions end. True if the entry joined
   * entries of a key with a live session that wait in the pending list (a `reread` can deliver them now).
   */
  #dispatch(entry: InputEntry): boolean | Promise<boolean> {
    const spilled = this.#spilled.get(entry.key);
    if (spilled !== undefined) {
      this.buffered--;
      spilled.last = entry.id;
      if (spilled.ids !== null) {
        if (spilled.ids.length < SPILLED_IDS) spilled.ids.push(entry.id);
        else spilled.ids = null;
      }
      return this.sessions.has(entry.key);
    }
    if (this.#held.has(entry.key)) {
      this.buffered--;
      this.#holdOrSpill(entry);
      return false;
    }
    const delivered = this.#deliver(entry);
    if (typeof delivered === 'number') return this.#undelivered(entry, delivered);
    return delivered.then((d) => this.#undelivered(entry, d));
  }

  /** After `#deliver`: an entry it could not deliver is held (or left in the pending list). False: nothing to read again. */
  #undelivered(entry: InputEntry, delivered: Delivery): false {
    if (delivered === Delivery.Done) return false;
    this.buffered--;
    this.#holdOrSpill(entry);
    if (delivered === Delivery.Behind) this.drainHeld().catch((error: unknown) => this.worker.report(error));
    return false;
  }

  /** Holds the entry, or past the bound of held entries leaves it (and its key's later entries) in the pending list. */
  #holdOrSpill(entry: InputEntry): void {
    if (this.#heldCount < this.worker.readCount * HELD_BATCHES) this.#hold(entry);
    else this.#spilled.set(entry.key, { after: idBefore(entry.id), last: entry.id, ids: [entry.id] });
  }

  /**
   * Reads the entries left in the pending list again, by id, from the earliest, and hands each key's on in log
   * order while sessions can open and held entries have room; a key that cannot go on keeps the rest of its
   * entries there until the next pass. Runs when a session ends, after held entries were delivered, and when
   * entries of a live session were left there.
   */
  async reread(): Promise<void> {
    if (this.#rereading) {
      this.#rereadAgain = true;
      return;
    }
    this.#rereading = true;
    try {
      do {
        this.#rereadAgain = false;
        await this.#rereadPass();
      } while (this.#rereadAgain && !this.stopping);
    } finally {
      this.#rereading = false;
      // Sessions given entries read again may be past their ends by the log's clock already.
      this.#redecide('reread');
    }
  }

  async #rereadPass(): Promise<void> {
    if (this.#spilled.size === 0) return;
    await this.#rereadByIds();
    const w = this.worker;
    // The keys whose ids were not all kept: a pass over the pending list from the earliest finds their entries.
    let from: string | null = null;
    let scanned = 0;
    for (const { after, ids } of this.#spilled.values()) {
      if (ids !== null) continue;
      scanned++;
      if (from === null || logOrder(after, from) < 0) from = after;
    }
    // Keys that could not go on in this pass: their later entries wait for the next.
    const stuck = new Set<string>();
    while (from !== null && !this.stopping && stuck.size < scanned) {
      // Reads of the pending list go further than the pump's: most of what they find is passed over at once
      // (entries of other keys, handled already), so a pass that looks for a few keys' entries scattered over a
      // long backlog takes fewer round trips (at readCount 4, a pass was a round trip per 4 entries of the log).
      const count = await this.#reserve(Math.max(w.readCount, REREAD_COUNT));
      if (count === 0) return;
      let read;
      try {
        read = await w.log.read(this.lease, from, count);
      } catch (error) {
        this.buffered -= count;
        if (this.#failed(error)) return;
        await sleepOn(this.worker.clock, RETRY_MS);
        continue;
      }
      this.buffered -= count - read.entries.length;
      if (read.entries.length === 0) return;
      from = read.entries[read.entries.length - 1].id;
      for (const entry of read.entries) {
        const spilled = this.#spilled.get(entry.key);
        // Handled already (delivered, held, or a marker read), read by id instead, or behind an entry of its key
        // that cannot go on.
        if (
          spilled === undefined ||
          spilled.ids !== null ||
          logOrder(entry.id, spilled.after) <= 0 ||
          stuck.has(entry.key) ||
          this.stopping
        ) {
          this.buffered--;
          continue;
        }
        const redelivered = await this.#redeliver(entry);
        if (redelivered !== Redelivery.Done) {
          stuck.add(entry.key);
          // Held entries are at their bound and no session slot is free: of the keys read again, only those
          // with a live session could go on. With none, stop here rather than read the rest of the log (a pass
          // per ended session would otherwise read it all each time).
          if (redelivered === Redelivery.NoRoomNoSlot && !this.#spilledLive()) return;
          continue;
        }
        if (this.#spilled.get(entry.key) !== spilled) continue;
        if (spilled.last === entry.id) this.#spilled.delete(entry.key);
        else spilled.after = entry.id;
      }
    }
  }

  /**
   * Reads again, by id, the entries of keys whose ids are known: first keys with a live session (they need no
   * slot), then as many more keys as there are free session slots, all their reads sent at once; each key's
   * entries go on in log order until one cannot (no slot, no room), and the rest wait for the next pass.
   */
  async #rereadByIds(): Promise<void> {
    const w = this.worker;
    const live = this.#keysBoth(this.#spilled, this.sessions).filter((key) => this.#spilled.get(key)?.ids != null);
    const chosen = new Set(live);
    let free = w.fn.config.maxConcurrent - w.live;
    for (const [key, spilled] of this.#spilled) {
      if (free <= 0) break;
      if (spilled.ids === null || chosen.has(key)) continue;
      chosen.add(key);
      free--;
    }
    if (chosen.size === 0) return;
    // Room in the share for what is read, key by key while it lasts.
    const want = [...chosen].map((key) => [key, [...(this.#spilled.get(key)?.ids ?? [])]] as const);
    const total = want.reduce((n, [, ids]) => n + ids.length, 0);
    let room = await this.#reserve(total);
    if (room === 0) return;
    const batch: (readonly [string, string[]])[] = [];
    for (const [key, ids] of want) {
      if (room === 0) break;
      const take = ids.slice(0, room);
      room -= take.length;
      batch.push([key, take]);
    }
    let read: InputEntry[];
    try {
      read = await w.log.entries(
        this.lease,
        batch.flatMap(([, ids]) => ids),
      );
    } catch (error) {
      this.buffered -= batch.reduce((n, [, ids]) => n + ids.length, 0);
      if (this.#failed(error)) return;
      await sleepOn(this.worker.clock, RETRY_MS);
      this.#rereadAgain = true;
      return;
    }
    let at = 0;
    for (const [key, ids] of batch) {
      const entries = read.slice(at, at + ids.length);
      at += ids.length;
      let stuck = false;
      for (const got of entries) {
        const spilled = this.#spilled.get(key);
        // (An entry gone from the log comes back without its key: it is this key's, and is only acked.)
        const entry: InputEntry = got.key === '' ? { id: got.id, key } : got;
        if (stuck || this.stopping || spilled === undefined || logOrder(entry.id, spilled.after) <= 0) {
          this.buffered--;
          continue;
        }
        const redelivered = await this.#redeliver(entry);
        if (redelivered !== Redelivery.Done) {
          stuck = true;
          continue;
        }
        if (this.#spilled.get(key) !== spilled) continue;
        if (spilled.last === entry.id) this.#spilled.delete(key);
        else {
          spilled.after = entry.id;
          if (spilled.ids !== null) {
            let drop = 0;
            while (drop < spilled.ids.length && logOrder(spilled.ids[drop], entry.id) <= 0) drop++;
            spilled.ids.splice(0, drop);
          }
        }
      }
    }
  }

  /** Whether a key whose entries wait in the pending list has a live session (its entries can go to it). */
  #spilledLive(): boolean {
    const [small, large] =
      this.#spilled.size <= this.sessions.size ? [this.#spilled, this.sessions] : [this.sessions, this.#spilled];
    for (const key of small.keys()) if (large.has(key)) return true;
    return false;
  }

  /** A spilled entry (counted in `buffered`) delivered or held; else (no longer counted) it must wait on. */
  async #redeliver(entry: InputEntry): Promise<Redelivery> {
    const room = () => this.#heldCount < this.worker.readCount * HELD_BATCHES;
    if (this.#held.has(entry.key)) {
      this.buffered--;
      if (!room()) return Redelivery.NoRoom;
      this.#hold(entry);
      return Redelivery.Done;
    }
    const delivered = await this.#deliver(entry);
    if (delivered === Delivery.Done) return Redelivery.Done;
    this.buffered--;
    if (!room()) return delivered === Delivery.NoSlot ? Redelivery.NoRoomNoSlot : Redelivery.NoRoom;
    this.#hold(entry);
    if (delivered === Delivery.Behind) this.drainHeld().catch((error: unknown) => this.worker.report(error));
    return Redelivery.Done;
  }

  /**
   * Holds an entry (not counted in `buffered`) in its key's list, in log order: entries wait there for a
   * session slot, and entries a session's handler never took wait there for the key's next session.
   */
  #hold(entry: InputEntry): void {
    let list = this.#held.get(entry.key);
    if (list === undefined) this.#held.set(entry.key, (list = []));
    let i = list.length;
    while (i > 0 && logOrder(entry.id, list[i - 1].id) < 0) i--;
    list.splice(i, 0, entry);
    this.#heldCount++;
  }

  /** Whether the key has a held entry earlier in the log than `id` (it must be delivered first). */
  #heldBefore(key: string, id: string): boolean {
    const list = this.#held.get(key);
    if (list !== undefined && list.length > 0 && logOrder(list[0].id, id) < 0) return true;
    const draining = this.#drainingEntry;
    return draining !== null && draining.key === key && logOrder(draining.id, id) < 0;
  }

  /**
   * Delivers held entries, key by key in the order they were first held, each key's in log order, while
   * sessions can open and the partition's share has room; past the first key that finds no session slot, only
   * keys with a live session. Runs when a session of this worker has ended.
   */
  async drainHeld(): Promise<void> {
    if (this.#draining) {
      this.#drainAgain = true;
      return;
    }
    this.#draining = true;
    // Sessions waiting to be restored from their snapshots take free slots first (they were live before).
    if (this.#snapshots.size > 0) this.#restoreWaiting();
    try {
      do {
        this.#drainAgain = false;
        // Once a key found no session slot, only keys with a live session go on (their entries need none).
        let noSlot = false;
        for (const [key, list] of this.#held) {
          const drained = await this.#drainKey(key, list, false);
          if (drained === KeyDrain.Stopped) return;
          if (list.length === 0) this.#held.delete(key);
          // No session slot: this key waits for a session to end.
          if (drained === KeyDrain.NoSlot) {
            noSlot = true;
            break;
          }
        }
        if (noSlot && !(await this.#drainHeldOfLive())) return;
      } while (this.#drainAgain);
    } finally {
      this.#draining = false;
      // Sessions opened for held entries may be past their ends by the log's clock already: ending them now
      // frees their slots for the next held keys (on a backlog, at the pace of reading).
      this.#redecide('drain');
    }
    // Held entries went to sessions: entries left in the pending list may now fit.
    if (this.#spilled.size > 0 && !this.stopping) await this.reread();
  }

  /**
   * `drainHeld` once no session slot is free: the held entries of keys with a live session (they need no slot),
   * found through the smaller of the two maps (a backlog holds entries of far more keys than live sessions).
   * False once the partition stops.
   */
  async #drainHeldOfLive(): Promise<boolean> {
    for (const key of this.#keysBoth(this.#held, this.sessions)) {
      const list = this.#held.get(key);
      if (list === undefined) continue;
      if ((await this.#drainKey(key, list, true)) === KeyDrain.Stopped) return false;
      if (list.length === 0) this.#held.delete(key);
    }
    return true;
  }

  /**
   * Delivers a key's held entries in log order, each back into the share first, until none is left, one finds
   * no session slot, or (`whileLive`) the key's session is gone.
   */
  async #drainKey(key: string, list: InputEntry[], whileLive: boolean): Promise<KeyDrain> {
    while (list.length > 0 && (!whileLive || this.sessions.has(key))) {
      // A long drain runs in microtasks: it gives the event loop (timers, renewals, replies) a turn now and then.
      if (++this.#drainSteps % DRAIN_STEPS_PER_TURN === 0)
        await new Promise<void>((resolve) => this.worker.clock.setImmediate(resolve));
      if ((await this.#reserve(1)) === 0) return KeyDrain.Stopped;
      if (this.stopping) {
        this.buffered--;
        return KeyDrain.Stopped;
      }
      // Taken out first: a session ending meanwhile may put earlier entries of the key in front of it.
      const entry = list.shift() as InputEntry;
      this.#heldCount--;
      this.#drainingEntry = entry;
      let delivered: Delivery;
      try {
        delivered = await this.#deliver(entry);
      } finally {
        this.#drainingEntry = null;
      }
      if (delivered === Delivery.Done) continue;
      this.buffered--;
      this.#hold(entry);
      // (Behind: an earlier entry of the key came in front; it goes next.)
      if (delivered === Delivery.NoSlot) return KeyDrain.NoSlot;
    }
    return KeyDrain.Done;
  }

  /** The keys in both maps, in the order of the smaller one (a copy: delivering changes both). */
  #keysBoth(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): string[] {
    const [small, large] = a.size <= b.size ? [a, b] : [b, a];
    const keys: string[] = [];
    for (const key of small.keys()) if (large.has(key)) keys.push(key);
    return keys;
  }

  get heldCount(): number {
    return this.#heldCount;
  }

  /** Keys whose entries wait in the pending list (read past the bound of held entries). */
  get spilledKeys(): number {
    return this.#spilled.size;
  }

  /**
   * Delivers an entry counted in `buffered` (an event stays counted, in its session's `sent`, until its handler
   * takes it). Else, with the entry still counted: `NoSlot` if it needs a new session and `maxConcurrent`
   * sessions are live on this worker, `Behind` if an earlier entry of its key is held. Nothing is decided here
   * for a session whose handler is busy: the rule is applied when it asks for its next input (`#ask`).
   */
  #deliver(entry: InputEntry): Delivery | Promise<Delivery> {
    const key = entry.key;
    if (entry.close !== undefined) {
      this.buffered--;
      const s = this.sessions.get(key);
      if (s !== undefined && s.sid === entry.close) {
        // A marker of the session only moves the log's clock (the rule ends the session by it, `#redecide`); it
        // is acked with the session's entries. (A close marker with no reason, of an older version, the same.)
        this.#marker(s, entry.id);
        // An age marker that came too early by its own id (clocks differ): another once the age is due by it.
        const early = s.start + this.worker.maxSessionAge + 1 - idTime(entry.id);
        if (entry.reason === 'age' && early > 0) {
          s.ageMarked = false;
          this.#armAge(s, early);
        }
      } else this.#queue({ acks: [entry.id] }); // a marker for a session that has ended already
      return Delivery.Done;
    }
    if (entry.wake !== undefined) return this.#deliverWake(entry, entry.wake);
    // Trimmed away while pending (never by velo-stream's own trimming): nothing to deliver.
    if (entry.payload === undefined) {
      this.buffered--;
      this.#queue({ acks: [entry.id] });
      return Delivery.Done;
    }
    const s = this.sessions.get(key);
    if (s !== undefined) return this.#send(s, entry);
    const previous = this.finishing.get(key);
    return previous === undefined ? this.#deliverNew(entry) : previous.then(() => this.#deliverNew(entry));
  }

  /** Records a marker read for the session (acked with its entries, never an event of it). */
  #marker(s: Session<I, O>, id: string): void {
    s.ids.push(id);
    (s.markers ??= new Set()).add(id);
  }

  /**
   * A timer's wake-up: it only moves the log's clock (its timer fires by the rule, at its due time, if its
   * session lives to it); acked with its session's entries (so a replay reads it again), or at once if that
   * session is gone. A session waiting to be restored from its snapshot is started for it.
   */
  #deliverWake(entry: InputEntry, wake: string): Delivery | Promise<Delivery> {
    const space = wake.lastIndexOf(' ');
    const sid = wake.slice(0, space);
    const s = this.sessions.get(entry.key);
    if (s === undefined && this.#snapshots.get(entry.key)?.sid === sid) return this.#deliverNew(entry);
    this.buffered--;
    if (s !== undefined && s.sid === sid) this.#marker(s, entry.id);
    else this.#queue({ acks: [entry.id] });
    return Delivery.Done;
  }

  /** `#deliver` of an entry that opens its key's next session (the previous one, if any, has finished). */
  #deliverNew(entry: InputEntry): Delivery | Promise<Delivery> {
    if (this.stopping) return Delivery.Done;
    const key = entry.key;
    // The ending session's handler left entries before this one (they open the next session), or, while
    // this one waited, a delivery of an earlier entry did.
    if (this.sessions.has(key) || this.#heldBefore(key, entry.id)) return Delivery.Behind;
    const restoring = this.#snapshots.has(key);
    // A wake-up never opens a session of its own: dropped, unless it wakes the session about to be restored.
    if (entry.wake !== undefined && !restoring) return this.#deliverWake(entry, entry.wake);
    const s = this.#open(key, `${key}@${entry.id}`);
    if (s === undefined) return Delivery.NoSlot;
    if (restoring) return this.#deliver(entry);
    return this.#send(s, entry);
  }

  /**
   * Gives the entry to its key's live session: into its input ahead of a busy handler (a prefetch: the rule
   * decides when the handler asks), or, to a handler waiting for input, as the rule decides now. `Done` at once,
   * or once a full input took it.
   */
  #send(s: Session<I, O>, entry: InputEntry): Delivery | Promise<Delivery> {
    s.ids.push(entry.id);
    s.sent.push(entry);
    if (s.checkpoints?.attached !== true) this.#holding.add(s);
    if (s.scope !== undefined) s.scope.event(entry, !this.replayDone);
    if (s.poison !== null) return Delivery.Done;
    let value: unknown;
    try {
      value = this.worker.codec.decode(entry.payload as Buffer);
    } catch (error) {
      // Its input ends in front of it if the rule gets to it (`#giveEntry`); until then it, and every later entry
      // of the key, stays out of the stream.
      s.poison = entry;
      s.poisonError = decodeError(`The codec could not decode entry ${entry.id}`, error);
      return this.#woken(s);
    }
    if (s.waiting || s.outside.length > 0) {
      s.outside.push({ entry, value });
      return this.#woken(s);
    }
    const pushed = this.#push(s, value);
    return pushed === undefined ? Delivery.Done : pushed.then(() => Delivery.Done);
  }

  /** `#wake`, as a delivery. */
  #woken(s: Session<I, O>): Delivery | Promise<Delivery> {
    const woke = this.#wake(s);
    return woke === undefined ? Delivery.Done : woke.then(() => Delivery.Done);
  }

  /** Sends an event into the session's stream; waits while its input is full (the partition is not read meanwhile). */
  #push(s: Session<I, O>, value: unknown): Promise<void> | undefined {
    const sent = s.stream[kSendNow](value as I);
    if (sent === true) return undefined;
    // A send refused because the handler finished is fine: the entry, untaken, goes to the key's next session.
    s.sending = true;
    const sentIn = (): void => {
      s.sending = false;
    };
    return sent.then(sentIn, sentIn);
  }

  /**
   * The time of the key's next entry the session has not been given: the first of its input, or (none there) a
   * lower bound from the key's entries held, being drained, or left in the pending list; undefined: none known.
   */
  #nextTime(s: Session<I, O>): number | undefined {
    if (s.given < s.sent.length) return idTime(s.sent[s.given].id);
    let time: number | undefined;
    // Only events are inputs: a marker or a wake-up held behind the key's events (an ended session's, or this
    // one's) only moves the log's clock, and as the next entry it would end the session at its event cap.
    const held = this.#held.get(s.key)?.find(isEvent);
    if (held !== undefined) time = idTime(held.id);
    const draining = this.#drainingEntry;
    if (draining !== null && draining.key === s.key && isEvent(draining)) time = Math.min(time ?? Infinity, idTime(draining.id));
    const spilled = this.#spilled.get(s.key);
    if (spilled !== undefined) time = Math.min(time ?? Infinity, idTime(spilled.ids?.[0] ?? spilled.after));
    return time;
  }

  #decide(s: Session<I, O>): Decision {
    return decide(s.rule, this.#nextTime(s), this.logTime, this.#limits);
  }

  /**
   * Its handler asks for its next input (`SessionHooks.next`): the rule answers with a timer's payload, the entry
   * first in its stream (undefined: the stream gives it), or the end. Undefined with nothing in its stream: the
   * handler waits (`waiting`), and is answered when something new is known (`#wake`).
   */
  #ask(s: Session<I, O>): { value: unknown } | 'end' | undefined {
    if (this.dropped || s.failed || s.ended) return undefined;
    s.waiting = false;
    const d = this.#decide(s);
    if (d.kind === 'timer') return this.#giveTimer(s, d.timer);
    if (d.kind === 'end') {
      this.#end(s, d.reason, d.before);
      return 'end';
    }
    // (An entry known only held, or left in the pending list: the handler waits for its delivery.)
    return d.kind === 'entry' && s.sent.length > 0 ? this.#giveEntry(s) : undefined;
  }

  /**
   * The session's handler waits for input (or its stream has no hooks: its entries are decided as they come):
   * applies the rule again with what is known now, and gives the handler what it answers. Entries delivered
   * meanwhile then go into its stream behind it. A promise: a send waits for room in its input.
   */
  #wake(s: Session<I, O>): Promise<void> | undefined {
    const attached = s.checkpoints?.attached === true;
    while (s.waiting && !s.ended && !s.failed && !this.dropped) {
      const d = this.#decide(s);
      if (d.kind === 'wait') break;
      if (d.kind === 'end') {
        this.#end(s, d.reason, d.before);
        return undefined;
      }
      if (d.kind === 'timer') {
        const given = this.#giveTimer(s, d.timer);
        if (given === 'end') return undefined;
        s.waiting = false;
        void s.stream[kSendNow](given.value as I);
        break;
      }
      if (s.given >= s.sent.length) break;
      // (Given while its handler waits: outside its stream.)
      const given = this.#giveEntry(s);
      if (given === 'end') return undefined;
      const pushed = this.#push(s, given?.value);
      if (attached) {
        s.waiting = false;
        break;
      }
      if (pushed !== undefined) return pushed.then(() => this.#wake(s));
    }
    if (!attached || s.waiting || s.ended) return undefined;
    // Running again: entries delivered while it waited go into its stream, in order, up to one that cannot be decoded.
    while (s.outside.length > 0 && !s.ended) {
      const pushed = this.#push(s, (s.outside.shift() as { value: unknown }).value);
      if (pushed !== undefined) return pushed.then(() => this.#wake(s));
    }
    return undefined;
  }

  /** Gives the session its first timer (taken by the rule): its payload, or `'end'` if its codec cannot decode it. */
  #giveTimer(s: Session<I, O>, timer: Timer): { value: unknown } | 'end' {
    take(s.rule, timer.time, timer);
    this.#clearTimer(s, timer.id);
    s.wokenBefore.delete(timer.id);
    try {
      return { value: this.worker.codec.decode(typeof timer.payload === 'string' ? Buffer.from(timer.payload) : timer.payload) };
    } catch (error) {
      s.stop = {
        error: decodeError(`The codec could not decode timer ${timer.id} of session ${JSON.stringify(s.sid)}`, error),
        kind: 'decode',
      };
      this.#finish(s);
      return 'end';
    }
  }

  /**
   * Gives the session the next entry of its input (taken by the rule): its value if it is outside its stream
   * (delivered while its handler waited), undefined if in it, `'end'` if its codec could not decode it (the
   * session keeps it: its input ends there, with the decoding error).
   */
  #giveEntry(s: Session<I, O>): { value: unknown } | 'end' | undefined {
    const entry = s.sent[s.given];
    take(s.rule, idTime(entry.id));
    if (entry === s.poison) {
      // The session keeps it (acked with its entries): out of its input.
      s.sent.splice(s.given, 1);
      this.buffered--;
      s.stop = { error: s.poisonError as Error, kind: 'decode' };
      this.#finish(s);
      return 'end';
    }
    const outside = s.outside.length > 0 && s.outside[0].entry === entry ? s.outside.shift() : undefined;
    if (s.checkpoints?.attached === true) {
      // Taken now: out of the share.
      s.sent.shift();
      s.sentBase++;
      s.checkpoints.entries++;
      this.buffered--;
      if (this.#budgetWaiters.size > 0) this.budgetFreed();
    } else s.given++;
    return outside === undefined ? undefined : { value: outside.value };
  }

  /** The rule ended the session (`before`: the input it ends in front of, for the cap's error). */
  #end(s: Session<I, O>, reason: EndReason, before: 'timer' | 'entry' | undefined): void {
    if (reason !== 'idle') {
      const timer = s.rule.timers[0];
      const entry = s.sent[s.given] ?? this.#held.get(s.key)?.[0] ?? this.#drainingEntry;
      let what = `the log's clock (${this.logTime})`;
      let time = this.logTime;
      if (before === 'timer') {
        what = `its timer ${timer.id}` + (reason === 'age' ? ` (due at ${timer.time})` : '');
        time = timer.time;
      } else if (before === 'entry' && entry?.key === s.key) {
        what = `entry ${entry.id}`;
        time = idTime(entry.id);
      }
      s.stop = {
        error: reason === 'age' ? this.#ageError(s, what, time) : this.#eventsError(s, what, before !== 'timer'),
        kind: 'cap',
      };
    }
    this.#finish(s);
  }

  /**
   * Applies the rule again to the sessions whose handlers wait for input (the log's clock moved), and sets the
   * partition's tick for the earliest idle end among those still waiting (`#tickFor`). A session whose key has
   * entries held, or left in the pending list, waits for their delivery (started here, unless the caller is
   * that delivery).
   */
  #redecide(caller?: 'drain' | 'reread'): void {
    if (this.stopping || this.dropped) return;
    let next = Infinity;
    let drain = false;
    let reread = false;
    for (const s of [...this.sessions.values()]) {
      if (!s.waiting || s.ended) continue;
      const woke = this.#wake(s);
      if (woke !== undefined) woke.catch((error: unknown) => this.worker.report(error));
      if (!s.waiting || s.ended) continue;
      next = Math.min(next, this.#tickTime(s));
      if (s.given < s.sent.length) continue;
      if (this.#held.has(s.key)) drain = true;
      else if (this.#spilled.has(s.key)) reread = true;
    }
    this.#tickFor(next);
    if (drain && caller !== 'drain') this.drainHeld().catch((error: unknown) => this.worker.report(error));
    if (reread && caller !== 'reread') this.reread().catch((error: unknown) => this.worker.report(error));
  }

  /**
   * When a tick should move the log's clock for a waiting session: its idle end (its age end has its marker, its
   * timers their wake-ups), or a timer whose wake-up an earlier owner wrote (not written again).
   */
  #tickTime(s: Session<I, O>): number {
    const end = deadline(s.rule, this.#limits);
    let time = end.reason === 'idle' ? end.time : Infinity;
    for (const timer of s.rule.timers) if (s.wokenBefore.has(timer.id)) time = Math.min(time, timer.time);
    return time;
  }

  /**
   * Sets the partition's tick for Redis' time `deadline` (Infinity: none needed). A tick is an entry the owner
   * writes into the partition (a close marker naming no session) once Redis' clock should have passed the
   * earliest deadline of its waiting sessions: read back, it moves the log's clock there, and the rule ends every
   * session it passes, however many. Only the replay of a lease's pending entries is left alone (the log decides
   * there). One tick is written at a time; if it came too early (clocks differ), the next is set from its id.
   */
  #tickFor(deadline: number): void {
    if (deadline === this.#tickDeadline || !this.replayDone) return;
    if (this.#tickTimer !== null) this.worker.clock.clearTimeout(this.#tickTimer);
    this.#tickTimer = null;
    this.#tickDeadline = deadline;
    if (deadline === Infinity || deadline <= this.#tickWritten) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, deadline - (this.worker.clock.now() + this.worker.clockOffset)));
    this.#tickTimer = this.worker.clock
      .setTimeout(() => {
        this.#tickTimer = null;
        this.#tickDeadline = Infinity;
        this.#tick(deadline);
      }, wait)
      .unref();
  }

  /** Writes a tick for `deadline`, or, while one is being written, another after it (`#tickAgain`). */
  #tick(deadline: number): void {
    if (this.stopping || this.dropped) return;
    if (this.#ticking) {
      this.#tickAgain = Math.max(this.#tickAgain, deadline);
      return;
    }
    this.#ticking = true;
    this.worker.log.markClose(this.lease, '', '').then(
      (id) => {
        this.#ticking = false;
        this.#tickWritten = Math.max(this.#tickWritten, idTime(id));
        // What Redis' clock read against this machine's when it wrote the tick.
        this.worker.clockOffset = idTime(id) - this.worker.clock.now();
        this.worker.counters.ticks++;
        const again = this.#tickAgain;
        this.#tickAgain = 0;
        if (again > this.#tickWritten) this.#tick(again);
      },
      async (error: unknown) => {
        this.#ticking = false;
        if (this.#failed(error)) return;
        await sleepOn(this.worker.clock, RETRY_MS);
        this.#tick(Math.max(deadline, this.#tickAgain));
      },
    );
  }

  /** The session's `maxSessionEvents` error, met at its event `what` (an entry, which opens the key's next session, or a timer). */
  #eventsError(s: Session<I, O>, what: string, entry: boolean): SessionLimitError {
    const max = this.worker.maxSessionEvents;
    const after = entry ? `, and ${what} opens the key's next session` : ` before ${what}, which never fires`;
    return sessionEventsError(max, `Session ${JSON.stringify(s.sid)} reached maxSessionEvents (${max}): it ended${after}`);
  }

  /** The session's `maxSessionAge` error, met at its event `what` (an entry or a timer) at Redis' time `time`. */
  #ageError(s: Session<I, O>, what: string, time: number): SessionLimitError {
    const max = this.worker.maxSessionAge;
    return sessionAgeError(
      max,
      `Session ${JSON.stringify(s.sid)} reached maxSessionAge (${max} ms): ${what} is ${time - s.start} ms after its first, so the session ended there`,
    );
  }

  /**
   * The key's new session, or undefined while `maxConcurrent` sessions of the function are open. A key with a
   * snapshot the last owner left gets its session back from it (its sid, seq and state), not a new one.
   */
  #open(key: string, sid: string): Session<I, O> | undefined {
    const w = this.worker;
    // This worker's own sessions fill the function's slots: no open to try (and no StreamLimitError to build, a
    // stack trace each) while they do. On a backlog, every session that ends asks each partition for a slot.
    if (w.live >= w.fn.config.maxConcurrent) return undefined;
    const snapshot = this.#snapshots.get(key);
    let restored: unknown;
    let broken: unknown;
    if (snapshot !== undefined) {
      sid = snapshot.sid;
      try {
        if (snapshot.unreadable !== undefined) throw snapshot.unreadable as Error;
        const state = snapshot.state;
        restored = w.codec.decode(typeof state === 'string' ? Buffer.from(state) : state);
        // Its timers' payloads are part of it: one that cannot be decoded makes the whole unreadable.
        for (const [, , payload] of snapshot.pending ?? [])
          w.codec.decode(typeof payload === 'string' ? Buffer.from(payload) : payload);
      } catch (error) {
        broken = decodeError(`The codec could not decode the checkpoint of session ${JSON.stringify(sid)}`, error);
      }
    }
    // The rule's state: the checkpoint's, restored, or a new session's.
    const rule = newState(
      sidTime(sid),
      snapshot === undefined || broken !== undefined
        ? undefined
        : {
            last: snapshot.lastTime,
            events: snapshot.events,
            timerCount: snapshot.timers ?? 0,
            timers: (snapshot.pending ?? []).map(([id, time, payload]) => ({ id, time, payload })),
          },
    );
    const checkpoints = new Checkpoints(
      restored,
      rule,
      this.#limits,
      () => new TooManyTimersError(sid, w.maxSessionTimers),
      (state, pending) => this.#encodeCheckpoint(sid, state, pending),
      (payload) => encodeChecked(w.codec, payload, w.maxEventBytes, `wake-up payload of session ${JSON.stringify(sid)}`),
    );
    let stream: StreamKind<I, O>;
    // Traced (a tracer provider is registered): the session's span is a root span, linked to its events' producers.
    const scope = sessionScope();
    try {
      stream =
        scope === undefined
          ? w.fn[kOpen](undefined, false, checkpoints)
          : scope.open(() => w.fn[kOpen](undefined, false, checkpoints));
    } catch (error) {
      if ((error as { code?: unknown })?.code === 'ERR_VELO_STREAM_LIMIT') return undefined;
      throw error;
    }
    const s = new Session<I, O>(key, sid, stream, rule);
    if (scope?.session !== undefined) {
      s.scope = scope;
      scope.taken = () => stream[kTaken]();
      // Resumed: opened again by a new owner, from its checkpoint or by replaying the last owner's entries.
      const resumed = snapshot !== undefined || !this.replayDone;
      scope.session.setAttributes({
        'velo.partition': this.partition,
        'velo.resumed': resumed,
        'velo.restored': snapshot !== undefined,
      });
    }
    s.checkpoints = checkpoints;
    // Without hooks (a pipe), its handler never asks: its entries are decided as they come (it has no timers).
    // With them, it may be waiting already (its handler ran up to its first await at the open).
    s.waiting = !checkpoints.attached || checkpoints.waits > 0;
    checkpoints.onWaiting = () => {
      s.waiting = true;
      const time = this.#tickTime(s);
      if (time < this.#tickDeadline) this.#tickFor(time);
    };
    checkpoints.onNext = () => this.#ask(s);
    checkpoints.onCall = () => this.#checkpointsDue(s);
    if (snapshot !== undefined) {
      this.#snapshots.delete(key);
      w.counters.restored++;
      s.restored = true;
      s.seq = snapshot.seq;
    }
    if (!this.replayDone) w.counters.replayedSessions++;
    this.sessions.set(key, s);
    this.#running.add(s);
    w.live++;
    s.forwarded = this.#forward(s);
    if (this.replayDone) this.#armAge(s);
    // Calls its handler made before the session existed (it runs up to its first await at the open), and the
    // timers it was restored with.
    this.#checkpointsDue(s);
    checkpoints.onTimer = (timer) => this.#armTimer(s, timer);
    for (const timer of rule.timers) this.#armTimer(s, timer);
    if (broken !== undefined) {
      // Its failure comes after every output written (an earlier owner may have written some after the
      // checkpoint): with the seq after the checkpoint's, the commit would skip it as written before.
      s.seq = Math.max(s.seq, snapshot?.written ?? 0);
      w.report(broken);
      this.#fail(s, broken);
    }
    return s;
  }

  /**
   * Sets a Node timeout for the session's timer: when Redis' clock should have reached its time (or `after` ms,
   * when Redis said it was early), `#fire` writes its wake-up.
   */
  #armTimer(s: Session<I, O>, timer: Timer, after?: number): void {
    if (this.dropped || s.forwardDone) return;
    const wait = after ?? Math.max(0, timer.time - (this.worker.clock.now() + this.worker.clockOffset));
    this.worker.clock.clearTimeout(s.wakeTimeouts.get(timer.id));
    s.wakeTimeouts.set(timer.id, this.worker.clock.setTimeout(() => this.#fire(s, timer), Math.min(MAX_TIMER_MS, wait)).unref());
  }

  /**
   * Writes the timer's wake-up into the partition's input (fenced, once per `(sid, timer)`): read back, it is
   * delivered to the session at that place of the log, on every replay too. One written before (by an earlier
   * owner, or by this one before a replay made the timer again) is not written again.
   */
  #fire(s: Session<I, O>, timer: Timer): void {
    s.wakeTimeouts.delete(timer.id);
    if (this.dropped || s.forwardDone || !s.rule.timers.includes(timer)) return;
    this.worker.log.wake(this.lease, s.key, s.sid, timer.id, timer.time, timer.payload).then(
      (written) => {
        if (typeof written === 'number') return this.#armTimer(s, timer, Math.max(1, written));
        if (written !== '') {
          this.worker.counters.wakeups++;
          return;
        }
        // An earlier owner wrote it (read back before the session's checkpoint, maybe): a tick moves the log's
        // clock to it instead, unless the session took it while the reply was on its way (a tick set for it then
        // would replace the one its idle end needs, and be passed already: nothing would move the clock on).
        if (!s.rule.timers.includes(timer)) return;
        s.wokenBefore.add(timer.id);
        if (s.waiting && timer.time < this.#tickDeadline) this.#tickFor(timer.time);
      },
      async (error: unknown) => {
        if (this.#failed(error)) return;
        await sleepOn(this.worker.clock, RETRY_MS);
        this.#fire(s, timer);
      },
    );
  }

  #clearTimer(s: Session<I, O>, id: number): void {
    this.worker.clock.clearTimeout(s.wakeTimeouts.get(id));
    s.wakeTimeouts.delete(id);
  }

  /** Stops the session's timers (it ended, or the partition is dropped). */
  #clearTimers(s: Session<I, O>): void {
    for (const timeout of s.wakeTimeouts.values()) this.worker.clock.clearTimeout(timeout);
    s.wakeTimeouts.clear();
  }

  /**
   * A checkpoint's state, encoded by the function's codec, or the coded error `ctx.checkpoint` throws. Its size
   * counts the pending timers the checkpoint records with it (their payloads as stored, base64, and their numbers).
   */
  #encodeCheckpoint(sid: string, state: unknown, pending: readonly Timer[]): Buffer | string {
    const limit = this.worker.maxCheckpointBytes;
    const data = encodeChecked(this.worker.codec, state, Number.MAX_SAFE_INTEGER, `checkpoint of session ${JSON.stringify(sid)}`);
    let timers = 0;
    for (const t of pending) {
      const bytes = typeof t.payload === 'string' ? Buffer.byteLength(t.payload) : t.payload.length;
      timers += Math.ceil(bytes / 3) * 4 + String(t.id).length + String(t.time).length + 8;
    }
    const size =
      timers + (typeof data === 'string' ? (data.length * 3 + timers <= limit ? 0 : Buffer.byteLength(data)) : data.length);
    if (size > limit) throw new CheckpointTooLargeError(sid, size, limit);
    return data;
  }

  /**
   * Queues the session's checkpoint calls whose outputs (those yielded before each) are all queued: a
   * checkpoint goes in the commit of those outputs, with the acks of the entries of the events taken before it.
   * One that could not be encoded fails the session there, as an output that cannot be encoded does.
   */
  #checkpointsDue(s: Session<I, O>): void {
    const calls = s.checkpoints?.calls;
    if (calls === undefined) return;
    while (calls.length > 0 && calls[0].yielded <= s.yieldsQueued) {
      const call = calls.shift() as CheckpointCall;
      if (this.dropped || s.failed) continue;
      if (call.error !== undefined) {
        this.#fail(s, call.error);
        continue;
      }
      // The entries taken since the last checkpoint (and markers among them) leave the session.
      let entries = call.entries - s.ackedEntries;
      let cut = 0;
      while (entries > 0 && cut < s.ids.length) {
        // (Not inside `markers?.has(...)`: with no markers, its argument would not be evaluated.)
        const id = s.ids[cut++];
        if (s.markers?.has(id) !== true) entries--;
      }
      const acks = s.ids.splice(0, cut);
      s.ackedEntries = call.entries;
      // The rule's state at the call: a restore continues the same walk.
      const checkpoint: Snapshot = {
        sid: s.sid,
        key: s.key,
        seq: s.seq,
        lastTime: call.last,
        events: call.events,
        state: call.state as Buffer | string,
        timers: call.timers,
        pending: call.pending.map((t) => [t.id, t.time, t.payload] as const),
      };
      this.#queue({ acks, checkpoint });
    }
  }

  async #forward(s: Session<I, O>): Promise<void> {
    // Its slot is free once its handler has finished, though its last outputs may still wait for the outbox.
    const finished = s.stream[kFinished].then(() => {
      this.worker.live--;
      s.handlerDone = true;
    });
    try {
      await drainOutputs(s.stream, (batch) => {
        for (const value of batch) {
          this.#output(s, value);
          s.yieldsQueued++;
          if (s.checkpoints !== null && s.checkpoints.calls.length > 0) this.#checkpointsDue(s);
        }
        // The handler ran: it may have taken events.
        if (this.#budgetWaiters.size > 0) this.budgetFreed();
        return this.#waitRoom();
      });
    } catch (error) {
      this.#fail(s, error);
    }
    s.forwardDone = true;
    await finished;
    this.#ended(s);
    this.budgetFreed();
    this.#running.delete(s);
    this.worker.notifySessionEnded();
  }

  /**
   * Its handler has finished. The session keeps the entries its handler took (at least its first); those it
   * never took go, in log order, to the key's next session, ahead of the key's later entries. This depends
   * only on the log and on the handler (deterministic over its inputs), so every replay ends it at the same
   * entry, whether its end came from the log (a marker, a cap, an entry that cannot be decoded) or from the
   * handler returning or throwing. Its entries are acked after its outputs.
   */
  #ended(s: Session<I, O>): void {
    this.#clearTimers(s);
    if (s.ageTimer !== null) this.worker.clock.clearTimeout(s.ageTimer);
    s.ageTimer = null;
    s.ended = true;
    this.#holding.delete(s);
    this.buffered -= s.sent.length;
    const sent = s.sent;
    s.sent = [];
    s.outside.length = 0;
    // Stopped by a hand-off or a takeover: nothing is acked, the next owner replays it all.
    if (this.dropped) return;
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    // Its handler took the first `taken` of them (with hooks none: an entry given leaves `sent`). A new session
    // keeps its first entry even if its handler never took it (else that entry would open session after session);
    // a restored one's first was taken before its snapshot.
    const taken = s.checkpoints?.attached === true ? 0 : Math.max(0, Math.min(s.given, s.stream[kTaken]() - s.sentBase));
    const first = s.sentBase === 0 && !s.restored && s.stop?.kind !== 'decode' ? 1 : 0;
    const moved = sent.slice(Math.min(Math.max(taken, first), sent.length));
    // The worker's end (a cap, an input it could not decode) is the session's last output if its handler read to it.
    if (s.stop !== undefined && s.stream[kTakenEnd]() && !s.failed) {
      if (s.stop.kind === 'cap') this.worker.counters.capped++;
      this.#queue({
        output: {
          sid: s.sid,
          seq: ++s.seq,
          key: s.key,
          error: serializeError(s.stop.error, this.worker.maxEventBytes),
          traceparent: s.scope?.traceparent,
        },
      });
    }
    let acks = s.ids;
    if (moved.length > 0) {
      const away = new Set(moved.map((e) => e.id));
      acks = acks.filter((id) => !away.has(id));
      for (const entry of moved) this.#hold(entry);
      // Counted: those its handler would have taken had it not stopped first (not those read ahead past a cap).
      if (s.stop === undefined)
        this.worker.counters.handedOn += wouldTake(
          s.rule,
          moved.map((e) => idTime(e.id)),
          this.#limits,
        );
    }
    this.#queue({ acks, ended: s.sid, lastSeq: s.seq });
    if (moved.length > 0) this.drainHeld().catch((error: unknown) => this.worker.report(error));
  }

  /** Queues the session's next output (or, if the codec refuses it, its failure). */
  #output(s: Session<I, O>, value: O): void {
    if (this.dropped || s.failed) return;
    const w = this.worker;
    let payload: Buffer | string;
    try {
      payload = encodeChecked(w.codec as Codec<O>, value, w.maxEventBytes, `output of session ${JSON.stringify(s.sid)}`);
    } catch (encodeError) {
      this.#fail(s, encodeError);
      return;
    }
    this.#queue({ output: { sid: s.sid, seq: ++s.seq, key: s.key, payload, traceparent: s.scope?.traceparent } });
  }

  /** Queues the session's failure (whatever was thrown, `undefined` included), after which it makes no more. */
  #fail(s: Session<I, O>, error: unknown): void {
    if (this.dropped || s.failed) return;
    const w = this.worker;
    this.#queue({
      output: {
        sid: s.sid,
        seq: ++s.seq,
        key: s.key,
        error: serializeError(error, w.maxEventBytes),
        traceparent: s.scope?.traceparent,
      },
    });
    s.failed = true;
    void s.stream.cancel(error);
  }

  /**
   * With `maxSessionAge`, writes an age marker for the session once it should be that old: by this machine's
   * clock at first (`clock.now()` against Redis' time of its first entry), and after a marker that came too
   * early, `after` ms later (the age still missing by the marker's id). Whether it ends the session is decided
   * by the marker's id alone.
   */
  #armAge(s: Session<I, O>, after?: number): void {
    const max = this.worker.maxSessionAge;
    if (max <= 0 || s.ageMarked || s.ageTimer !== null || s.forwardDone || this.sessions.get(s.key) !== s) return;
    const wait = after ?? Math.min(max + 1, Math.max(0, s.start + max + 1 - this.worker.clock.now()));
    s.ageTimer = this.worker.clock
      .setTimeout(() => {
        s.ageTimer = null;
        if (this.dropped || this.sessions.get(s.key) !== s) return;
        s.ageMarked = true;
        this.#mark(s, 'age');
      }, wait)
      .unref();
  }

  /** Writes a close marker for the session (fenced), retrying after errors until the partition is gone. */
  #mark(s: Session<I, O>, reason?: 'age'): void {
    this.worker.log.markClose(this.lease, s.key, s.sid, reason).catch(async (error: unknown) => {
      if (this.#failed(error)) return;
      await sleepOn(this.worker.clock, RETRY_MS);
      if (this.dropped) return;
      this.#mark(s, reason);
    });
  }

  /**
   * The log ended the session (its marker was read, a cap, an entry it cannot decode): its input ends. The
   * key's next session waits until it has finished (`#ended` may give it entries).
   */
  #finish(s: Session<I, O>): void {
    s.ended = true;
    s.waiting = false;
    this.sessions.delete(s.key);
    // Its input has ended: a wake-up would find no session to wake.
    this.#clearTimers(s);
    if (s.ageTimer !== null) this.worker.clock.clearTimeout(s.ageTimer);
    s.ageTimer = null;
    s.stream.end();
    const done = s.forwarded.then(() => {
      if (this.finishing.get(s.key) === done) this.finishing.delete(s.key);
    });
    this.finishing.set(s.key, done);
  }

  #queue(item: OutboxItem): void {
    if (this.#discard) return;
    this.#outbox.push(item);
    if ('output' in item) this.#outputsQueued++;
    this.#flushing ??= this.#flush();
  }

  #waitRoom(): Promise<void> | undefined {
    if (this.#outputsQueued < OUTBOX_LIMIT) return undefined;
    return new Promise((resolve) => this.#room.push(resolve));
  }

  async #flush(): Promise<void> {
    // Let a batch gather: everything queued in this turn goes in one call.
    await new Promise<void>((resolve) => this.worker.clock.setImmediate(resolve));
    const w = this.worker;
    const delivery = w.delivery;
    // With local delivery, a batch never needs more room than the whole queue has.
    const batch = delivery === null ? COMMIT_BATCH : Math.min(COMMIT_BATCH, delivery.limit);
    while (this.#outbox.length > 0 && !this.#discard) {
      const outputs: OutputRecord[] = [];
      const acks: string[] = [];
      const ended: string[] = [];
      const endedSeqs: number[] = [];
      // The latest checkpoint of each session: an earlier one in the same commit would be replaced at once.
      const checkpoints = new Map<string, Snapshot>();
      let taken = 0;
      // A prefix of the queue, in order: a session's acks never go before its outputs.
      for (const item of this.#outbox) {
        if ('output' in item) {
          if (outputs.length === batch) break;
          outputs.push(item.output);
        } else {
          // (A loop, not a spread: a long session's end acks more entries than a call takes arguments.)
          for (const id of item.acks) acks.push(id);
          if (item.checkpoint !== undefined) checkpoints.set(item.checkpoint.sid, item.checkpoint);
          if (item.ended !== undefined) {
            ended.push(item.ended);
            endedSeqs.push(item.lastSeq ?? 0);
          }
        }
        taken++;
      }
      // Room in the local queue first: a slow onOutput holds the commits (and so the sessions).
      if (delivery !== null) await delivery.reserve(outputs.length);
      // The same commit (the same serial) until it succeeds: a retry after a lost reply is recognised and changes
      // nothing. Without local delivery too: a commit that ended a session dropped its high-water mark, so its
      // outputs, sent again, would be written again.
      const commit = {
        outputs,
        checkpoints: [...checkpoints.values()],
        acks,
        ended,
        endedSeqs,
        serial: ++this.#serial,
        check: w.checkReplay,
      };
      let result: CommitResult | null = null;
      while (result === null && !this.#discard) {
        try {
          result = await w.log.commit(this.lease, commit);
        } catch (error) {
          if (this.#failed(error)) break;
          await sleepOn(this.worker.clock, RETRY_MS);
        }
      }
      if (result === null) {
        delivery?.unreserve(outputs.length);
        break;
      }
      w.counters.outputs += outputs.length;
      w.counters.checkpoints += checkpoints.size;
      // Committed: delivered locally even if the partition was lost meanwhile.
      if (delivery !== null) this.#handOver(delivery, outputs, result.ids);
      if (result.diverged.length > 0) this.#diverged(outputs, result.diverged);
      if (this.#discard) break;
      this.#outbox.splice(0, taken);
      this.#outputsQueued -= outputs.length;
      while (this.#outputsQueued < OUTBOX_LIMIT && this.#room.length > 0) this.#room.shift()?.();
    }
    this.#flushing = null;
    for (const resume of this.#room.splice(0)) resume();
  }

  /** Hands the outputs this commit wrote to the local queue (their room was reserved); the others' room goes back. */
  #handOver(delivery: LocalDelivery<O>, outputs: OutputRecord[], ids: ReadonlyArray<string | null>): void {
    const items: OutputItem<O>[] = [];
    const codec = this.worker.codec as Codec<O>;
    for (let i = 0; i < outputs.length; i++) {
      const id = ids[i];
      if (id === null || id === undefined) continue;
      const o = outputs[i];
      const base: { id: string; partition: number; key: string; sid: string; seq: number; traceparent?: string } = {
        id,
        partition: this.partition,
        key: o.key,
        sid: o.sid,
        seq: o.seq,
      };
      if (o.traceparent !== undefined) base.traceparent = o.traceparent;
      let content: OutputContent<O>;
      try {
        content = decodedOutput(codec, o);
      } catch (error) {
        this.worker.report(decodeError(`The codec could not decode output ${o.seq} of session ${JSON.stringify(o.sid)}`, error));
        continue;
      }
      items.push({ ...base, ...content });
    }
    delivery.unreserve(outputs.length - items.length);
    delivery.push(items);
  }

  /** Reports what checkReplay found. */
  #diverged(outputs: OutputRecord[], found: readonly Divergence[]): void {
    const w = this.worker;
    const codec = w.codec as Codec<O>;
    const content = (o: OutputRecord): OutputContent | undefined => {
      try {
        return decodedOutput(codec, o);
      } catch {
        return undefined;
      }
    };
    for (const d of found) {
      w.counters.diverged++;
      if (d.kind === 'output') {
        const o = outputs[d.index];
        const committed = d.committed === undefined ? undefined : content({ ...o, ...d.committed });
        w.report(
          new ReplayDivergedError(
            'output',
            { partition: this.partition, key: o.key, sid: o.sid, seq: o.seq },
            `Replay diverged: output ${o.seq} of session ${JSON.stringify(o.sid)} (partition ${this.partition}) differs from the one written before the takeover, as entry ${d.committed?.id ?? '(gone)'}. Handlers must be deterministic over their inputs (no Date.now(), Math.random() or outside state); readers keep the output written first.`,
            committed,
            content(o),
          ),
        );
      } else {
        const key = d.sid.slice(0, d.sid.lastIndexOf('@'));
        w.report(
          new ReplayDivergedError(
            'count',
            { partition: this.partition, key, sid: d.sid, seq: d.replayed + 1 },
            `Replay diverged: session ${JSON.stringify(d.sid)} (partition ${this.partition}) ended with ${d.replayed} outputs, but ${d.committed} were written before the takeover. Handlers must be deterministic over their inputs (no Date.now(), Math.random() or outside state); readers keep the outputs written first.`,
          ),
        );
      }
    }
  }

  /** Resolves once everything queued is committed (or can no longer be). */
  async flushed(): Promise<void> {
    while (this.#flushing !== null) await this.#flushing;
  }

  /** Stops every local session of the partition (their state is rebuilt by the next owner's replay). */
  async stopSessions(): Promise<void> {
    const running = [...this.#running];
    for (const s of running) {
      if (s.ageTimer !== null) this.worker.clock.clearTimeout(s.ageTimer);
      this.#clearTimers(s);
    }
    if (this.#tickTimer !== null) this.worker.clock.clearTimeout(this.#tickTimer);
    this.#tickTimer = null;
    this.sessions.clear();
    // Never acked: the next owner replays them.
    this.#held.clear();
    this.#heldCount = 0;
    this.#spilled.clear();
    this.budgetFreed();
    await Promise.all(running.map((s) => s.stream.cancel()));
    await Promise.all(running.map((s) => s.forwarded));
  }

  /** The partition was taken over (or its lease ran out): drop everything, write nothing more. */
  async drop(): Promise<void> {
    this.dropped = true;
    this.stopping = true;
    this.#discard = true;
    this.#outbox.length = 0;
    this.#outputsQueued = 0;
    for (const resume of this.#room.splice(0)) resume();
    this.worker.wakeIdle(this.partition);
    await this.stopSessions();
  }

  /** Graceful hand-back: stop reading, stop the sessions, commit what they made, release the lease. */
  async release(): Promise<void> {
    this.stopping = true;
    this.worker.wakeIdle(this.partition);
    this.budgetFreed();
    await this.pumped;
    // Cancelled sessions make no more outputs; those made before are committed below.
    this.dropped = true;
    await this.stopSessions();
    await this.flushed();
    await this.worker.log.release(this.lease).catch((error: unknown) => this.worker.report(error));
  }
}
