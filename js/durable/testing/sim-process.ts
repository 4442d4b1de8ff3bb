// A simulated worker process (`SimProcess`): a `PartitionHost` for every partition it owns, on a clock of its own over
// the simulation's (`ProcessClock`: a crash stops its callbacks for good, a pause holds them until it ends) and its
// own connection to the in-memory store. With releases, it runs one release (its version, the older handlers it
// carries, `migrate`) and balances as the worker does.
import type { Debounce } from '../../core/debounce';
import type { Openable } from '../../core/protocol';
import type { StreamFn } from '../../types';
import { FencedError, RedisConnectionError } from '../../errors';
import type { Clock, ClockTimer } from '../common/clock';
import type { Codec } from '../common/codec';
import { reportable } from '../common/reportable';
import type { Lease, PartitionLog } from '../common/transport';
import type { WorkerAdvert } from '../rules/versions';
import { type FaultPolicy, MemoryLog } from '../memory/memory-log';
import type { MemoryStore } from '../memory/memory-store';
import { type PartitionHost, type WorkerCounters, newCounters } from '../engine/partition-host';
import { PartitionRun } from '../engine/partition-run';
import { StartGate } from '../engine/start-gate';
import { OpeningSlice } from '../engine/opening-slice';
import { Outage } from '../engine/outage';
import { WorkerPermits } from '../engine/session-permits';
import { planBalance } from '../rules/versions';
import { RoundTrips, timedLog } from '../engine/metrics';
import { SlotReport } from '../engine/slot-watch';
import { renewed, workerStats } from '../engine/worker-stats';
import type { WorkerStats } from '../engine/worker-types';
import type { SimLimiter } from './sim-limiter';
import { connectionOf } from './recording-store';
import { VirtualClock } from './virtual-clock';

/** The worker's settings a run uses (those of `redisWorker`), all optional. */
export interface SimLimits {
  readonly partitions?: number;
  readonly leaseTtl?: number;
  readonly readCount?: number;
  readonly maxBufferedEvents?: number;
  readonly maxSessionEvents?: number;
  readonly maxSessionAge?: number;
  readonly maxSessionTimers?: number;
  readonly maxCheckpointBytes?: number;
  readonly maxJournalBytes?: number;
  readonly maxEventBytes?: number;
  readonly checkReplay?: boolean;
  /** Debounce per key (checked), or null/absent: none. */
  readonly debounce?: Debounce | null;
  /** Per-key state beyond a session (checked), or null/absent: none. */
  readonly keyState?: { readonly retention: number } | null;
  /** Default 0 (no trim), ms. */
  readonly trimInterval?: number;
}

/** How long a wake-up read waits before it is made again, ms (as the worker's). */
const WAIT_MS = 2000;

/** How often a simulated process renews its leases and looks for free partitions, ms (as the worker, `ttl/3`). */
export function balancePeriod(leaseTtl: number): number {
  return Math.floor(leaseTtl / 3);
}

/** What a process needs of its simulation. */
export interface SimHost<I, O> {
  readonly store: MemoryStore;
  readonly limits: SimLimits;
  readonly codec: Codec<unknown>;
  readonly limiters: { readonly session: SimLimiter | null; readonly step: SimLimiter | null };
  /** `SimOptions.permits.maxWaiting`. */
  readonly maxWaiting: number;
  /** A live process reports `error` (as `onError` gets it): `SimResult.errors`, and `SimOptions.reported`. */
  reported(error: unknown): void;
  note(line: string): void;
  took(worker: SimProcess<I, O>, lease: Lease): void;
  progress(by: SimProcess<I, O>): void;
  /** Process `process` (of release `release`) opened session `sid` on `version`, `fresh` (nothing stored for it). */
  opened(process: string, sid: string, version: string, release: number, fresh: boolean, keyState: SimKeyState | null): void;
}

/** What a process runs: its release's version, handler, older handlers and `migrate` (`versioned` false: no releases). */
export interface ProcessRelease<I, O> {
  readonly index: number;
  readonly version: string;
  readonly versioned: boolean;
  readonly fn: StreamFn<I, O>;
  readonly older: ReadonlyMap<string, StreamFn<I, O>>;
  readonly migrate: ((state: unknown, fromVersion: string) => unknown) | null;
  /** Its `debounce` (null: none); absent, `SimLimits.debounce`. */
  readonly debounce?: Debounce | null;
}

/** A timer of a process's clock: the shared clock's timer it is now (a paused process moves it to its pause's end). */
class ProcessTimer implements ClockTimer {
  inner: ClockTimer | null = null;
  unref(): ClockTimer {
    return this;
  }
}

/** How a session started from its key's kept state (of version `kept`): as it is, converted, or without it. */
export interface SimKeyState {
  readonly use: 'as-is' | 'migrate' | 'refused';
  readonly kept: string;
}

/**
 * How a process's clock reads against the log's (`SimFaults.clockSkew`, `clockDrift`): `offset` ms ahead (negative:
 * behind) from `since` (virtual ms), moving `drift` ms further ahead per virtual second.
 */
export interface ClockSkew {
  readonly offset: number;
  readonly drift: number;
  readonly since: number;
}

/** One process's time over the shared clock: `kill()` drops every callback for good, `pause(until)` holds them till then. */
export class ProcessClock implements Clock {
  #dead = false;
  #until = -Infinity;
  /** Synchronous work done in the process's current turn (`spend`), ms: its own time is that far ahead. */
  #spent = 0;
  /**
   * `uncaught(error)`: a callback of the process threw (a real process would exit on it, an uncaught exception);
   * without it, the throw goes on to the caller. `skew`: how its `now()` reads against the log's time (its timers'
   * delays are not skewed: they run on the monotonic clock); none by default.
   */
  constructor(
    readonly base: VirtualClock,
    readonly uncaught?: (error: unknown) => void,
    readonly skew: ClockSkew | null = null,
  ) {}

  /** The process's wall clock: the shared time, its work in this turn, and its skew (whole ms, as `Date.now()`). */
  now(): number {
    const skew = this.skew;
    if (skew === null) return this.base.now() + this.#spent;
    const base = this.base.now();
    return base + this.#spent + Math.round(skew.offset + (skew.drift * (base - skew.since)) / 1000);
  }

  /** `now()` without its skew: the shared time as this process has it (for comparisons between processes). */
  unskewed(): number {
    return this.base.now() + this.#spent;
  }

  /**
   * Synchronous work of `ms` in the process's current turn (a slow `migrate`): its own time moves on, and its
   * callbacks wait until the work is done, as a busy event loop's would; other processes go on meanwhile.
   */
  spend(ms: number): void {
    if (ms <= 0) return;
    this.#spent += ms;
    this.pause(this.base.now() + this.#spent);
  }

  /**
   * `fn` as this process runs it: never once killed, and held while paused (till the pause ends; a held callback
   * stays work or keep-alive as it was, so a quiet span never postpones work a pause held).
   */
  #guard(fn: () => void, keepAlive: boolean, timer?: ProcessTimer): () => void {
    // Its place among callbacks due at once, kept while it is held (first: the timer's, or now for an immediate).
    let order: number | undefined;
    const guarded = () => {
      if (this.#dead) return;
      const now = this.base.now();
      if (now < this.#until) {
        order ??= timer?.inner == null ? this.base.orderNow() : VirtualClock.orderOf(timer.inner);
        const later = this.base.setTimeout(guarded, this.#until - now, keepAlive, order);
        if (timer !== undefined) timer.inner = later;
        return;
      }
      // A new turn of the process: the work of the last one is done (its callbacks waited for it).
      this.#spent = 0;
      if (this.uncaught === undefined) return fn();
      try {
        fn();
      } catch (error) {
        this.uncaught(error);
      }
    };
    return guarded;
  }

  /**
   * `keepAlive`: a timer that only keeps the process alive (its lease renewals, its idle reads' timeouts), which the
   * simulation may postpone over a quiet span (`Simulation.#jump`); every other timer (a timer's wake-up, a tick, an
   * age marker, a retry, a handler's delay) is work, and the span ends before it.
   */
  setTimeout(fn: () => void, ms: number, keepAlive = false): ClockTimer {
    const timer = new ProcessTimer();
    timer.inner = this.base.setTimeout(this.#guard(fn, keepAlive, timer), ms, keepAlive);
    return timer;
  }

  /** This clock with every timer a keep-alive one (`setTimeout`): a connection's idle reads wait on it. */
  keepingAlive(): Clock {
    return {
      now: () => this.now(),
      setTimeout: (fn, ms) => this.setTimeout(fn, ms, true),
      clearTimeout: (timer) => this.clearTimeout(timer),
      setImmediate: (fn) => this.setImmediate(fn),
    };
  }

  clearTimeout(timer: ClockTimer | null | undefined): void {
    if (timer instanceof ProcessTimer) this.base.clearTimeout(timer.inner);
  }

  setImmediate(fn: () => void): void {
    this.base.setImmediate(this.#guard(fn, false));
  }

  kill(): void {
    this.#dead = true;
  }

  pause(until: number): void {
    this.#until = Math.max(this.#until, until);
  }

  /** Paused now. */
  get paused(): boolean {
    return this.base.now() < this.#until;
  }
}

/** A worker process: one `PartitionHost` for every partition it owns, on its own clock and connection. */
export class SimProcess<I, O> implements PartitionHost<I, O> {
  readonly fn: StreamFn<I, O> & Openable<I, O>;
  /** The version new sessions open on (`''`: the run has no releases). */
  readonly version: string;
  /** Its release's index in the run's `releases` (0 without releases). */
  readonly release: number;
  /** `migrate` of its release, or null. */
  readonly migrate: ((state: unknown, fromVersion: string) => unknown) | null;
  /** The handlers of the older versions it carries. */
  readonly #older: ReadonlyMap<string, StreamFn<I, O> & Openable<I, O>>;
  /** Its advert (undefined: the run has no releases, and it balances as before versions). */
  readonly advert: WorkerAdvert | undefined;
  /** What it passes to the lease script as the versions it runs. */
  readonly #takes: readonly string[];
  /** Closing (a graceful stop): it takes nothing more, and hands its partitions back. */
  closing = false;
  /** Its log as its runs call it (each call that reaches the store ends an outage: `Outage.reached`). */
  readonly log: PartitionLog;
  /** The same log, for what only a memory log does (`sever`). */
  readonly #memory: MemoryLog;
  readonly ttl: number;
  readonly readCount: number;
  readonly codec: Codec<unknown>;
  readonly maxEventBytes: number;
  readonly maxSessionEvents: number;
  readonly maxSessionAge: number;
  readonly maxCheckpointBytes: number;
  readonly maxJournalBytes: number;
  readonly maxSessionTimers: number;
  readonly debounce: Debounce | null;
  readonly keyState: { readonly retention: number } | null;
  readonly checkReplay: boolean;
  readonly delivery = null;
  readonly permits: WorkerPermits | null;
  readonly counters: WorkerCounters = newCounters();
  /** Keys waiting for a session slot: counted for `stats()`, not reported (the run's errors are the log's). */
  readonly slots: SlotReport = new SlotReport(
    () => this.fn.config.maxConcurrent,
    () => this.clock.now(),
    () => {},
  );
  /** Round trips of its calls to the log: none timed (an in-memory log has no network). */
  readonly #trips = new RoundTrips();
  /** How late each successful renewal was, on its clock (us), as the worker's. */
  readonly #renewals = new RoundTrips();
  live = 0;
  clockOffset = 0;
  readonly startGate: StartGate;
  readonly openingSlice: OpeningSlice;
  readonly runs = new Map<number, PartitionRun<I, O>>();
  /** When it took each partition it runs (virtual ms, unskewed: compared between processes). */
  readonly takenAt = new Map<number, number>();
  /** Since when it has run some partition without a break (null: it runs none). */
  servingSince: number | null = null;
  dead = false;
  /** Superseded at its last balance (with releases). */
  superseded = false;
  readonly #idle = new Map<number, () => void>();
  readonly #share: number;
  #sessionsEnded = false;
  /** Its log unreachable: its failures' retries and reports spaced out, as the worker's (the middle of its spread). */
  readonly #outage: Outage;

  constructor(
    readonly id: string,
    readonly sim: SimHost<I, O>,
    readonly clock: ProcessClock,
    release: ProcessRelease<I, O>,
    faults: FaultPolicy,
  ) {
    const l = sim.limits;
    this.fn = release.fn as StreamFn<I, O> & Openable<I, O>;
    this.version = release.version;
    this.release = release.index;
    this.migrate = release.migrate;
    this.#older = release.older as ReadonlyMap<string, StreamFn<I, O> & Openable<I, O>>;
    const runs = [release.version, ...release.older.keys()];
    this.advert = release.versioned
      ? { version: release.version, runs: release.migrate === null ? runs : [...runs, '*'] }
      : undefined;
    this.#takes = release.migrate === null ? runs : ['*'];
    // (Its own connection: a recording store names its calls by it.)
    const store = connectionOf(sim.store, this.id);
    this.#memory = new MemoryLog(store, { clock: this.clock, waitClock: this.clock.keepingAlive(), faults });
    // (Its round trips are not timed: a simulation's time is its clock's.)
    this.log = timedLog(this.#memory, new RoundTrips(), () => this.#outage.reached());
    this.startGate = new StartGate(this.clock);
    this.#outage = new Outage(this.clock, () => 0.5);
    this.ttl = l.leaseTtl ?? 3000;
    this.openingSlice = new OpeningSlice(this.clock, this.ttl);
    this.readCount = l.readCount ?? 256;
    this.codec = sim.codec;
    this.maxEventBytes = l.maxEventBytes ?? 1 << 20;
    this.maxSessionEvents = l.maxSessionEvents ?? 0;
    this.maxSessionAge = l.maxSessionAge ?? 0;
    this.maxCheckpointBytes = l.maxCheckpointBytes ?? 1 << 20;
    this.maxJournalBytes = l.maxJournalBytes ?? 16 << 20;
    this.maxSessionTimers = l.maxSessionTimers ?? 1000;
    this.checkReplay = l.checkReplay ?? false;
    this.debounce = release.debounce !== undefined ? release.debounce : (l.debounce ?? null);
    this.keyState = l.keyState ?? null;
    const partitions = sim.store.partitions;
    this.#share = Math.floor(Math.max(l.maxBufferedEvents ?? 65_536, partitions) / partitions);
    const { session, step } = sim.limiters;
    this.permits =
      session === null && step === null
        ? null
        : new WorkerPermits(
            {
              session: session === null ? [] : [session.view(this)],
              step: step === null ? [] : [step.view(this)],
              maxWaiting: sim.maxWaiting,
            },
            this.clock,
            (error) => this.report(error),
          );
    this.clock.setImmediate(() => void this.#balance());
  }

  fnFor(version: string): StreamFn<I, O> & Openable<I, O> {
    return this.#older.get(version) ?? this.fn;
  }

  runsVersion(version: string): boolean {
    return version === '' || version === this.version || this.#older.has(version);
  }

  share(): number {
    return this.#share;
  }

  /** Its figures now, as the worker's `stats()` reads its own. */
  stats(): WorkerStats {
    return workerStats(this, this.runs, this.#trips, this.#renewals);
  }

  report(error: unknown): void {
    this.counters.errors++;
    if (this.dead) return;
    const reported = reportable(error);
    // (As the worker: an outage's failures, one a second reported.)
    if (reported instanceof RedisConnectionError && !this.#outage.failed()) return;
    this.sim.reported(reported);
  }

  retryWait(): Promise<void> {
    return this.#outage.wait();
  }

  lose(run: PartitionRun<I, O>): void {
    if (this.runs.get(run.partition) !== run) return;
    this.#stopRunning(run.partition);
    this.counters.lost++;
    this.sim.note(`${this.id} loses p${run.partition}`);
    void run.drop();
  }

  /**
   * Renews the leases held and takes partitions (every `ttl/3`, as the worker's renewals and balance): all the free
   * ones in a run without releases; with releases, toward its share as the worker's balance does (`planBalance`).
   */
  async #balance(): Promise<void> {
    // The worker renews and expires its leases on their own clock (`#renewAll`, `#expire`): a balance held up by a
    // stalled call (a heartbeat's, an acquire's) holds them up no longer than a period.
    let held: ClockTimer | undefined;
    const keep = () => {
      if (this.dead || this.closing) return;
      for (const run of this.runs.values()) this.#renew(run);
      this.#expire();
      held = this.clock.setTimeout(keep, balancePeriod(this.ttl), true);
    };
    held = this.clock.setTimeout(keep, balancePeriod(this.ttl), true);
    try {
      if (this.advert !== undefined) await this.#balanceShare(this.advert);
      else {
        for (let p = 0; p < this.sim.store.partitions; p++) {
          const run = this.runs.get(p);
          if (run !== undefined) this.#renew(run);
          else await this.#take(p, false);
        }
      }
    } finally {
      this.clock.clearTimeout(held);
    }
    this.#expire();
    this.clock.setTimeout(() => void this.#balance(), balancePeriod(this.ttl), true);
  }

  /** Gives up each lease not renewed in time, by this process's own clock, as the worker's `#expire`. */
  #expire(): void {
    for (const run of [...this.runs.values()]) if (this.clock.now() >= run.validUntil) this.lose(run);
  }

  /** With releases: a superseded process hands its partitions back and takes none; the others take their share. */
  async #balanceShare(advert: WorkerAdvert): Promise<void> {
    for (const run of this.runs.values()) this.#renew(run);
    const beat = await this.log.heartbeat(this.id, this.ttl, true, advert).catch((error: unknown) => {
      this.report(error);
      return null;
    });
    if (beat === null || this.closing || this.dead) return;
    const plan = planBalance({
      adverts: beat.adverts ?? new Map(),
      live: beat.live,
      me: this.id,
      mine: advert,
      partitions: this.sim.store.partitions,
      held: [...this.runs.values()].map((run) => ({ partition: run.partition, versions: run.versions() })),
    });
    this.superseded = plan.superseded;
    if (plan.over) {
      for (const p of plan.handBack) void this.#handBack(p);
      return;
    }
    for (let p = 0; p < this.sim.store.partitions && this.runs.size < plan.share && !this.closing; p++)
      if (!this.runs.has(p)) await this.#take(p, false);
    if (plan.rescue)
      for (let p = 0; p < this.sim.store.partitions && !this.closing; p++) if (!this.runs.has(p)) await this.#take(p, true);
  }

  #renew(run: PartitionRun<I, O>): void {
    // Measured at each balance, as the worker's (read from the store: no call of the log, nothing drawn).
    run.lag = this.sim.store.lag(run.partition);
    run.pinned = this.sim.store.pinned(run.partition);
    this.#trim(run);
    if (run.renewing) return;
    run.renewing = true;
    const sent = this.clock.now();
    void this.log
      .renew(run.lease, this.ttl)
      .then(
        (held) => {
          if (!held) return this.lose(run);
          renewed(run, this.#renewals, sent, this.clock.now(), this.ttl);
        },
        (error: unknown) => this.report(error),
      )
      .finally(() => (run.renewing = false));
  }

  /** Tries to take partition `p` (`rescue`: one refused to another for its sessions' versions). */
  async #take(p: number, rescue: boolean): Promise<void> {
    const sent = this.clock.now();
    const lease = await this.log
      .acquire(p, this.id, this.ttl, this.advert === undefined ? undefined : this.#takes, rescue)
      .catch((error: unknown) => {
        this.report(error);
        return null;
      });
    if (lease !== null && 'refused' in lease && !rescue) this.counters.refusedVersions++;
    if (lease === null || !('token' in lease)) return;
    if (this.closing || this.dead) {
      void this.log.release(lease).catch((error: unknown) => this.report(error));
      return;
    }
    this.sim.took(this, lease);
    this.counters.acquired++;
    const now = this.clock.unskewed();
    if (this.runs.size === 0) this.servingSince = now;
    this.takenAt.set(p, now);
    this.runs.set(p, new PartitionRun(this, lease, sent));
  }

  #stopRunning(p: number): void {
    this.runs.delete(p);
    this.takenAt.delete(p);
    if (this.runs.size === 0) this.servingSince = null;
  }

  /** Hands partition `p` back gracefully (as the worker's `#release`: outputs committed, the lease released). */
  #handBack(p: number): Promise<void> {
    const run = this.runs.get(p);
    if (run === undefined) return Promise.resolve();
    this.#stopRunning(p);
    this.counters.released++;
    this.sim.note(`${this.id} hands p${p} back`);
    return run.release().catch((error: unknown) => this.report(error));
  }

  /** A graceful stop (SIGTERM: `close()`): hands every partition back, leaves the live set, then stops for good. */
  async close(): Promise<void> {
    if (this.closing || this.dead) return;
    this.closing = true;
    this.sim.note(`${this.id} closes`);
    await Promise.all([...this.runs.keys()].map((p) => this.#handBack(p)));
    await this.log.leave(this.id).catch((error: unknown) => this.report(error));
    if (this.dead) return;
    this.dead = true;
    // Its sessions gave their permits back as they stopped; a ticket still in a limiter's line, or granted after, is
    // the limiter's to take back (as for a process that is gone).
    this.sim.limiters.session?.crashed(this);
    this.sim.limiters.step?.crashed(this);
    this.clock.kill();
    this.#memory.sever();
  }

  /** Trims the partition's input every `trimInterval` (as the worker's balance does; outputs are kept to compare). */
  #trim(run: PartitionRun<I, O>): void {
    const every = this.sim.limits.trimInterval ?? 0;
    if (every === 0 || this.clock.now() - run.lastTrim < every) return;
    run.lastTrim = this.clock.now();
    this.log.trim(run.lease).then(
      (n) => (this.counters.trimmed += n),
      (error: unknown) => {
        if (error instanceof FencedError) this.lose(run);
        else this.report(error);
      },
    );
  }

  idle(run: PartitionRun<I, O>, tail: string): Promise<void> {
    if (run.stopping) return Promise.resolve();
    const p = run.partition;
    return new Promise((resolve) => {
      this.#idle.set(p, resolve);
      void (async () => {
        while (this.#idle.get(p) === resolve) {
          const ready = await this.log.wait(new Map([[p, tail]]), WAIT_MS).catch((error: unknown) => {
            this.report(error);
            return [p];
          });
          if (ready.length > 0) this.wakeIdle(p);
        }
      })();
    });
  }

  wakeIdle(partition: number): void {
    const resolve = this.#idle.get(partition);
    this.#idle.delete(partition);
    resolve?.();
  }

  /**
   * A handler took an input or yielded an output: a step of the run. Past the move's bound the simulation stops
   * this process (as a crash), which ends its handler's input: a handler looping at one time never gives the clock
   * back, so only this can stop it.
   */
  step(): void {
    if (!this.dead) this.sim.progress(this);
  }

  opened(sid: string, version: string, fresh: boolean, keyState: SimKeyState | null): void {
    this.sim.opened(this.id, sid, version, this.release, fresh, keyState);
  }

  notifySessionEnded(): void {
    if (this.#sessionsEnded) return;
    this.#sessionsEnded = true;
    this.clock.setImmediate(() => {
      this.#sessionsEnded = false;
      for (const run of this.runs.values()) {
        run.slotsFreed();
      }
    });
  }

  /** Killed: nothing of it runs or reaches the log any more; its sessions are let go (their memory, not the log). */
  crash(): void {
    this.dead = true;
    this.clock.kill();
    this.sim.limiters.session?.crashed(this);
    this.sim.limiters.step?.crashed(this);
    this.#memory.sever();
    for (const run of this.runs.values()) void run.drop();
    this.runs.clear();
    this.takenAt.clear();
    this.servingSince = null;
  }
}
