// Workers: any number of processes share the partitions of a distributed
// stream function. Each owns a fair share under leases with fencing tokens,
// and runs one local instance of the function per live key of its partitions.
//
// A session is a run of one key's events. The log ends it: its idle time
// passing by the log's clock (entry ids), a cap, or an entry it cannot decode; or
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
//
// This file is the worker: leases, balance, renewals, wake-ups, stats and close. A partition it owns is a
// `PartitionRun` (partition-run.ts), its sessions `Session` (session.ts), local delivery `LocalDelivery`
// (local-delivery.ts); the public types are in worker-types.ts.
import type { Debounce } from '../../core/debounce';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import {
  CloseTimeoutError,
  FencedError,
  describe,
  invalidType,
  invalidValue,
  logResetError,
  reporterOf,
  versionRefusedError,
} from '../../errors';
import { integerOption } from '../../validate';
import { isWellFormed } from '../../text';
import type { StreamFn } from '../../types';
import type { Codec } from '../common/codec';
import { RoundTrips, type RoundTripTotals, kRenewalLateness, kRoundTrips, kServes, timedLog } from './metrics';
import type { Heartbeat, Lease, PartitionLog } from '../common/transport';
import type { WorkerBackend } from '../common/backend';
import { LocalDelivery } from './local-delivery';
import { PartitionRun } from './partition-run';
import { StartGate } from './start-gate';
import { OpeningSlice } from './opening-slice';
import { LIMIT_KEYS, checkDebounceTarget, checkLimits } from './worker-limits';
import { type PartitionHost, type WorkerCounters, newCounters } from './partition-host';
import { type Openable, kOpen } from '../../core/protocol';
import { Outage } from './outage';
import { type Clock, realClock, sleepOn } from '../common/clock';
import type { Worker, WorkerOptions, WorkerStats } from './worker-types';
import { WorkerPermits, checkWorkerLimiter } from './session-permits';
import { type WorkerVersions, checkVersions } from './versions';
import { planBalance } from '../rules/versions';
import { SlotReport } from './slot-watch';
import { renewed, workerStats } from './worker-stats';

export type {
  Migrate,
  NoInferred,
  Worker,
  WorkerOptions,
  WorkerStats,
  RoundTripStats,
  RenewalStats,
  SyncMigrate,
  WorkerPermitStats,
  WorkerSlotStats,
} from './worker-types';
export type { SessionLimiters, SessionPermitItem, WorkerLimiterOptions } from './session-permits';

/** Default of `maxUndelivered`. */
const UNDELIVERED_DEFAULT = 1024;
/** The names of `WorkerOptions` (the worker's own options, besides the backend's client and the log's shape). */
export const WORKER_KEYS = [
  ...LIMIT_KEYS,
  'trimInterval',
  'workerId',
  'onError',
  'onOutput',
  'maxUndelivered',
  'outputRetention',
  'outputMaxLen',
  'limiter',
  'version',
  'versions',
  'migrate',
];
/** The longest a blocking wake-up read waits before it is re-issued, ms. */
const WAIT_MS = 2000;
/** `Worker.backend` by the server a backend's messages name (`WorkerBackend.server`). */
const BACKENDS: Readonly<Record<string, Worker['backend']>> = { Redis: 'redis', Postgres: 'postgres' };
class RunningWorker<I, O> implements Worker, PartitionHost<I, O> {
  readonly id: string;
  readonly name: string;
  readonly backend: Worker['backend'];
  readonly fn: StreamFn<I, O> & Openable<I, O>;
  /** Its version and the older ones it runs (`version`, `versions`). */
  readonly #versions: WorkerVersions<I, O>;
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
  readonly maxCheckpointBytes: number;
  readonly maxJournalBytes: number;
  /** `outputRetention: 'acked'`: outputs every consumer group has acked are trimmed. */
  readonly trimAcked: boolean;
  readonly outputMaxLen: number;
  readonly maxSessionTimers: number;
  readonly debounce: Debounce | null;
  /** Per-key state beyond a session (`keyState`), or null. */
  readonly keyState: { readonly retention: number } | null;
  /** Local delivery (`onOutput`), or null. */
  readonly delivery: LocalDelivery<O> | null;
  /** The limiters its sessions and steps take permits of (`limiter`), or null. */
  readonly permits: WorkerPermits | null;
  readonly counters: WorkerCounters = newCounters();
  /** Keys waiting for a session slot (`maxConcurrent`), reported at most once a minute. */
  readonly slots = new SlotReport(
    () => this.fn.config.maxConcurrent,
    () => this.clock.now(),
    (error) => this.report(error),
  );
  readonly #trips = new RoundTrips();
  readonly #share: number;
  live = 0;
  readonly clock: Clock = realClock;
  readonly startGate = new StartGate(this.clock);
  readonly openingSlice: OpeningSlice;
  /** The backend unreachable: its failures' retries and reports spaced out. */
  readonly #outage = new Outage(this.clock);
  /** Redis' clock less this machine's (`Date.now()`), ms, as the last tick's id showed: when ticks are due. */
  clockOffset = 0;
  readonly #runs = new Map<number, PartitionRun<I, O>>();
  /** The last fencing epoch this worker was granted, per partition. */
  readonly #epochs = new Map<number, number>();
  readonly #onError: (error: unknown) => void;
  /** close() has resolved (or rejected): `report` tells no one any more. */
  #closed = false;
  readonly #backend: WorkerBackend;
  readonly #order: number[];
  #timer: NodeJS.Timeout | null = null;
  /**
   * Balances come every `ttl/3` (regular), and also early, at a time the last one saw something may change: a
   * lease it wanted and found held runs out, or another worker's registration does (a dead worker's registration
   * and leases, renewed together, run out together). So a dead owner's partitions are taken over as their leases
   * run out, not up to a balance period after. `#wakes`: those times by what they wait for (`lease <worker>`,
   * `worker <worker>`); `#wokeFor`: what this worker woke early for since its last regular balance, once each, so
   * live workers renewing short leases (another `leaseTtl`) cost one early balance each per period, not one per
   * renewal.
   */
  readonly #wakes = new Map<string, number>();
  readonly #wokeFor = new Set<string>();
  #regularAt = 0;
  #regular = true;
  /** A registration renewal (`#renewAll`) is in flight. */
  #registering = false;
  /**
   * The calls of the renewal clock in flight (the registration's and the leases' renewals, on the lease
   * connection): close() lets them settle before it closes that connection, else it fails them itself and they
   * report a lost connection on a clean close.
   */
  readonly #renewing = new Set<Promise<void>>();
  #ticking: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  /** Sessions ended in this turn: the partitions look for held and waiting entries at the next (`notifySessionEnded`). */
  #sessionsEnded = false;
  readonly #idle = new Map<number, { tail: string; resolve: () => void }>();
  #waker: Promise<void>;
  readonly #expiry: NodeJS.Timeout;
  readonly #renewer: NodeJS.Timeout;
  /** How late each successful renewal was: its reply, past `ttl/3` after the last one was sent (us). */
  readonly #renewals = new RoundTrips();
  #wakerSignal: (() => void) | null = null;
  #blockingOn: Set<number> | null = null;
  /** The loop that ends a blocking read early (`#interrupt`), while it runs: close() waits for it. */
  #interrupting: Promise<void> | null = null;

  constructor(fn: StreamFn<I, O>, backend: WorkerBackend, extra: WorkerOptions<O, I>, W: string) {
    const {
      trimInterval = 5000,
      workerId = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`,
      onError,
      onOutput,
      maxUndelivered = UNDELIVERED_DEFAULT,
      outputRetention = 'all',
      outputMaxLen = 0,
    } = extra;
    const {
      leaseTtl,
      readCount,
      maxBufferedEvents,
      maxSessionEvents,
      maxSessionAge,
      maxSessionTimers,
      maxCheckpointBytes,
      maxJournalBytes,
      checkReplay,
      debounce,
      keyState,
    } = checkLimits(W, extra, backend.partitions);
    checkDebounceTarget(W, debounce, fn);
    let limiterOption: unknown;
    try {
      limiterOption = extra.limiter;
    } catch (error) {
      throw invalidType(`${W}: the "limiter" option could not be read (${describe(error)})`, error);
    }
    const limiters = checkWorkerLimiter(W, limiterOption, fn);
    let versionOptions: [unknown, unknown, unknown];
    try {
      versionOptions = [extra.version, extra.versions, extra.migrate];
    } catch (error) {
      throw invalidType(`${W}: the "version" options could not be read (${describe(error)})`, error);
    }
    this.#versions = checkVersions<I, O>(...versionOptions, W);
    integerOption(W, 'trimInterval', trimInterval, 0, Infinity, 'of at least 0 (ms)');
    if (typeof workerId !== 'string') throw invalidType(`${W}: options.workerId must be a string, not ${describe(workerId)}`);
    // (Control characters too: Postgres stores no NUL, and none belongs in a name shown on dashboards.)
    if (!/^[^\s:\p{Cc}]{1,200}$/u.test(workerId) || !isWellFormed(workerId))
      throw invalidValue(
        `${W}: the "workerId" option must be 1-200 characters without ':', whitespace, control characters or lone surrogates. Received ${describe(workerId)}`,
      );
    if (onError !== undefined && typeof onError !== 'function')
      throw invalidType(`${W}: options.onError must be a function, not ${describe(onError)}`);
    if (onOutput !== undefined && typeof onOutput !== 'function')
      throw invalidType(`${W}: options.onOutput must be a function, not ${describe(onOutput)}`);
    integerOption(W, 'maxUndelivered', maxUndelivered, 1, 1e9, 'from 1 to 1e9');
    this.id = workerId;
    this.name = backend.name;
    this.backend = BACKENDS[backend.server] ?? 'memory';
    this.checkReplay = checkReplay;
    this.maxCheckpointBytes = maxCheckpointBytes;
    this.maxJournalBytes = maxJournalBytes;
    if (outputRetention !== 'all' && outputRetention !== 'acked')
      throw invalidValue(`${W}: options.outputRetention must be 'all' or 'acked', not ${describe(outputRetention)}`);
    this.trimAcked = outputRetention === 'acked';
    integerOption(W, 'outputMaxLen', outputMaxLen, 0, 1e12, 'from 0 to 1e12 (0: no cap)');
    this.outputMaxLen = outputMaxLen;
    this.maxSessionTimers = maxSessionTimers;
    this.debounce = debounce;
    this.keyState = keyState;
    this.delivery = onOutput === undefined ? null : new LocalDelivery(onOutput, maxUndelivered, (error) => this.report(error));
    this.permits = limiters === undefined ? null : new WorkerPermits(limiters, this.clock, (error) => this.report(error));
    this.fn = fn as StreamFn<I, O> & Openable<I, O>;
    this.ttl = leaseTtl;
    this.openingSlice = new OpeningSlice(this.clock, leaseTtl);
    this.readCount = readCount;
    this.trimInterval = trimInterval;
    this.codec = backend.codec;
    this.maxEventBytes = backend.maxEventBytes;
    this.maxBuffered = maxBufferedEvents;
    this.#share = Math.floor(maxBufferedEvents / backend.partitions);
    this.maxSessionEvents = maxSessionEvents;
    this.maxSessionAge = maxSessionAge;
    this.#backend = backend;
    this.log = timedLog(
      backend.openLog((error) => this.report(error)),
      this.#trips,
      () => this.#outage.reached(),
    );
    this.#onError = reporterOf(onError);
    // Each worker tries free partitions from its own starting point: fewer collisions when many start at once.
    const start = randomBytes(2).readUInt16BE() % backend.partitions;
    this.#order = Array.from({ length: backend.partitions }, (_, i) => (start + i) % backend.partitions);
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

  get version(): string {
    return this.#versions.version;
  }

  /** Superseded by a live worker of a newer version (`versions.ts`): it hands its partitions over. */
  superseded = false;

  fnFor(version: string): StreamFn<I, O> & Openable<I, O> {
    return this.#versions.older.get(version) ?? this.fn;
  }

  runsVersion(version: string): boolean {
    return version === '' || version === this.#versions.version || this.#versions.older.has(version);
  }

  get migrate(): ((state: unknown, fromVersion: string) => unknown) | null {
    return this.#versions.migrate;
  }

  stats(): WorkerStats {
    return workerStats(this, this.#runs, this.#trips, this.#renewals);
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

  [kServes](): { fn: StreamFn<I, O>; partitions: number } {
    return { fn: this.fn, partitions: this.log.partitions };
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
      this.#onRenewalClock(this.#renew(run), () => (run.renewing = false));
    }
    // The worker's registration is renewed here only (a balance leaves it where it is), and after its leases on
    // the same connection: when it dies, its registration runs out just after its leases, and the others, waking
    // then, find them free (a balance's renewal at another phase kept it registered up to ttl/3 past its leases,
    // and the partitions unowned that long: the failover bench's lease wait).
    if (!this.#registering) {
      this.#registering = true;
      this.#onRenewalClock(
        this.log.heartbeat(this.id, this.ttl, true, this.#versions.advert).then(
          () => {},
          (error: unknown) => this.report(error),
        ),
        () => (this.#registering = false),
      );
    }
  }

  /** Holds `call` (which never rejects) in `#renewing` until it settles, then runs `done`. */
  #onRenewalClock(call: Promise<void>, done: () => void): void {
    const settled = call.finally(() => {
      done();
      this.#renewing.delete(settled);
    });
    this.#renewing.add(settled);
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
      renewed(run, this.#renewals, sent, performance.now(), this.ttl);
    } else if (held === false || performance.now() >= run.validUntil) this.lose(run);
  }

  #expire(): void {
    const now = performance.now();
    for (const run of [...this.#runs.values()]) if (now >= run.validUntil) this.lose(run);
  }

  report(error: unknown): void {
    // Once close() resolved, nothing more reaches onError: a call it stopped waiting for (a server that did not
    // answer by the deadline) fails later with nobody listening for it.
    if (this.#closed) return;
    // A call refused because the log is closing (ERR_VELO_CLOSED): part of close(), not a failure to report.
    if (this.#closing !== null && (error as { code?: unknown } | null)?.code === 'ERR_VELO_CLOSED') return;
    this.counters.errors++;
    // (An outage's failures: every one counted and spacing the retries out, one a second reported.)
    const due = !this.#backend.unreachable(error) || this.#outage.failed();
    // (A callback of the user's, `effects` or `migrate`, may throw what is no error, even null: reported as one.)
    const thrown =
      (typeof error === 'object' && error !== null) || typeof error === 'function'
        ? error
        : new Error(`A value that is not an error was thrown: ${describe(error)}`, { cause: error });
    const reported = this.#backend.reportable(thrown);
    if (due && reported !== null) this.#onError(reported);
  }

  retryWait(): Promise<void> {
    return this.#outage.wait();
  }

  #tick(): void {
    if (this.#closing !== null) return;
    this.#ticking = this.#balance()
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        this.#ticking = null;
        this.#backend.check();
        if (this.#closing !== null) return;
        const now = performance.now();
        if (this.#regular) this.#regularAt = now + Math.floor(this.ttl / 3);
        let at = this.#regularAt;
        let wake: string | undefined;
        for (const [what, time] of this.#wakes) {
          if (!this.#wokeFor.has(what) && time < at) [at, wake] = [time, what];
        }
        this.#regular = wake === undefined;
        if (wake !== undefined) this.#wokeFor.add(wake);
        this.#timer = setTimeout(() => this.#tick(), Math.max(0, Math.ceil(at - now)));
      });
  }

  /**
   * Measures the lag of the partitions held, trims them, then takes or hands back partitions toward a fair
   * share. (Leases are renewed on their own clock: `#renewAll`.)
   */
  async #balance(): Promise<void> {
    const now = performance.now();
    if (this.#regular) this.#wokeFor.clear();
    this.#wakes.clear();
    // Registers this worker if it is not (its first balance, or after its registration ran out), without moving
    // its expiry off its leases' (`#renewAll`).
    const { live, next, adverts } = await this.log
      .heartbeat(this.id, this.ttl, false, this.#versions.advert)
      .catch((error: unknown): Heartbeat => {
        this.report(error);
        return { live: 0 };
      });
    // Timed from the reply (Redis measured the time left before it was sent), 1 ms past it (Redis removes a
    // registration, or expires a key, once it is below 0): never before, so a registration or lease still there
    // then was renewed, and is not woken for again (`#wokeFor`).
    if (next !== undefined && next.left >= 0) this.#wakeAt(`worker ${next.worker}`, performance.now() + next.left + 1);
    await Promise.all(
      [...this.#runs.values()].map(async (run) => {
        try {
          run.lag = await this.log.lag(run.partition);
          run.pinned = await this.log.pinned(run.partition);
        } catch (error) {
          this.report(error);
        }
        if (this.trimInterval === 0 || now - run.lastTrim < this.trimInterval) return;
        run.lastTrim = now;
        try {
          // (Added after the await: `x += await` reads x before it, and the partitions trim at once.)
          const trimmed = await this.log.trim(run.lease);
          this.counters.trimmed += trimmed;
          if (this.trimAcked || this.outputMaxLen > 0) {
            const trimmedOutputs = await this.log.trimOutputs(run.lease, this.trimAcked, this.outputMaxLen);
            this.counters.trimmedOutputs += trimmedOutputs;
          }
        } catch (error) {
          if (error instanceof FencedError) {
            this.counters.fenced++;
            this.lose(run);
          } else this.report(error);
        }
      }),
    );
    if (live === 0 || this.#closing !== null) return;
    // Workers superseded by a newer version take nothing, and hand over what they have; the share counts the others.
    const plan = planBalance({
      adverts: adverts ?? new Map(),
      live,
      me: this.id,
      mine: this.#versions.advert,
      partitions: this.log.partitions,
      held: [...this.#runs.values()].map((run) => ({ partition: run.partition, versions: run.versions() })),
    });
    this.superseded = plan.superseded;
    const share = plan.share;
    if (plan.over) {
      const extra = plan.handBack.map((p) => this.#runs.get(p) as PartitionRun<I, O>);
      await Promise.all(extra.map((run) => this.#release(run)));
      return;
    }
    // Free partitions are tried as many at a time as the share lacks (one at a time, a worker starting on a
    // backlog took minutes to own its share while its first partitions' traffic slowed each attempt).
    const candidates = this.#order.filter((p) => !this.#runs.has(p));
    // Partitions refused for their sessions' versions in this balance: reported together.
    const refused = new Map<number, readonly string[]>();
    while (candidates.length > 0 && this.#runs.size < share && this.#closing === null) {
      const batch = candidates.splice(0, share - this.#runs.size);
      await Promise.all(
        batch.map(async (p) => {
          const sent = performance.now();
          const lease = await this.log.acquire(p, this.id, this.ttl, this.#versions.takes);
          if ('refused' in lease) {
            this.counters.refusedVersions++;
            if (lease.refused.length > 0) refused.set(p, lease.refused);
            return;
          }
          if (!('token' in lease)) {
            if (lease.left >= 0) this.#wakeAt(`lease ${lease.holder}`, performance.now() + lease.left + 1);
            return;
          }
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
    this.#reportRefused(refused);
    // Past its share: partitions refused to other workers for their sessions' versions, which this one runs (while
    // workers run different versions). Without it they would wait, unowned, for a worker under its share that runs them.
    if (!plan.rescue || this.#closing !== null) return;
    for (const p of this.#order) {
      if (this.#runs.has(p) || this.#closing !== null) continue;
      const sent = performance.now();
      const lease = await this.log.acquire(p, this.id, this.ttl, this.#versions.takes, true);
      if (!('token' in lease)) continue;
      this.counters.acquired++;
      this.#checkEpoch(lease);
      this.#runs.set(p, new PartitionRun(this, lease, sent));
    }
  }

  /** When a refusal was last reported (`ERR_VELO_VERSION_REFUSED`, at most once a minute), ms on the worker's clock. */
  #refusedReported = -Infinity;

  /** Reports partitions refused for versions this worker does not run, unless it reported some within a minute. */
  #reportRefused(refused: ReadonlyMap<number, readonly string[]>): void {
    const now = this.clock.now();
    if (refused.size === 0 || now - this.#refusedReported < 60_000) return;
    this.#refusedReported = now;
    const partitions = [...refused.keys()].sort((a, b) => a - b);
    const versions = [...new Set([...refused.values()].flat())].sort();
    this.report(versionRefusedError(partitions, versions, this.#versions.takes));
  }

  /** A balance is due at `at` (see `#wakes`): the soonest of its kind is kept. */
  #wakeAt(what: string, at: number): void {
    this.#wakes.set(what, Math.min(at, this.#wakes.get(what) ?? Infinity));
  }

  /**
   * Fencing epochs only grow while Redis keeps its data: one that went back means the server lost writes, of every
   * partition (a worker that never held a partition cannot tell of it: the report says so).
   */
  #checkEpoch(lease: Lease): void {
    const epoch = Number(lease.token.slice(lease.token.lastIndexOf(':') + 1));
    const before = this.#epochs.get(lease.partition) ?? 0;
    this.#epochs.set(lease.partition, epoch);
    if (epoch > before) return;
    this.report(
      logResetError(
        lease.partition,
        `Partition ${lease.partition}: the lease epoch did not grow (it was ${before} when this worker last held the partition, and is ${epoch} now): the ${this.#backend.server} server lost data (a restart without persistence, or a failover to a replica that was behind). Events sent before, and the state of sessions live then, may be lost, on this function's other partitions too: a worker that never held one cannot tell.`,
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
      } else if (this.#blockingOn !== null && !this.#blockingOn.has(run.partition)) this.#interrupt();
    });
  }

  wakeIdle(partition: number): void {
    const waiting = this.#idle.get(partition);
    this.#idle.delete(partition);
    waiting?.resolve();
  }

  #interrupt(): void {
    if (this.#interrupting !== null) return;
    const blocking = this.#blockingOn;
    this.#interrupting = this.#unblock(blocking).finally(() => {
      this.#interrupting = null;
      // A partition that went idle meanwhile found this loop running and left it to wake the read: if the read
      // now on is a newer one that leaves it out, interrupt that one too (else it waits for the read's whole BLOCK).
      const now = this.#blockingOn;
      if (now !== null && now !== blocking && [...this.#idle.keys()].some((p) => !now.has(p))) this.#interrupt();
    });
  }

  /** Ends the blocking read on `blocking`'s partitions early (it reports its own failure). */
  async #unblock(blocking: Set<number> | null): Promise<void> {
    // CLIENT UNBLOCK can reach the server before the XREAD it targets blocks: retry while that read is on.
    try {
      for (let i = 0; i < 20 && this.#blockingOn === blocking && blocking !== null; i++) {
        await this.log.interrupt();
        await sleepOn(this.clock, 2);
      }
    } catch (error) {
      this.report(error);
    }
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
        await this.retryWait();
        ready = [...positions.keys()];
      } finally {
        this.#blockingOn = null;
      }
      for (const p of ready) this.wakeIdle(p);
    }
  }

  notifySessionEnded(): void {
    // Once per turn of the event loop, however many sessions ended in it: on a backlog thousands end together
    // (a tick passes their deadlines), and a pass over every partition for each one, all in microtasks, held the
    // loop (and so the renewals) for more than a second.
    if (this.#sessionsEnded) return;
    this.#sessionsEnded = true;
    this.clock.setImmediate(() => {
      this.#sessionsEnded = false;
      for (const run of this.#runs.values()) {
        run.slotsFreed();
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.startGate.open();
      // (Loops waiting out an outage look at the closing now.)
      this.#outage.wakeAll();
      if (this.#timer !== null) clearTimeout(this.#timer);
      clearInterval(this.#renewer);
      // No lease is renewed from here on, so by this worker's own clock each runs out at its `validUntil`. Past
      // the last one nothing it writes would be accepted: close() stops waiting for Redis (unreachable, say)
      // and for handlers that do not finish, drops what is left, and lets the leases lapse.
      const deadline = Math.max(performance.now() + this.ttl / 3, ...[...this.#runs.values()].map((run) => run.validUntil));
      let releasing: PartitionRun<I, O>[] = [];
      const released = new Set<PartitionRun<I, O>>();
      /** Past the deadline: what the graceful part has not sent yet is never sent (close() has resolved). */
      let abandoned = false;
      const graceful = (async () => {
        await this.#ticking;
        // Renewals already sent settle on the lease connection before close() closes it.
        await Promise.all(this.#renewing);
        if (abandoned) return;
        releasing = [...this.#runs.values()];
        this.#runs.clear();
        // Out of the live set first: the others' fair share then counts without this worker.
        await this.log.leave(this.id).catch((error: unknown) => this.report(error));
        if (abandoned) return;
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
        abandoned = true;
        const left = [...new Set([...releasing, ...this.#runs.values()])].filter((run) => !released.has(run));
        this.#runs.clear();
        for (const run of left) void run.drop();
        const partitions = left.map((run) => run.partition).sort((a, b) => a - b);
        this.report(
          new CloseTimeoutError(
            partitions,
            `close() stopped waiting: ${this.#backend.server} did not answer, or a handler did not finish, before this worker's leases ran out; partitions [${partitions.join(', ')}] were dropped, not released (their next owner replays their live sessions)`,
          ),
        );
      }
      // Permits still held (sessions of partitions dropped at the deadline, their handlers not finished) go back,
      // waits stop; the releases sent to Redis are answered before close() resolves (within a third of a lease).
      if (this.permits !== null) {
        this.permits.releaseAll();
        const until = Math.max(deadline, performance.now() + this.ttl / 3);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.permits.drained(),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, until - performance.now())))),
        ]);
        clearTimeout(timer);
      }
      // Every committed output reaches onOutput before close() resolves (partitions lost earlier included),
      // unless onOutput itself holds on past the deadline.
      if (this.delivery !== null && !(await byDeadline(this.delivery.drained()))) {
        this.report(
          new CloseTimeoutError(
            [],
            `close() stopped waiting: onOutput did not take every committed output before this worker's leases ran out (${this.delivery.undelivered} undelivered; they are in ${this.#backend.server}, readable with ${this.#backend.outputsReader})`,
          ),
        );
      }
      this.#wakerSignal?.();
      // The log's calls in flight settle before close() resolves (the user may end the pool then), within a third of
      // a lease past the deadline: an unanswering server does not hold close() longer.
      await this.log.close(Math.max(deadline, performance.now() + this.ttl / 3) - performance.now());
      await this.#waker;
      // Nothing of this worker is left in flight on your client once close() resolves.
      await this.#interrupting;
    })().finally(() => {
      this.#closed = true;
    });
    return this.#closing;
  }
}

/** Checks that `fn` is a stream function (an entry point does, before its options). */
export function checkWorkerFn(fn: unknown, what: string): void {
  if (typeof (fn as Partial<Openable<unknown, unknown>> | null)?.[kOpen] !== 'function') {
    throw invalidType(`${what}: fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  }
}

/**
 * Runs `fn` as a distributed stream function on `backend` (see the module comment for the semantics): this process
 * joins the workers of the function, takes a fair share of its partitions, and runs one instance of `fn` per live
 * key. `what` names the entry point called in option errors (`'sessionWorker()'`, `'redisWorker()'`).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or an option is invalid.
 */
export function startWorker<I, O>(
  fn: StreamFn<I, O>,
  backend: WorkerBackend,
  options: WorkerOptions<O, I>,
  what: string,
): Worker {
  checkWorkerFn(fn, what);
  return new RunningWorker<I, O>(fn, backend, options, what);
}
