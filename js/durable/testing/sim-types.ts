// The simulation's options and results (simulator.ts runs it): what a test gives `simulate` and what it gets back.
import type { Debounce } from '../../core/debounce';
import type { StreamFn } from '../../types';
import type { Clock } from '../common/clock';
import type { Codec } from '../common/codec';
import type { OutputItem } from '../common/outputs';
import type { PartitionLeftovers } from '../memory/memory-store';
import type { SimKeyState, SimLimits } from './sim-process';
import type { StoreRecord } from './recording-store';

/** An event the simulated producer appends at `at` (virtual ms) to its key's partition. */
export interface SimEvent<I> {
  readonly at: number;
  readonly key: string;
  readonly event: I;
}

/** How often each fault is drawn: per step of the clock (crash, pause) or per call of the log (the rest). */
export interface SimFaults {
  /** A process that owns partitions crashes (at most `maxCrashes` in a run). */
  readonly crash?: number;
  /** Times (virtual ms) at which the owner of partition 0 crashes, at the first step at or after each. */
  readonly crashAt?: readonly number[];
  /** Commit counts (all processes) after which the owner of partition 0 crashes, before that commit's reply. */
  readonly crashAfterCommits?: readonly number[];
  /**
   * Wake-up counts (all processes) after which the owner of partition 0 crashes, right after that wake-up is
   * written (before its reply): the next owner finds a wake-up it did not write.
   */
  readonly crashAfterWakes?: readonly number[];
  readonly maxCrashes?: number;
  /** A process that owns partitions stops for longer than its lease (at most `maxPauses`). */
  readonly pause?: number;
  readonly maxPauses?: number;
  /** A reply comes late, by up to `maxDelay` ms. */
  readonly delay?: number;
  readonly maxDelay?: number;
  /** A reply is lost after its call applied. */
  readonly lost?: number;
  /** A call is refused before it applies. */
  readonly refused?: number;
  /**
   * A call applies late, by up to `maxLate` ms, after calls the process made since (as Postgres commits a pool's
   * transactions in any order, where Redis applies one connection's commands in call order). Drawn from a stream of
   * its own: a seed's other faults stay as without it.
   */
  readonly late?: number;
  readonly maxLate?: number;
  /**
   * A call's connection stalls until the caller's bound, `callTimeout` ms (default 1000; Infinity: no bound), cuts it
   * and the call fails as a lost reply; the call applied at once, part way, or never (memory-log.ts `Fault`). Any
   * call, leases' too. Drawn from a stream of its own, as `late`.
   */
  readonly cut?: number;
  readonly callTimeout?: number;
  /**
   * Each process's clock (its `now()`, a machine's wall clock) reads up to this many ms ahead of or behind the log's
   * (Redis' time, which gives entry ids), drawn per process; default 0. Its timers are not skewed (they run on the
   * monotonic clock): what it writes by its clock (a tick, an age marker) comes early or late by the log's.
   */
  readonly clockSkew?: number;
  /**
   * And each process's clock moves apart from the log's by up to this many ms per virtual second (drawn per process,
   * either way: a wall clock slewed), so that an offset it learned from the log's ids goes stale; default 0.
   */
  readonly clockDrift?: number;
}

export interface SimOptions<I, O> {
  readonly seed: number;
  /**
   * The function, made once per process (a process has its own sessions and slots). `delay()` is for its handler
   * to await where it may be slow: the simulator resolves it now, after some immediates, or some ms later, so that
   * the handler runs behind the reader; `delay(ms)` resolves `ms` later (virtual). `now()` is the virtual clock
   * (for a test's oracle of when inputs are taken: a handler that read it would not be deterministic). `version`:
   * the handler of that version (with `releases`; else `''`).
   */
  readonly fn: (delay: (ms?: number) => Promise<void>, now: () => number, version: string) => StreamFn<I, O>;
  /**
   * Releases of the worker (absent: one, with no version, as before versions): the first runs from the start, each
   * `deploys` entry starts processes of another. A process runs its release's version, the versions it carries,
   * and `migrate` if its release has it, and balances as the worker does (superseded workers hand over).
   */
  readonly releases?: readonly SimRelease[];
  readonly deploys?: readonly SimDeploy[];
  /** The releases' `migrate`: the state of a session of `fromVersion` as `toVersion`'s handler starts from it. */
  readonly migrate?: (state: unknown, fromVersion: string, toVersion: string) => unknown;
  /**
   * Virtual ms each `migrate` call takes (default 0): synchronous work of its process, whose clock moves on while
   * its callbacks wait (timers due meanwhile fire late, its lease's renewals among them); other processes go on.
   */
  readonly migrateMs?: number;
  /**
   * With releases: a crashed process is replaced by one of its own release, or, once that one was stopped, of the
   * release deployed last; `oldJoins` is how often a worker of an older release that does not migrate joins too
   * (an old worker started during a deploy). Default 0.
   */
  readonly oldJoins?: number;
  /**
   * A check of the fleet made at every step (a test's own model of what must hold): a broken invariant's text, or
   * undefined.
   */
  readonly invariant?: (fleet: SimFleet) => string | undefined;
  readonly events: readonly SimEvent<I>[];
  readonly limits?: SimLimits;
  readonly faults?: SimFaults;
  readonly codec?: Codec<unknown>;
  /** The clock's time at the start, ms. Default 1 000 000. */
  readonly start?: number;
  /** Virtual ms after the last event by which the run must have settled. Default a day (86 400 000). */
  readonly settleWithin?: number;
  /** A line per fault and takeover, for reading a failing seed. */
  readonly trace?: (line: string) => void;
  /**
   * Limiters of the processes' sessions, as `redisWorker`'s `limiter` option takes them: `session` and `step` are
   * the concurrency of a limiter all processes share (as a fleet shares a `redisLimiter`), first come first
   * served, its grants reaching their process late and its acquires failing with probability `fail` (drawn from a
   * stream of the seed's own: the run's other draws stay as without it); a crashed process's permits come back a
   * lease (`leaseTtl`) after its crash. `maxWaiting` as the option's.
   */
  readonly permits?: SimPermits;
  /**
   * Record every operation applied to the store, in order, with its time, arguments and answer (`SimResult.record`):
   * for a replay of the run's schedule on another log (the Postgres one: __test__/helpers/sim-on-postgres.mjs).
   * Changes nothing the run does.
   */
  readonly record?: boolean;
  /** Told each event's entry id as the run appends it (`index` in `events`): `SimResult.ids`, as they come. */
  readonly appended?: (index: number, key: string, id: string) => void;
  /** Told the run's shared clock as it starts: what waits on it (a check's stand-in model, between two chunks) is in the run. */
  readonly started?: (clock: Pick<Clock, 'setImmediate'>) => void;
  /** Told each error a live process reports, as it reports it (after `errors` has it): the test worker's `onError`. */
  readonly reported?: (error: unknown) => void;
}

/** `SimOptions.permits`. */
/** The fleet at a step, as `SimOptions.invariant` sees it. */
export interface SimFleet {
  readonly now: number;
  /** Virtual ms the run moved over at once so far (quiet spans: `Simulation.#jump`). */
  readonly skipped: number;
  /**
   * Each partition: its lease's holder (a process id; null: none), the versions its live sessions opened on, and
   * their counts as `redisVersions().status()` reads them (`:versions`).
   */
  readonly partitions: readonly {
    readonly owner: string | null;
    readonly versions: readonly string[];
    readonly counts: ReadonlyMap<string, number>;
  }[];
  /** Whether `redisVersions().drained(version)` would resolve now (its rule, over what the store and adverts hold). */
  drained(version: string): boolean;
  readonly processes: readonly {
    readonly id: string;
    readonly release: number;
    /** Its release's version. */
    readonly version: string;
    /** The version each of its live sessions opened on, by partition (of every partition it runs). */
    readonly sessions: readonly { readonly partition: number; readonly version: string }[];
    /** Live and not paused, not closing. */
    readonly up: boolean;
    /** Its registration is live in the store now: what the other workers see of it (a stalled heartbeat lets it lapse). */
    readonly registered: boolean;
    /** The partitions it runs (it may have lost some without knowing yet). */
    readonly partitions: readonly number[];
  }[];
}

/** A release of the worker: `redisWorker`'s `version`, the older versions it carries (`versions`), `migrate`. */
export interface SimRelease {
  readonly version: string;
  readonly carries?: readonly string[];
  readonly migrate?: boolean;
  /** Its `debounce` (null: none); absent, `SimLimits.debounce`. */
  readonly debounce?: Debounce | null;
}

/**
 * A deploy: at `at` (virtual ms), `workers` processes of release `release` start (default 2); `stopOld` ms after,
 * the live processes of older releases stop gracefully (`close()`, as on SIGTERM); absent, they keep running.
 */
export interface SimDeploy {
  readonly at: number;
  readonly release: number;
  readonly workers?: number;
  readonly stopOld?: number;
}

export interface SimPermits {
  readonly session?: number;
  readonly step?: number;
  readonly maxWaiting?: number;
  readonly fail?: number;
}

/** A session's opening as the simulation saw it decided (`SimResult.sessions`). */
export interface SimOpening {
  readonly version: string;
  readonly release: number;
  readonly keyState: SimKeyState | null;
}

export interface SimResult<O> {
  /** Every output written, per partition in the order written. */
  readonly outputs: OutputItem<O>[];
  /** The entry id of each event, in the order given. */
  readonly ids: string[];
  /** Errors the processes reported (as `onError` gets them). */
  readonly errors: unknown[];
  /**
   * Each session's opening as decided last (a session opened with nothing stored for it: its version, the release of
   * the process that opened it, and how it started from its key's state; a later owner that found its opening stored
   * followed it).
   */
  readonly sessions: ReadonlyMap<string, SimOpening>;
  /** Broken invariants: a buffer over its bound, a run that never settled. */
  readonly violations: string[];
  /** How the run stopped: settled, or not by `settleWithin` (`deadline`), within `simBounds` (`steps`), or stuck (`idle`). */
  readonly outcome: RunOutcome;
  /** With `steps`: which bound it reached (all its steps, or those at one virtual time). */
  readonly exhausted: 'steps' | 'at once' | null;
  /** What each partition keeps at the end (all empty once settled). */
  readonly leftovers: PartitionLeftovers[];
  /** With `checkReplay`: where each partition's sessions ended, as kept for the check (sid -> `<reason> <last input>`). */
  readonly ends: Map<string, string>[];
  /** Steps (`simBounds`), virtual ms from the start, faults, commits applied and wake-ups written, spans postponed over. */
  /** With `record`: the run's operations on the store, and its outputs and ends at the end. */
  readonly record?: StoreRecord;
  readonly stats: {
    /** With `permits`: most permits of each limiter held at once, and permits granted. */
    permits?: { session?: { max: number; granted: number }; step?: { max: number; granted: number } };
    steps: number;
    time: number;
    crashes: number;
    pauses: number;
    takeovers: number;
    commits: number;
    wakes: number;
    jumps: number;
    /** Sessions that started from their key's kept state (`keyState`), over every process (replays included). */
    keyStateStarts: number;
  };
}

/**
 * How `Simulation.runUntil` stopped: `done` reached, past its deadline, out of steps (`maxSteps` in one call), or
 * with nothing left to run.
 */
export type RunOutcome = 'done' | 'deadline' | 'steps' | 'idle';
