// Workers: any number of processes share the partitions of a distributed
// stream function. Each owns a fair share under leases with fencing tokens,
// and runs one local instance of the function per live key of its partitions.
//
// A session is a run of one key's events. The log ends it: a close marker
// (written when the session idles), a cap, or an entry it cannot decode; or
// its handler does, by returning or throwing, and the session then keeps the
// events its handler took while the key's next session gets the rest. Either
// way the end depends only on the log and the handler. Its id is
// `<key>@<first entry id>`, its outputs are numbered from 1, and its input
// entries are acked only once it has ended and every output is written: the
// owner's pending list holds exactly the inputs of live sessions, and a new
// owner rebuilds them by replaying that list through fresh instances. Handlers
// must therefore be deterministic over their inputs (take time from entry ids,
// not Date.now()); `checkReplay` compares what a replay makes with what was
// written before.
//
// Local delivery (`onOutput`) gets the outputs a commit of this worker wrote,
// after the commit: never one Redis lacks, never one a replay made again.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { drainOutputs } from '../core/drive';
import { kFinished, kTaken, kTakenEnd, type StreamKind } from '../core/protocol';
import { describe, invalidType, outOfRange } from '../errors';
import type { StreamFn } from '../types';
import { type Codec, encodeChecked } from './codec';
import { type RedisOptions, type Resolved, resolveOptions } from './options';
import { RedisLog } from './redis-log';
import { RoundTrips, type RoundTripTotals, kRenewalLateness, kRoundTrips, timedLog } from './metrics';
import {
  type CommitResult,
  type Divergence,
  type InputEntry,
  type Lease,
  type OutputRecord,
  type PartitionLog,
  FencedError,
} from './transport';
import {
  CloseTimeoutError,
  OnOutputError,
  type OutputContent,
  ReplayDivergedError,
  SessionLimitError,
  reportable,
} from './errors';
import type { HandlerFailure, OutputItem } from './reader';

/** The function's internal open, without its idle timer: a session's end must come from the log (registered symbol, core/function.ts). */
const kOpen = Symbol.for('velo-stream.open');
type Openable<I, O> = { [kOpen](signal: AbortSignal | undefined, idle: boolean): StreamKind<I, O> };

export interface RedisWorkerOptions<O = unknown> extends RedisOptions {
  /** Lease time-to-live, ms: a dead worker's partitions are taken over after at most this (plus a renewal period). Renewed every ttl/3. Default 10 000. */
  leaseTtl?: number;
  /** Entries per read of a partition. Default 256. */
  readCount?: number;
  /**
   * How often each owned partition's input is trimmed to its oldest pending entry, ms (checked at each lease
   * renewal, every leaseTtl/3); 0: never. Default 5000.
   */
  trimInterval?: number;
  /** This worker's id in leases (unique per process). Default `<hostname>-<pid>-<random>`. */
  workerId?: string;
  /** Called with errors the worker recovers from by retrying (a lost connection, a server restart). Default: `process.emitWarning`. */
  onError?: (error: unknown) => void;
  /**
   * Events read from Redis that the sessions' handlers have not taken yet (in their input buffers, or being
   * dispatched), at most, over all partitions of this worker. Each partition has a fixed share,
   * `floor(maxBufferedEvents / partitions)` (a worker owning every partition can use all of it): a partition at
   * its share is not read until its own sessions take events, so a slow session stops only its partition, and
   * the rest waits in Redis (`lag`). Entries held for a session slot (`maxConcurrent`, see `held`) are bounded
   * separately. At least `partitions`. Default 65 536.
   */
  maxBufferedEvents?: number;
  /**
   * A session that would get more events than this ends: `SessionLimitError` (`ERR_VELO_SESSION_EVENTS`) is its
   * last output, after those of its handler, and the event opens the key's next session. Counted from the log,
   * so a replay ends it at the same event. Every worker of the function must use the same value. 0: no cap (default).
   */
  maxSessionEvents?: number;
  /**
   * The longest a session lives, ms, measured on entry ids (Redis' clock when each entry was added, never the
   * worker's): an event more than this after the session's first one ends it as `maxSessionEvents` does
   * (`ERR_VELO_SESSION_AGE`) and opens the key's next session; a session with no such event is closed by a
   * marker in the log once it is that old. Every worker of the function must use the same value. 0: no cap (default).
   */
  maxSessionAge?: number;
  /**
   * Local delivery: called with each output of this worker's sessions (as `redisOutputs` yields it, decoded
   * from the bytes written) once its commit to Redis succeeded, and only if that commit wrote it: an output a
   * replay makes again, written before by an earlier owner (or this worker under an earlier lease), is not
   * delivered again. Called one at a time: a returned promise is awaited before the next call. In commit order
   * per partition, so per key in order. Committed outputs wait for it in a queue of at most `maxUndelivered`
   * outputs: a full queue holds the next commit, and with it the sessions and the partition's reads
   * (backpressure). A throw or rejection goes to `onError` as `OnOutputError` (`ERR_VELO_ON_OUTPUT`); the
   * output counts as delivered and the worker goes on. `close()` resolves once every committed output has
   * been delivered. At most once per output across workers: a worker that dies between a commit and its
   * delivery leaves those outputs undelivered locally (they are in Redis for `redisOutputs`).
   */
  onOutput?: (output: OutputItem<O>) => void | PromiseLike<void>;
  /** With `onOutput`: committed outputs waiting for it, at most (the one it is handling included). Default 1024. */
  maxUndelivered?: number;
  /**
   * A development check that handlers are deterministic over their inputs: a digest of each output written is
   * kept in Redis while its session lives, and when a replay (after a takeover) makes an output again, it is
   * compared with the one written before; so is the number of outputs when the session ends. A difference is
   * reported to `onError` as `ReplayDivergedError` (`ERR_VELO_REPLAY_DIVERGED`) and counted in `stats().diverged`;
   * readers keep the output written first. Only outputs written by a worker with the check on are compared.
   * Costs a hash field and a SHA-1 per output in Redis. Default false.
   */
  checkReplay?: boolean;
}

/** Round-trip times of the worker's calls to Redis, ms: nearest-rank percentiles of its last 1024 calls. */
export interface RoundTripStats {
  /** Calls timed since the start. */
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Lease renewals of a worker: `count` succeeded; lateness percentiles in ms (nearest rank, last 1024). */
export interface RenewalStats {
  count: number;
  lateP50: number;
  lateP99: number;
  lateMax: number;
}

/** Counters of one worker. */
export interface RedisWorkerStats {
  /** Partitions owned now, ascending. */
  owned: number[];
  /**
   * Entries of the owned partitions' inputs not yet read by this worker (from the consumer group's lag), as
   * measured at the last lease renewal (every leaseTtl/3). Entries read but still waiting for their session are
   * not in it.
   */
  lag: number;
  /** `lag` per owned partition (partition -> entries). */
  partitionLag: Record<number, number>;
  /** Live sessions on this worker. */
  sessions: number;
  /**
   * Events kept in memory waiting for a session slot (`maxConcurrent` sessions of the function are open), at
   * most 64 reads' worth (`readCount`) per partition.
   */
  held: number;
  /**
   * Keys whose events wait for a slot in Redis instead (read past the bound of `held`; they stay in the
   * pending list and are read again by id once sessions end): the worker keeps one small record per key.
   */
  waitingKeys: number;
  /**
   * Events read from Redis that the sessions' handlers have not taken yet, with a read in flight (never more
   * than `maxBufferedEvents`; `held` is not in it). An upper bound: a handler's take is noticed at its next
   * output, at its end, or when the figure is needed (here, or by a partition at its share).
   */
  buffered: number;
  /** `buffered` per owned partition (partition -> events); each is at most its share of `maxBufferedEvents`. */
  partitionBuffered: Record<number, number>;
  /** Sessions ended by `maxSessionEvents` or `maxSessionAge` (their handler read to that end: the error was their last output). */
  capped: number;
  /**
   * Events a session's handler never took (it returned or threw first) that went to the key's next session.
   * Counted again if a replay hands them on again.
   */
  handedOn: number;
  /** Leases taken since the start. */
  acquired: number;
  /** Partitions lost to another worker (fenced, or lease expired). */
  lost: number;
  /** Reads and writes Redis refused because this worker's lease was gone (a zombie's writes). */
  fenced: number;
  /** Partitions handed back (fair share, close()). */
  released: number;
  /** Entries replayed from pending lists on takeover. */
  replayed: number;
  /** Sessions rebuilt by those replays. */
  replayedSessions: number;
  /** Input entries trimmed away (none that a session still needed). */
  trimmed: number;
  /** Outputs committed (before the dedupe in the fenced script). */
  outputs: number;
  /** Errors passed to onError. */
  errors: number;
  /** Outputs passed to `onOutput` (those whose call threw included). */
  delivered: number;
  /** Outputs committed and not yet delivered to `onOutput` (the one it is handling included; at most `maxUndelivered`). */
  undelivered: number;
  /** Replay divergences found by `checkReplay`. */
  diverged: number;
  /** Round-trip times of the worker's calls to Redis (reads, commits, leases), blocking wake-up reads excluded. */
  roundTrip: RoundTripStats;
  /**
   * Lease renewals (every `leaseTtl/3`, on their own timer): how many succeeded, and how late their replies came,
   * ms past when each was due (`leaseTtl/3` after the previous one was sent), over the last 1024. A lease is lost
   * when this reaches two thirds of `leaseTtl`.
   */
  renewals: RenewalStats;
}

export interface RedisWorker {
  readonly id: string;
  /** The function's name in Redis keys (`options.name`). */
  readonly name: string;
  stats(): RedisWorkerStats;
  /**
   * Graceful hand-off: stops reading, commits the outputs made so far, stops the local sessions and releases
   * every lease at once (other workers take the partitions over and replay their live sessions), then leaves,
   * once `onOutput` (if given) has had every output this worker committed. Idempotent. Does not close the client.
   */
  close(): Promise<void>;
}

/** Outputs and acks waiting for a commit, held per partition before the outbox makes sessions wait. */
const OUTBOX_LIMIT = 1024;
/**
 * Entries held in memory for a session slot per partition, in reads (readCount): past it, they are left in the
 * pending list and read again by id (`PartitionRun.reread`).
 */
const HELD_BATCHES = 64;
/** Outputs per fenced commit call. */
const COMMIT_BATCH = 512;
/** Default of `maxUndelivered`. */
const UNDELIVERED_DEFAULT = 1024;
/** `RedisWorkerOptions` besides the shared ones. */
const WORKER_KEYS = [
  'leaseTtl',
  'readCount',
  'trimInterval',
  'workerId',
  'onError',
  'maxBufferedEvents',
  'maxSessionEvents',
  'maxSessionAge',
  'onOutput',
  'maxUndelivered',
  'checkReplay',
];
/** Node's longest timer delay, ms (2^31 - 1). */
const MAX_TIMER_MS = 2_147_483_647;
/** Wait before retrying after a non-fencing error, ms. */
const RETRY_MS = 100;
/** The longest a blocking wake-up read waits before it is re-issued, ms. */
const WAIT_MS = 2000;
/**
 * A partition at its share of `maxBufferedEvents` learns that a handler took events at the handler's next
 * output or end; one that takes events without either is found by re-checking, first after this (ms),
 * then twice as long each time, up to BUDGET_RECHECK_MAX_MS.
 */
const BUDGET_RECHECK_MS = 5;
const BUDGET_RECHECK_MAX_MS = 200;

/** Redis' clock when the entry was added, ms: the first part of its id. */
function idTime(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** What became of an entry given to `PartitionRun.#deliver`. */
const enum Delivery {
  /** Sent to its session (or consumed: a marker, a trimmed entry). */
  Done,
  /** It needs a new session, and `maxConcurrent` sessions are open. */
  NoSlot,
  /** An earlier entry of its key must be delivered first. */
  Behind,
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

/** The entry id just before `id` in the log (XREADGROUP with an id returns the entries after it). */
function idBefore(id: string): string {
  const dash = id.indexOf('-');
  const seq = Number(id.slice(dash + 1));
  const ms = Number(id.slice(0, dash));
  return seq > 0 ? `${ms}-${seq - 1}` : `${ms - 1}-18446744073709551615`;
}

/**
 * A key whose entries were read past the bound of held entries and not kept: they wait in the pending list,
 * and every entry of the key read after them joins them (its later entries must not pass them). `after` is
 * the last of the key's entries handled; those after it, up to `last`, are read again by id (`reread`).
 */
interface Spilled {
  after: string;
  last: string;
}

/** Negative if entry id `a` is before `b` in the log, 0 if the same. */
function logOrder(a: string, b: string): number {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  return Number(a.slice(0, da)) - Number(b.slice(0, db)) || Number(a.slice(da + 1)) - Number(b.slice(db + 1));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function serializeError(error: unknown): string {
  const e = error as { name?: unknown; message?: unknown; code?: unknown } | null;
  const out: Record<string, unknown> = {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(error),
  };
  if (typeof e?.code === 'string') out.code = e.code;
  return JSON.stringify(out);
}

class Session<I, O> {
  /** Its entries (events, markers read for it): acked when it ends, less those given to the key's next session. */
  readonly ids: string[] = [];
  seq = 0;
  /** Its handler threw, or an output could not be encoded: its error was its last output, nothing comes after. */
  failed = false;
  /** Redis' time of its last event's entry, ms: its idle deadline is `idleTimeout` after (`PartitionRun.#endIdleByLog`). */
  lastTime = 0;
  /** A send into its stream waits for room: its input must not end before that event is in. */
  sending = false;
  forwarded: Promise<void> = Promise.resolve();
  /** Events of the log that belong to it (those dropped after its handler stopped included): for `maxSessionEvents`. */
  events = 0;
  /** Redis' time of its first entry, ms: for `maxSessionAge`. */
  readonly start: number;
  /**
   * Why the worker ended its input, if it did: a cap, or an entry the codec could not decode (`entry`: that
   * entry is the last of `sent`). The error is its last output if the session keeps that end (see `#ended`).
   */
  stop: { error: Error; entry: boolean } | undefined;
  /** Its outputs are all forwarded (the handler has finished). */
  forwardDone = false;
  ageTimer: NodeJS.Timeout | null = null;
  ageMarked = false;
  /**
   * Entries sent to its stream, in log order, that its handler may not have taken yet (counted in the
   * partition's `buffered`). Those it never takes go to the key's next session when it ends.
   */
  sent: InputEntry[] = [];
  /** Entries sent before `sent[0]`: all taken. */
  sentBase = 0;
  constructor(
    readonly key: string,
    readonly sid: string,
    readonly stream: StreamKind<I, O>,
  ) {
    this.start = idTime(sid.slice(sid.lastIndexOf('@') + 1));
  }
}

type OutboxItem = { output: OutputRecord } | { acks: string[]; ended?: string; lastSeq?: number };

function decodedOutput<O>(codec: Codec<O>, o: OutputRecord): OutputContent<O> {
  if (o.error !== undefined) return { error: JSON.parse(o.error) as HandlerFailure };
  const payload = o.payload ?? '';
  return { value: codec.decode(typeof payload === 'string' ? Buffer.from(payload) : payload) };
}

/**
 * Committed outputs on their way to `onOutput`: one call at a time, in the order commits pushed them. At most
 * `limit` outputs are queued, being delivered, or reserved by commits in flight.
 */
class LocalDelivery<O> {
  readonly #queue: OutputItem<O>[] = [];
  #reserved = 0;
  #inCall = false;
  #active = false;
  readonly #room: (() => void)[] = [];
  readonly #drained: (() => void)[] = [];
  delivered = 0;

  constructor(
    readonly onOutput: (output: OutputItem<O>) => void | PromiseLike<void>,
    readonly limit: number,
    readonly report: (error: unknown) => void,
  ) {}

  get undelivered(): number {
    return this.#queue.length + (this.#inCall ? 1 : 0);
  }

  /** Waits until `n` more outputs fit (n <= limit), and takes the room for a commit. */
  async reserve(n: number): Promise<void> {
    while (this.#reserved > 0 && this.#reserved + n > this.limit) await new Promise<void>((resolve) => this.#room.push(resolve));
    this.#reserved += n;
  }

  /** Gives back room reserved for outputs that will not be delivered (written before, or never committed). */
  unreserve(n: number): void {
    if (n === 0) return;
    this.#reserved -= n;
    for (const wake of this.#room.splice(0)) wake();
  }

  /** Queues outputs whose room was reserved. */
  push(items: OutputItem<O>[]): void {
    for (const item of items) this.#queue.push(item);
    if (this.#active || this.#queue.length === 0) return;
    this.#active = true;
    void this.#run();
  }

  async #run(): Promise<void> {
    for (let item = this.#queue.shift(); item !== undefined; item = this.#queue.shift()) {
      this.#inCall = true;
      try {
        const pending = this.onOutput(item);
        if (pending !== null && typeof (pending as PromiseLike<void> | undefined)?.then === 'function') await pending;
      } catch (error) {
        try {
          this.report(new OnOutputError(item, error));
        } catch (reportError) {
          // onError itself threw: the queue must go on (commits wait for it).
          process.emitWarning(reportError instanceof Error ? reportError : new Error(String(reportError)));
        }
      }
      this.#inCall = false;
      this.delivered++;
      this.unreserve(1);
    }
    this.#active = false;
    for (const resolve of this.#drained.splice(0)) resolve();
  }

  /** Resolves once nothing is queued or being delivered. */
  drained(): Promise<void> {
    if (!this.#active) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }
}

class PartitionRun<I, O> {
  readonly sessions = new Map<string, Session<I, O>>();
  /** Sessions whose marker was read, until their acks are queued: the key's next session waits for it. */
  readonly finishing = new Map<string, Promise<void>>();
  readonly #outbox: OutboxItem[] = [];
  #outputsQueued = 0;
  #flushing: Promise<void> | null = null;
  /** Commits made under this lease (their `serial`, with local delivery). */
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
  /** Keys whose entries wait in the pending list only (read past the held bound), in the order they were left. */
  readonly #spilled = new Map<string, Spilled>();
  #rereading = false;
  #rereadAgain = false;
  #draining = false;
  #drainAgain = false;
  /** The held entry drainHeld is delivering (out of its list meanwhile). */
  #drainingEntry: InputEntry | null = null;
  /**
   * This partition's part of `maxBufferedEvents`: entries reserved for a read in flight, read and not yet
   * dispatched, and entries sent to sessions whose handlers may not have taken them (their `sent`).
   * Held entries are not in it. An upper bound, lowered by `reconcile()`.
   */
  buffered = 0;
  /** Sessions with entries in `sent`. */
  readonly #holding = new Set<Session<I, O>>();
  /** Waiting for room in this partition's share (the pump, drainHeld). */
  readonly #budgetWaiters = new Set<() => void>();
  replayDone = false;
  /** Redis' time of the latest entry read from the partition, ms: how far the log's clock has gone. */
  logTime = 0;
  /** The partition's tick (`#tickFor`): its timer, the deadline it is set for, and a write in flight. */
  #tickTimer: NodeJS.Timeout | null = null;
  #tickDeadline = Infinity;
  #ticking = false;
  validUntil: number;
  /** When the lease's last successful renewal (or its grant) was sent: the next is due `ttl/3` after it. */
  renewedAt: number;
  /** A renewal is in flight. */
  renewing = false;
  lastTrim: number;
  /** Undelivered entries at the last measure. */
  lag = 0;
  readonly pumped: Promise<void>;

  constructor(
    readonly worker: Worker<I, O>,
    readonly lease: Lease,
    grantedAt: number,
  ) {
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
        await sleep(RETRY_MS);
        continue;
      }
      this.buffered -= count - read.entries.length;
      if (read.entries.length === 0) {
        if (pendingFrom !== null) {
          pendingFrom = null;
          if (!this.replayDone) {
            this.replayDone = true;
            for (const s of this.sessions.values()) this.#armAge(s);
            this.#endIdleByLog();
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
        rereadable = (await this.#dispatch(entry)) || rereadable;
      }
      this.#endIdleByLog();
      if (rereadable) this.reread().catch((error: unknown) => w.report(error));
      // A short read took all there was: wait for more after its last entry rather than ask again (at live
      // rates, asking again was one more fenced read, an empty one, per wake-up).
      if (pendingFrom === null && read.entries.length < count) await w.idle(this, last);
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
          clearTimeout(timer);
          this.#budgetWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, delay);
        this.#budgetWaiters.add(done);
      });
      delay = Math.min(delay * 2, BUDGET_RECHECK_MAX_MS);
    }
  }

  /** Wakes whatever waits for room in the share (a handler may have taken events; the share may have grown). */
  budgetFreed(): void {
    for (const wake of [...this.#budgetWaiters]) wake();
  }

  /** Takes out of the share the entries each session's handler has taken since. */
  reconcile(): void {
    for (const s of this.#holding) {
      this.#trimSent(s);
      if (s.sent.length === 0) this.#holding.delete(s);
    }
  }

  /** Drops from `sent` the entries its handler has taken (never a decode failure: it is never taken). */
  #trimSent(s: Session<I, O>): void {
    const taken = Math.min(s.stream[kTaken]() - s.sentBase, s.sent.length);
    if (taken <= 0) return;
    s.sent.splice(0, taken);
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
  async #dispatch(entry: InputEntry): Promise<boolean> {
    const spilled = this.#spilled.get(entry.key);
    if (spilled !== undefined) {
      this.buffered--;
      spilled.last = entry.id;
      return this.sessions.has(entry.key);
    }
    if (this.#held.has(entry.key)) {
      this.buffered--;
      this.#holdOrSpill(entry);
      return false;
    }
    const delivered = await this.#deliver(entry);
    if (delivered === Delivery.Done) return false;
    this.buffered--;
    this.#holdOrSpill(entry);
    if (delivered === Delivery.Behind) this.drainHeld().catch((error: unknown) => this.worker.report(error));
    return false;
  }

  /** Holds the entry, or past the bound of held entries leaves it (and its key's later entries) in the pending list. */
  #holdOrSpill(entry: InputEntry): void {
    if (this.#heldCount < this.worker.readCount * HELD_BATCHES) this.#hold(entry);
    else this.#spilled.set(entry.key, { after: idBefore(entry.id), last: entry.id });
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
      // Sessions given entries read again may be past their idle deadline by the log's clock already.
      this.#endIdleByLog('reread');
    }
  }

  async #rereadPass(): Promise<void> {
    if (this.#spilled.size === 0) return;
    const w = this.worker;
    let from: string | null = null;
    for (const { after } of this.#spilled.values()) if (from === null || logOrder(after, from) < 0) from = after;
    // Keys that could not go on in this pass: their later entries wait for the next.
    const stuck = new Set<string>();
    while (from !== null && !this.stopping && stuck.size < this.#spilled.size) {
      const count = await this.#reserve(w.readCount);
      if (count === 0) return;
      let read;
      try {
        read = await w.log.read(this.lease, from, count);
      } catch (error) {
        this.buffered -= count;
        if (this.#failed(error)) return;
        await sleep(RETRY_MS);
        continue;
      }
      this.buffered -= count - read.entries.length;
      if (read.entries.length === 0) return;
      from = read.entries[read.entries.length - 1].id;
      for (const entry of read.entries) {
        const spilled = this.#spilled.get(entry.key);
        // Handled already (delivered, held, or a marker read), or behind an entry of its key that cannot go on.
        if (spilled === undefined || logOrder(entry.id, spilled.after) <= 0 || stuck.has(entry.key) || this.stopping) {
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

  /** Whether a key whose entries wait in the pending list has a live session (its entries can go to it). */
  #spilledLive(): boolean {
    for (const key of this.#spilled.keys()) if (this.sessions.has(key)) return true;
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
    try {
      do {
        this.#drainAgain = false;
        // Once a key found no session slot, only keys with a live session go on (their entries need none).
        let noSlot = false;
        for (const [key, list] of this.#held) {
          if (noSlot && !this.sessions.has(key)) continue;
          while (list.length > 0) {
            // Each entry goes back into the share before it is delivered.
            if ((await this.#reserve(1)) === 0) return;
            if (this.stopping) {
              this.buffered--;
              return;
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
            // No session slot: this key waits for a session to end. (Behind: an earlier entry came in front.)
            if (delivered === Delivery.NoSlot) {
              noSlot = true;
              break;
            }
          }
          if (list.length === 0) this.#held.delete(key);
        }
      } while (this.#drainAgain);
    } finally {
      this.#draining = false;
      // Sessions opened for held entries may be past their idle deadline by the log's clock already: ending
      // them now frees their slots for the next held keys (on a backlog, at the pace of reading).
      this.#endIdleByLog('drain');
    }
    // Held entries went to sessions: entries left in the pending list may now fit.
    if (this.#spilled.size > 0 && !this.stopping) await this.reread();
  }

  get heldCount(): number {
    return this.#heldCount;
  }

  /** Keys whose entries wait in the pending list (read past the bound of held entries). */
  get spilledKeys(): number {
    return this.#spilled.size;
  }

  /**
   * Delivers an entry counted in `buffered` (an event stays counted, in its session's `sent`, until its
   * handler takes it). Else, with the entry still counted: `NoSlot` if it needs a new session and
   * `maxConcurrent` sessions are live on this worker, `Behind` if an earlier entry of its key is held.
   */
  async #deliver(entry: InputEntry): Promise<Delivery> {
    const key = entry.key;
    if (entry.close !== undefined) {
      this.buffered--;
      const s = this.sessions.get(key);
      if (s !== undefined && s.sid === entry.close) {
        s.ids.push(entry.id);
        // An age marker ends the session only if its own id says the session is that old (clocks differ).
        if (entry.reason === 'age') {
          const limit = this.#ageLimit(s, entry.id);
          if (limit === undefined) {
            s.ageMarked = false;
            this.#armAge(s, s.start + this.worker.maxSessionAge + 1 - idTime(entry.id));
            return Delivery.Done;
          }
          this.#cap(s, limit);
          return Delivery.Done;
        }
        this.#finish(s);
      } else this.#queue({ acks: [entry.id] }); // a marker for a session that has ended already
      return Delivery.Done;
    }
    // Trimmed away while pending (never by velo-stream's own trimming): nothing to deliver.
    if (entry.payload === undefined) {
      this.buffered--;
      this.#queue({ acks: [entry.id] });
      return Delivery.Done;
    }
    let s = this.sessions.get(key);
    // An idle end or a cap ends the session here, in the log: every replay ends it at this same entry.
    if (s !== undefined && this.#idleAt(s, entry.id)) {
      this.#finish(s);
      s = undefined;
    }
    const limit = s === undefined ? undefined : this.#eventLimit(s, entry.id);
    if (s !== undefined && limit !== undefined) {
      this.#cap(s, limit);
      s = undefined;
    }
    if (s === undefined) {
      const previous = this.finishing.get(key);
      if (previous !== undefined) await previous;
      if (this.stopping) return Delivery.Done;
      // The ending session's handler left entries before this one (they open the next session), or, while
      // this one waited, a delivery of an earlier entry did.
      if (this.sessions.has(key) || this.#heldBefore(key, entry.id)) return Delivery.Behind;
      s = this.#open(key, `${key}@${entry.id}`);
      if (s === undefined) return Delivery.NoSlot;
    }
    s.ids.push(entry.id);
    s.events++;
    s.lastTime = idTime(entry.id);
    this.#trimSent(s);
    s.sent.push(entry);
    this.#holding.add(s);
    let event: I;
    try {
      event = this.worker.codec.decode(entry.payload) as I;
    } catch (error) {
      // The session's input ends before it, as at a cap: decided by the log, so every replay ends it here too.
      s.stop = {
        error: Object.assign(new TypeError(`The codec could not decode entry ${entry.id}`, { cause: error }), {
          code: 'ERR_VELO_DECODE',
        }),
        entry: true,
      };
      this.#finish(s);
      return Delivery.Done;
    }
    // Waits while the session's input is full: the partition is not read meanwhile (backpressure). A send
    // refused because the handler finished is fine: the entry, untaken, goes to the key's next session.
    s.sending = true;
    await s.stream.send(event).catch(() => {});
    s.sending = false;
    return Delivery.Done;
  }

  /**
   * Whether the session's input ended by its idle timeout before entry `id`: by the log's clock (Redis' time in
   * entry ids), `idleTimeout` ms or more passed after its last event. Decided by the log alone, so a backlog
   * read minutes later, or a replay, splits the key's sessions where live reading did.
   */
  #idleAt(s: Session<I, O>, id: string): boolean {
    const idle = this.worker.fn.config.idleTimeout;
    return idle > 0 && s.lastTime > 0 && idTime(id) - s.lastTime >= idle;
  }

  /**
   * Ends the sessions whose idle deadline the log's clock has passed (an entry read at or after it, of any
   * key): every later entry of their keys comes after that deadline, so each opens the key's next session
   * anyway. A session whose key has entries held, or left in the pending list, from before its deadline waits
   * for them: they are delivered first (`drainHeld`, `reread`; not started again by the pass that called
   * this). This is what frees session slots on a backlog at the pace of reading. For the sessions whose
   * deadline is still ahead, the partition's tick is set for the earliest (`#tickFor`).
   */
  #endIdleByLog(caller?: 'drain' | 'reread'): void {
    const idle = this.worker.fn.config.idleTimeout;
    if (idle <= 0 || this.stopping || this.dropped) return;
    let next = Infinity;
    let drain = false;
    let reread = false;
    for (const s of this.sessions.values()) {
      if (s.lastTime === 0) continue;
      const deadline = s.lastTime + idle;
      if (deadline > this.logTime) {
        next = Math.min(next, deadline);
        continue;
      }
      // Its event on its way in, or an earlier one of its key being delivered: that delivery checks again.
      if (s.sending || this.#drainingEntry?.key === s.key) continue;
      const held = this.#held.get(s.key);
      if (held !== undefined && held.length > 0 && idTime(held[0].id) < deadline) {
        drain = true;
        continue;
      }
      const spilled = this.#spilled.get(s.key);
      // (The key's entries left in the pending list all come after `after`.)
      if (spilled !== undefined && idTime(spilled.after) < deadline) {
        reread = true;
        continue;
      }
      this.#finish(s);
    }
    this.#tickFor(next);
    if (drain && caller !== 'drain') this.drainHeld().catch((error: unknown) => this.worker.report(error));
    if (reread && caller !== 'reread') this.reread().catch((error: unknown) => this.worker.report(error));
  }

  /**
   * Sets the partition's tick for Redis' time `deadline` (Infinity: none needed). A tick is an entry the owner
   * writes into the partition (a close marker naming no session) once Redis' clock should have passed the
   * earliest idle deadline of its sessions: read back, it moves the log's clock there, and every session it
   * passes ends, however many. Only the replay of a lease's pending entries is left alone (the log decides
   * there). One tick is written at a time; if it came too early (clocks differ), the next is set from its id.
   */
  #tickFor(deadline: number): void {
    if (deadline === this.#tickDeadline || !this.replayDone) return;
    if (this.#tickTimer !== null) clearTimeout(this.#tickTimer);
    this.#tickTimer = null;
    this.#tickDeadline = deadline;
    if (deadline === Infinity) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, deadline - (Date.now() + this.worker.clockOffset)));
    this.#tickTimer = setTimeout(() => {
      this.#tickTimer = null;
      this.#tickDeadline = Infinity;
      this.#tick();
    }, wait).unref();
  }

  #tick(): void {
    if (this.#ticking || this.stopping || this.dropped) return;
    this.#ticking = true;
    this.worker.log.markClose(this.lease, '', '').then(
      (id) => {
        this.#ticking = false;
        // What Redis' clock read against this machine's when it wrote the tick.
        this.worker.clockOffset = idTime(id) - Date.now();
        this.worker.counters.ticks++;
      },
      async (error: unknown) => {
        this.#ticking = false;
        if (this.#failed(error)) return;
        await sleep(RETRY_MS);
        this.#tick();
      },
    );
  }

  /** The cap the key's next event (entry `id`) would break, if any. */
  #eventLimit(s: Session<I, O>, id: string): SessionLimitError | undefined {
    const max = this.worker.maxSessionEvents;
    if (max > 0 && s.events >= max) {
      return new SessionLimitError(
        'ERR_VELO_SESSION_EVENTS',
        max,
        `Session ${JSON.stringify(s.sid)} reached maxSessionEvents (${max}): it ended, and entry ${id} opens the key's next session`,
      );
    }
    return this.#ageLimit(s, id);
  }

  /** The age cap, if entry `id` is more than `maxSessionAge` after the session's first entry (Redis' clock). */
  #ageLimit(s: Session<I, O>, id: string): SessionLimitError | undefined {
    const max = this.worker.maxSessionAge;
    const age = idTime(id) - s.start;
    if (max <= 0 || age <= max) return undefined;
    return new SessionLimitError(
      'ERR_VELO_SESSION_AGE',
      max,
      `Session ${JSON.stringify(s.sid)} reached maxSessionAge (${max} ms): entry ${id} is ${age} ms after its first, so the session ended there`,
    );
  }

  /** Ends the session at a cap: its input ends, and if its handler reads to that end, the error is its last output. */
  #cap(s: Session<I, O>, limit: SessionLimitError): void {
    s.stop = { error: limit, entry: false };
    this.#finish(s);
  }

  /** The key's new session, or undefined while `maxConcurrent` sessions of the function are open. */
  #open(key: string, sid: string): Session<I, O> | undefined {
    const w = this.worker;
    let stream: StreamKind<I, O>;
    try {
      stream = w.fn[kOpen](undefined, false);
    } catch (error) {
      if ((error as { code?: unknown })?.code === 'ERR_STREAM_LIMIT') return undefined;
      throw error;
    }
    const s = new Session<I, O>(key, sid, stream);
    if (!this.replayDone) w.counters.replayedSessions++;
    this.sessions.set(key, s);
    this.#running.add(s);
    w.live++;
    s.forwarded = this.#forward(s);
    if (this.replayDone) this.#armAge(s);
    return s;
  }

  async #forward(s: Session<I, O>): Promise<void> {
    try {
      await drainOutputs(s.stream, (batch) => {
        for (const value of batch) this.#output(s, value);
        // The handler ran: it may have taken events.
        if (this.#budgetWaiters.size > 0) this.budgetFreed();
        return this.#waitRoom();
      });
    } catch (error) {
      this.#output(s, undefined, error);
    }
    s.forwardDone = true;
    await s.stream[kFinished];
    this.#ended(s);
    this.budgetFreed();
    this.#running.delete(s);
    this.worker.live--;
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
    if (s.ageTimer !== null) clearTimeout(s.ageTimer);
    s.ageTimer = null;
    this.#holding.delete(s);
    this.buffered -= s.sent.length;
    const sent = s.sent;
    s.sent = [];
    // Stopped by a hand-off or a takeover: nothing is acked, the next owner replays it all.
    if (this.dropped) return;
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    const endTaken = s.stream[kTakenEnd]();
    let kept = Math.max(s.stream[kTaken]() - s.sentBase, s.sentBase === 0 ? 1 : 0);
    // The entry that could not be decoded ended the input: the session keeps it if its handler read to that end.
    if (s.stop?.entry === true && endTaken) kept = sent.length;
    const moved = sent.slice(Math.min(kept, sent.length));
    const keptStop = s.stop !== undefined && (s.stop.entry ? kept >= sent.length : endTaken);
    if (keptStop && !s.failed) {
      const stop = s.stop as { error: Error; entry: boolean };
      if (!stop.entry) this.worker.counters.capped++;
      this.#queue({ output: { sid: s.sid, seq: ++s.seq, key: s.key, error: serializeError(stop.error) } });
    }
    let acks = s.ids;
    if (moved.length > 0) {
      const away = new Set(moved.map((e) => e.id));
      acks = acks.filter((id) => !away.has(id));
      for (const entry of moved) this.#hold(entry);
      this.worker.counters.handedOn += moved.length;
    }
    this.#queue({ acks, ended: s.sid, lastSeq: s.seq });
    if (moved.length > 0) this.drainHeld().catch((error: unknown) => this.worker.report(error));
  }

  /** Queues the session's next output (or its failure, after which it makes no more). */
  #output(s: Session<I, O>, value: O | undefined, error?: unknown): void {
    if (this.dropped || s.failed) return;
    const w = this.worker;
    if (error === undefined) {
      try {
        const payload = encodeChecked(
          w.codec as Codec<O>,
          value as O,
          w.maxEventBytes,
          `output of session ${JSON.stringify(s.sid)}`,
        );
        this.#queue({ output: { sid: s.sid, seq: ++s.seq, key: s.key, payload } });
        return;
      } catch (encodeError) {
        error = encodeError;
      }
    }
    this.#queue({ output: { sid: s.sid, seq: ++s.seq, key: s.key, error: serializeError(error) } });
    s.failed = true;
    void s.stream.cancel(error);
  }

  /**
   * With `maxSessionAge`, writes an age marker for the session once it should be that old: by this machine's
   * clock at first (`Date.now()` against Redis' time of its first entry), and after a marker that came too
   * early, `after` ms later (the age still missing by the marker's id). Whether it ends the session is decided
   * by the marker's id alone.
   */
  #armAge(s: Session<I, O>, after?: number): void {
    const max = this.worker.maxSessionAge;
    if (max <= 0 || s.ageMarked || s.ageTimer !== null || s.forwardDone || this.sessions.get(s.key) !== s) return;
    const wait = after ?? Math.min(max + 1, Math.max(0, s.start + max + 1 - Date.now()));
    s.ageTimer = setTimeout(() => {
      s.ageTimer = null;
      if (this.dropped || this.sessions.get(s.key) !== s) return;
      s.ageMarked = true;
      this.#mark(s, 'age');
    }, wait).unref();
  }

  /** Writes a close marker for the session (fenced), retrying after errors until the partition is gone. */
  #mark(s: Session<I, O>, reason?: 'age'): void {
    this.worker.log.markClose(this.lease, s.key, s.sid, reason).catch(async (error: unknown) => {
      if (this.#failed(error)) return;
      await sleep(RETRY_MS);
      if (this.dropped) return;
      this.#mark(s, reason);
    });
  }

  /**
   * The log ended the session (its marker was read, a cap, an entry it cannot decode): its input ends. The
   * key's next session waits until it has finished (`#ended` may give it entries).
   */
  #finish(s: Session<I, O>): void {
    this.sessions.delete(s.key);
    if (s.ageTimer !== null) clearTimeout(s.ageTimer);
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
    await new Promise((resolve) => setImmediate(resolve));
    const w = this.worker;
    const delivery = w.delivery;
    // With local delivery, a batch never needs more room than the whole queue has.
    const batch = delivery === null ? COMMIT_BATCH : Math.min(COMMIT_BATCH, delivery.limit);
    while (this.#outbox.length > 0 && !this.#discard) {
      const outputs: OutputRecord[] = [];
      const acks: string[] = [];
      const ended: string[] = [];
      const endedSeqs: number[] = [];
      let taken = 0;
      // A prefix of the queue, in order: a session's acks never go before its outputs.
      for (const item of this.#outbox) {
        if ('output' in item) {
          if (outputs.length === batch) break;
          outputs.push(item.output);
        } else {
          acks.push(...item.acks);
          if (item.ended !== undefined) {
            ended.push(item.ended);
            endedSeqs.push(item.lastSeq ?? 0);
          }
        }
        taken++;
      }
      // Room in the local queue first: a slow onOutput holds the commits (and so the sessions).
      if (delivery !== null) await delivery.reserve(outputs.length);
      // The same commit (the same serial) until it succeeds: a retry after a lost reply is recognised.
      const commit = {
        outputs,
        acks,
        ended,
        endedSeqs,
        serial: delivery === null ? undefined : ++this.#serial,
        check: w.checkReplay,
      };
      let result: CommitResult | null = null;
      while (result === null && !this.#discard) {
        try {
          result = await w.log.commit(this.lease, commit);
        } catch (error) {
          if (this.#failed(error)) break;
          await sleep(RETRY_MS);
        }
      }
      if (result === null) {
        delivery?.unreserve(outputs.length);
        break;
      }
      w.counters.outputs += outputs.length;
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
      const base = { id, partition: this.partition, key: o.key, sid: o.sid, seq: o.seq };
      let content: OutputContent<O>;
      try {
        content = decodedOutput(codec, o);
      } catch (error) {
        this.worker.report(
          Object.assign(
            new TypeError(`The codec could not decode output ${o.seq} of session ${JSON.stringify(o.sid)}`, { cause: error }),
            {
              code: 'ERR_VELO_DECODE',
            },
          ),
        );
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
    for (const s of running) if (s.ageTimer !== null) clearTimeout(s.ageTimer);
    if (this.#tickTimer !== null) clearTimeout(this.#tickTimer);
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

class Worker<I, O> implements RedisWorker {
  readonly id: string;
  readonly name: string;
  readonly fn: StreamFn<I, O> & Openable<I, O>;
  readonly log: PartitionLog;
  readonly ttl: number;
  readonly readCount: number;
  readonly trimInterval: number;
  readonly codec: Codec<unknown>;
  readonly maxEventBytes: number;
  readonly maxBuffered: number;
  readonly maxSessionEvents: number;
  readonly maxSessionAge: number;
  readonly checkReplay: boolean;
  /** Local delivery (`onOutput`), or null. */
  readonly delivery: LocalDelivery<O> | null;
  readonly counters = {
    acquired: 0,
    lost: 0,
    fenced: 0,
    released: 0,
    trimmed: 0,
    replayed: 0,
    replayedSessions: 0,
    outputs: 0,
    errors: 0,
    capped: 0,
    /** Ticks written (`PartitionRun.#tick`). */
    ticks: 0,
    handedOn: 0,
    diverged: 0,
  };
  readonly #trips = new RoundTrips();
  readonly #share: number;
  live = 0;
  /** Redis' clock less this machine's (`Date.now()`), ms, as the last tick's id showed: when ticks are due. */
  clockOffset = 0;
  readonly #runs = new Map<number, PartitionRun<I, O>>();
  /** The last fencing epoch this worker was granted, per partition. */
  readonly #epochs = new Map<number, number>();
  readonly #onError: (error: unknown) => void;
  readonly #order: number[];
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  readonly #idle = new Map<number, { tail: string; resolve: () => void }>();
  #waker: Promise<void>;
  readonly #expiry: NodeJS.Timeout;
  readonly #renewer: NodeJS.Timeout;
  /** How late each successful renewal was: its reply, past `ttl/3` after the last one was sent (us). */
  readonly #renewals = new RoundTrips();
  #wakerSignal: (() => void) | null = null;
  #blockingOn: Set<number> | null = null;
  #interrupting = false;

  constructor(fn: StreamFn<I, O>, options: Resolved<unknown>, extra: RedisWorkerOptions<O>) {
    const {
      leaseTtl = 10_000,
      readCount = 256,
      trimInterval = 5000,
      workerId = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`,
      onError,
      maxBufferedEvents = Math.max(65_536, options.partitions),
      maxSessionEvents = 0,
      maxSessionAge = 0,
      onOutput,
      maxUndelivered = UNDELIVERED_DEFAULT,
      checkReplay = false,
    } = extra;
    // (At most a Node timer's longest delay: the lease's timers are set from it.)
    if (!Number.isInteger(leaseTtl) || leaseTtl < 300 || leaseTtl > MAX_TIMER_MS)
      throw outOfRange(
        `redisWorker(): options.leaseTtl must be an integer from 300 to ${MAX_TIMER_MS} (ms), not ${describe(leaseTtl)}`,
      );
    if (!Number.isInteger(readCount) || readCount < 1 || readCount > 10_000)
      throw outOfRange(`redisWorker(): options.readCount must be an integer from 1 to 10000, not ${describe(readCount)}`);
    if (!Number.isInteger(trimInterval) || trimInterval < 0) {
      throw outOfRange(`redisWorker(): options.trimInterval must be an integer >= 0 (ms), not ${describe(trimInterval)}`);
    }
    if (typeof workerId !== 'string' || !/^[^\s:]{1,200}$/.test(workerId))
      throw invalidType(
        `redisWorker(): options.workerId must be 1-200 characters without ':' or whitespace, not ${describe(workerId)}`,
      );
    if (onError !== undefined && typeof onError !== 'function')
      throw invalidType(`redisWorker(): options.onError must be a function, not ${describe(onError)}`);
    if (!Number.isInteger(maxBufferedEvents) || maxBufferedEvents < options.partitions || maxBufferedEvents > 1e9) {
      throw outOfRange(
        `redisWorker(): options.maxBufferedEvents must be an integer from options.partitions (${options.partitions}: one event per partition) to 1e9, not ${describe(maxBufferedEvents)}`,
      );
    }
    if (!Number.isInteger(maxSessionEvents) || maxSessionEvents < 0) {
      throw outOfRange(
        `redisWorker(): options.maxSessionEvents must be an integer >= 0 (0: no cap), not ${describe(maxSessionEvents)}`,
      );
    }
    if (!Number.isInteger(maxSessionAge) || maxSessionAge < 0) {
      throw outOfRange(
        `redisWorker(): options.maxSessionAge must be an integer >= 0 (ms; 0: no cap), not ${describe(maxSessionAge)}`,
      );
    }
    if (onOutput !== undefined && typeof onOutput !== 'function')
      throw invalidType(`redisWorker(): options.onOutput must be a function, not ${describe(onOutput)}`);
    if (!Number.isInteger(maxUndelivered) || maxUndelivered < 1 || maxUndelivered > 1e9)
      throw outOfRange(`redisWorker(): options.maxUndelivered must be an integer from 1 to 1e9, not ${describe(maxUndelivered)}`);
    if (typeof checkReplay !== 'boolean')
      throw invalidType(`redisWorker(): options.checkReplay must be a boolean, not ${describe(checkReplay)}`);
    this.id = workerId;
    this.name = options.keys.name;
    this.checkReplay = checkReplay;
    this.delivery = onOutput === undefined ? null : new LocalDelivery(onOutput, maxUndelivered, (error) => this.report(error));
    this.fn = fn as StreamFn<I, O> & Openable<I, O>;
    this.ttl = leaseTtl;
    this.readCount = readCount;
    this.trimInterval = trimInterval;
    this.codec = options.codec;
    this.maxEventBytes = options.maxEventBytes;
    this.maxBuffered = maxBufferedEvents;
    this.#share = Math.floor(maxBufferedEvents / options.partitions);
    this.maxSessionEvents = maxSessionEvents;
    this.maxSessionAge = maxSessionAge;
    this.log = timedLog(
      new RedisLog(options.client, options.keys, options.partitions, (error) => this.report(error)),
      this.#trips,
    );
    this.#onError = onError ?? ((error) => process.emitWarning(error instanceof Error ? error : new Error(String(error))));
    // Each worker tries free partitions from its own starting point: fewer collisions when many start at once.
    const start = randomBytes(2).readUInt16BE() % options.partitions;
    this.#order = Array.from({ length: options.partitions }, (_, i) => (start + i) % options.partitions);
    this.#waker = this.#wake();
    this.#tick();
    // Leases run out whether or not Redis answers: a renewal stuck on a silent connection (a partition that
    // resets nothing) must not keep partitions that other workers may own by now.
    this.#expiry = setInterval(() => this.#expire(), Math.floor(this.ttl / 3));
    this.#expiry.unref();
    // Renewals on their own clock, never behind a balancing round (lag measures, trims, acquisitions): a round
    // slowed by a backlog made a lone worker lose its own leases.
    this.#renewer = setInterval(() => this.#renewAll(), Math.floor(this.ttl / 3));
    this.#renewer.unref();
  }

  stats(): RedisWorkerStats {
    let held = 0;
    let waitingKeys = 0;
    let lag = 0;
    let buffered = 0;
    const partitionLag: Record<number, number> = {};
    const partitionBuffered: Record<number, number> = {};
    const owned = [...this.#runs.keys()].sort((a, b) => a - b);
    for (const p of owned) {
      const run = this.#runs.get(p) as PartitionRun<I, O>;
      held += run.heldCount;
      waitingKeys += run.spilledKeys;
      lag += run.lag;
      partitionLag[p] = run.lag;
      run.reconcile();
      buffered += run.buffered;
      partitionBuffered[p] = run.buffered;
    }
    const roundTrip = { count: this.#trips.totals().count, ...this.#trips.percentiles() };
    const late = this.#renewals.percentiles();
    const renewals = { count: this.#renewals.totals().count, lateP50: late.p50, lateP99: late.p99, lateMax: late.max };
    const delivered = this.delivery?.delivered ?? 0;
    const undelivered = this.delivery?.undelivered ?? 0;
    return {
      owned,
      lag,
      partitionLag,
      sessions: this.live,
      held,
      waitingKeys,
      buffered,
      partitionBuffered,
      ...this.counters,
      delivered,
      undelivered,
      roundTrip,
      renewals,
    };
  }

  /**
   * Each partition's share of `maxBufferedEvents`: fixed (by the partition count, not by the partitions owned
   * now), so that taking or losing partitions never leaves one above its share while another reads into
   * the same budget.
   */
  share(): number {
    return this.#share;
  }

  [kRoundTrips](): RoundTripTotals {
    return this.#trips.totals();
  }

  [kRenewalLateness](): RoundTripTotals {
    return this.#renewals.totals();
  }

  /** Renews every lease not being renewed already; each reply is handled on its own. */
  #renewAll(): void {
    if (this.#closing !== null) return;
    for (const run of this.#runs.values()) {
      if (run.renewing) continue;
      run.renewing = true;
      void this.#renew(run).finally(() => (run.renewing = false));
    }
  }

  async #renew(run: PartitionRun<I, O>): Promise<void> {
    const sent = performance.now();
    let held: boolean | undefined;
    try {
      held = await this.log.renew(run.lease, this.ttl);
    } catch (error) {
      this.report(error);
    }
    if (this.#runs.get(run.partition) !== run) return;
    if (held === true) {
      this.#renewals.record(Math.max(0, performance.now() - run.renewedAt - this.ttl / 3) * 1000);
      run.renewedAt = sent;
      run.validUntil = sent + this.ttl;
    } else if (held === false || performance.now() >= run.validUntil) this.lose(run);
  }

  #expire(): void {
    const now = performance.now();
    for (const run of [...this.#runs.values()]) if (now >= run.validUntil) this.lose(run);
  }

  report(error: unknown): void {
    this.counters.errors++;
    this.#onError(reportable(error));
  }

  #tick(): void {
    if (this.#closing !== null) return;
    this.#ticking = this.#balance()
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        this.#ticking = null;
        if (this.#closing === null) this.#timer = setTimeout(() => this.#tick(), Math.floor(this.ttl / 3));
      });
  }

  /**
   * Measures the lag of the partitions held, trims them, then takes or hands back partitions toward a fair
   * share. (Leases are renewed on their own clock: `#renewAll`.)
   */
  async #balance(): Promise<void> {
    const now = performance.now();
    const live = await this.log.heartbeat(this.id, this.ttl).catch((error: unknown) => {
      this.report(error);
      return 0;
    });
    await Promise.all(
      [...this.#runs.values()].map(async (run) => {
        try {
          run.lag = await this.log.lag(run.partition);
        } catch (error) {
          this.report(error);
        }
        if (this.trimInterval === 0 || now - run.lastTrim < this.trimInterval) return;
        run.lastTrim = now;
        try {
          this.counters.trimmed += await this.log.trim(run.lease);
        } catch (error) {
          if (error instanceof FencedError) {
            this.counters.fenced++;
            this.lose(run);
          } else this.report(error);
        }
      }),
    );
    if (live === 0 || this.#closing !== null) return;
    const share = Math.ceil(this.log.partitions / live);
    if (this.#runs.size > share) {
      const extra = [...this.#runs.values()].slice(share);
      await Promise.all(extra.map((run) => this.#release(run)));
      return;
    }
    // Free partitions are tried as many at a time as the share lacks (one at a time, a worker starting on a
    // backlog took minutes to own its share while its first partitions' traffic slowed each attempt).
    const candidates = this.#order.filter((p) => !this.#runs.has(p));
    while (candidates.length > 0 && this.#runs.size < share && this.#closing === null) {
      const batch = candidates.splice(0, share - this.#runs.size);
      await Promise.all(
        batch.map(async (p) => {
          const sent = performance.now();
          const lease = await this.log.acquire(p, this.id, this.ttl);
          if (lease === null) return;
          if (this.#closing !== null) {
            await this.log.release(lease);
            return;
          }
          this.counters.acquired++;
          this.#checkEpoch(lease);
          this.#runs.set(p, new PartitionRun(this, lease, sent));
        }),
      );
    }
  }

  /** Fencing epochs only grow while Redis keeps its data: one that went back means the server lost writes. */
  #checkEpoch(lease: Lease): void {
    const epoch = Number(lease.token.slice(lease.token.lastIndexOf(':') + 1));
    const before = this.#epochs.get(lease.partition) ?? 0;
    this.#epochs.set(lease.partition, epoch);
    if (epoch > before) return;
    this.report(
      Object.assign(
        new Error(
          `Partition ${lease.partition}: the lease epoch did not grow (it was ${before} when this worker last held the partition, and is ${epoch} now): the Redis server lost data (a restart without persistence, or a failover to a replica that was behind). Events sent before, and the state of sessions live then, may be lost.`,
        ),
        { code: 'ERR_VELO_LOG_RESET', partition: lease.partition },
      ),
    );
  }

  async #release(run: PartitionRun<I, O>): Promise<void> {
    this.#runs.delete(run.partition);
    this.counters.released++;
    await run.release();
  }

  lose(run: PartitionRun<I, O>): void {
    if (this.#runs.get(run.partition) !== run) return;
    this.#runs.delete(run.partition);
    this.counters.lost++;
    void run.drop();
  }

  /** The pump of `run` found nothing after `tail`: resolves when there may be more (or the run stops). */
  idle(run: PartitionRun<I, O>, tail: string): Promise<void> {
    if (run.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle.set(run.partition, { tail, resolve });
      if (this.#wakerSignal !== null) {
        this.#wakerSignal();
        this.#wakerSignal = null;
      } else if (this.#blockingOn !== null && !this.#blockingOn.has(run.partition)) void this.#interrupt();
    });
  }

  wakeIdle(partition: number): void {
    const waiting = this.#idle.get(partition);
    this.#idle.delete(partition);
    waiting?.resolve();
  }

  async #interrupt(): Promise<void> {
    if (this.#interrupting) return;
    this.#interrupting = true;
    // CLIENT UNBLOCK can reach the server before the XREAD it targets blocks: retry while that read is on.
    const blocking = this.#blockingOn;
    try {
      for (let i = 0; i < 20 && this.#blockingOn === blocking && blocking !== null; i++) {
        await this.log.interrupt();
        await sleep(2);
      }
    } catch (error) {
      this.report(error);
    } finally {
      this.#interrupting = false;
    }
    // A partition that went idle meanwhile found this loop running and left it to wake the read: if the read now
    // on is a newer one that leaves it out, interrupt that one too (else it waits for the read's whole BLOCK).
    const now = this.#blockingOn;
    if (now !== null && now !== blocking && [...this.#idle.keys()].some((p) => !now.has(p))) void this.#interrupt();
  }

  /** One blocking read (on its own connection) for every idle partition: the wake-up, no polling. */
  async #wake(): Promise<void> {
    while (this.#closing === null) {
      if (this.#idle.size === 0) {
        await new Promise<void>((resolve) => (this.#wakerSignal = resolve));
        continue;
      }
      const positions = new Map([...this.#idle].map(([p, w]) => [p, w.tail]));
      this.#blockingOn = new Set(positions.keys());
      let ready: number[];
      try {
        ready = await this.log.wait(positions, WAIT_MS);
      } catch (error) {
        if (this.#closing !== null) break;
        this.report(error);
        await sleep(RETRY_MS);
        ready = [...positions.keys()];
      } finally {
        this.#blockingOn = null;
      }
      for (const p of ready) this.wakeIdle(p);
    }
  }

  notifySessionEnded(): void {
    for (const run of this.#runs.values()) {
      if (run.heldCount > 0) run.drainHeld().catch((error: unknown) => this.report(error));
      else if (run.spilledKeys > 0) run.reread().catch((error: unknown) => this.report(error));
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#timer !== null) clearTimeout(this.#timer);
      clearInterval(this.#renewer);
      // No lease is renewed from here on, so by this worker's own clock each runs out at its `validUntil`. Past
      // the last one nothing it writes would be accepted: close() stops waiting for Redis (unreachable, say)
      // and for handlers that do not finish, drops what is left, and lets the leases lapse.
      const deadline = Math.max(performance.now() + this.ttl / 3, ...[...this.#runs.values()].map((run) => run.validUntil));
      let releasing: PartitionRun<I, O>[] = [];
      const released = new Set<PartitionRun<I, O>>();
      const graceful = (async () => {
        await this.#ticking;
        releasing = [...this.#runs.values()];
        this.#runs.clear();
        // Out of the live set first: the others' fair share then counts without this worker.
        await this.log.leave(this.id).catch((error: unknown) => this.report(error));
        await Promise.all(
          releasing.map(async (run) => {
            await run.release();
            released.add(run);
            this.counters.released++;
          }),
        );
      })();
      /** True if `work` settled before the deadline. */
      const byDeadline = async (work: Promise<unknown>): Promise<boolean> => {
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([
          work.then(() => true),
          new Promise<boolean>(
            (resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()))),
          ),
        ]);
        clearTimeout(timer);
        return inTime;
      };
      const inTime = await byDeadline(graceful);
      clearInterval(this.#expiry);
      if (!inTime) {
        const left = [...new Set([...releasing, ...this.#runs.values()])].filter((run) => !released.has(run));
        this.#runs.clear();
        for (const run of left) void run.drop();
        const partitions = left.map((run) => run.partition).sort((a, b) => a - b);
        this.report(
          new CloseTimeoutError(
            partitions,
            `close() stopped waiting: Redis did not answer, or a handler did not finish, before this worker's leases ran out; partitions [${partitions.join(', ')}] were dropped, not released (their next owner replays their live sessions)`,
          ),
        );
      }
      // Every committed output reaches onOutput before close() resolves (partitions lost earlier included),
      // unless onOutput itself holds on past the deadline.
      if (this.delivery !== null && !(await byDeadline(this.delivery.drained()))) {
        this.report(
          new CloseTimeoutError(
            [],
            `close() stopped waiting: onOutput did not take every committed output before this worker's leases ran out (${this.delivery.undelivered} undelivered; they are in Redis, readable with redisOutputs)`,
          ),
        );
      }
      this.#wakerSignal?.();
      await this.log.close();
      await this.#waker;
    })();
    return this.#closing;
  }
}

/**
 * Runs `fn` as a distributed stream function: this process joins the workers of `options.name`, takes a fair
 * share of its partitions, and runs one instance of `fn` per live key (see the module comment for the
 * semantics). Outputs go to the partitions' output streams; read them with `redisOutputs`.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or an option is invalid.
 */
export function redisWorker<I = unknown, O = unknown>(fn: StreamFn<I, O>, options: RedisWorkerOptions<O>): RedisWorker {
  if (typeof (fn as Partial<Openable<I, O>> | null)?.[kOpen] !== 'function') {
    throw invalidType(`redisWorker(): fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  }
  return new Worker<I, O>(fn, resolveOptions(options as RedisOptions<unknown>, 'redisWorker()', WORKER_KEYS), options);
}
