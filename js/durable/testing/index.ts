// velo-stream/testing: a handler run as `redisWorker` runs it, in memory and on a virtual clock, for tests without
// a Redis server. The worker's own partition code, sessions and streams run on an in-memory log that answers as
// Redis does (the library's contract test holds the two together); time moves only when the test moves it. A
// crash drops the process that owns the partitions, as kill -9 would; another takes over when its lease runs out.
import {
  decodeError,
  describe,
  invalidType,
  invalidValue,
  outOfRange,
  testNotSettledError,
  testStepsError,
  testWorkerStateError,
} from '../../errors';
import type { DebounceConfig, StreamFn } from '../../types';
import { integerArgument, integerOption } from '../../validate';
import { type Codec, encodeChecked } from '../common/codec';
import { checkKey, fnv1a } from '../common/keys';
import { MAX_TIMER_MS } from '../engine/owner-writes';
import { checkDebounceTarget } from '../engine/worker-limits';
import type { KeyState } from '../common/stored';
import { parseKept } from '../common/stored';
import { type Openable, kOpen } from '../../core/protocol';
import { checkDebounce } from '../../core/debounce';
import type { HandlerFailure, OutputItem } from '../common/outputs';
import type { WorkerStats } from '../engine/worker-types';
import { type DeterminismOptions, type TestWorkerOptions, KNOWN_CHECK, MAX_START, readGiven, resolveTest } from './options';
export type { DeterminismOptions, TestWorkerOptions };
import { Simulation, simBounds, simulate, takeoverWithin } from './simulator';
import { JournaledAnswers, Nondeterminism } from './nondeterminism';
import type { RunOutcome, SimRelease, SimResult } from './sim-types';
import { checkVersions } from '../engine/versions';
import type { SimLimits, SimProcess } from './sim-process';

/** One session of a test run: its key, its id (`<key>@<id of its first entry>`) and its outputs in order. */
export interface TestSession<O> {
  /** The key it ran for. */
  readonly key: string;
  /** Its id, `<key>@<id of its first entry>`, as its outputs carry it. */
  readonly sid: string;
  /** Its outputs by `seq`. */
  readonly outputs: OutputItem<O>[];
}

/** A stream function run as `redisWorker` runs it, in memory, on a virtual clock. */
export interface TestWorker<I, O> {
  /** The virtual clock (Redis' time in the run), ms since the epoch. */
  now(): number;
  /** Appends `event` for `key` now, as `redisProducer.send` does (the same checks of the key and size); its entry id. */
  readonly send: (key: string, event: I) => string;
  /**
   * Lets `ms` of virtual time pass: everything due by then happens (reads, handlers, timers, session ends). `ms`:
   * an integer from 0 to a day (else `ERR_OUT_OF_RANGE`); one move of the clock at a time (`ERR_INVALID_STATE`).
   */
  advance(ms: number): Promise<void>;
  /**
   * Runs until every event sent is handled and every session has ended (their idle ends pass on the virtual
   * clock). Rejects with `ERR_VELO_TEST_NOT_SETTLED` if that takes more than `within` ms of virtual time (an
   * integer up to 2 147 483 647; default a day).
   */
  settle(within?: number): Promise<void>;
  /** The process that owns the partitions is killed now; another takes them over once its leases run out. */
  crash(): void;
  /** Every output written so far, as `redisOutputs` reads them (per partition in the order written). */
  outputs(): OutputItem<O>[];
  /** The sessions that made outputs so far, in the order of their first output. */
  sessions(): TestSession<O>[];
  /** What the worker reported to `onError` so far (a crash's lost connection, fencing, a handler's failures). */
  errors(): unknown[];
  /**
   * The figures of the process that serves the partitions now, as its `redisWorker().stats()` reads them
   * (`WorkerStats`, the same reading): the live process that owns the most partitions (the first started of
   * those), or the first started live one while none owns any (before the first balance, between a crash and the
   * takeover). A crash's successor counts from its own start, as a restarted worker does. `roundTrip` stays 0 (no
   * network); `lag` and `pinnedAge` are measured at each lease renewal, on the virtual clock. After `close()`, the
   * figures of the process that served last.
   */
  stats(): WorkerStats;
  /**
   * With `keyState`: the state `key` keeps now, as `redisKeyState().readState` reads it (decoded, its session, its
   * time left on the virtual clock), or undefined. `S`: the state's type, as the handler checkpoints it (as
   * `keyState<S>()`: the state is decoded, not checked).
   */
  readState<S = unknown>(key: string): KeyState<S> | undefined;
  /** With `keyState`: deletes the state `key` keeps, as `redisKeyState().deleteState` does; true if there was one. */
  deleteState(key: string): boolean;
  /**
   * With `keyState`: sets the state `key` keeps, as if a session of the key had ended with it (its next session
   * starts from it), for `retention` ms (default the worker's `keyState.retention`).
   */
  seedState(key: string, state: unknown, retention?: number): void;
  /**
   * A rolling deploy (a test worker made with `version`): starts `workers` processes (default 1) of a new release,
   * `fn` with `redisWorker`'s `version`, `versions` and `migrate` options. Workers of releases it supersedes hand
   * their partitions over at their next balance, as in production. `stop(version)` stops the old ones.
   */
  deploy<I2, O2>(fn: StreamFn<I2, O2>, release: DeployOptions, workers?: number): void;
  /** The processes of release `version` stop gracefully, as on SIGTERM (`close()`): their partitions are handed over. */
  stop(version: string): Promise<void>;
  /** Stops every process; then only the reads answer (the rest are refused with `ERR_INVALID_STATE`). */
  close(): Promise<void>;
}

/** A release `TestWorker.deploy()` starts: `redisWorker`'s `version` (required), `versions`, `migrate` and `debounce`. */
export interface DeployOptions {
  /** The version new sessions open on once it takes partitions. */
  version: string;
  /** Older handlers it still runs, by version (a rolling deploy that waits). */
  versions?: Readonly<Record<string, StreamFn<never, unknown>>>;
  /** Adopts sessions of versions it does not run from their checkpoints (a rolling deploy that migrates). */
  migrate?: (state: unknown, fromVersion: string) => unknown;
  /**
   * Its `debounce`, as its `redisWorker` has it (null: none); absent, the test worker's. Sessions keep the debounce
   * they opened with: only sessions it opens use its own.
   */
  debounce?: DebounceConfig | null;
}

/** The options of a release `deploy()` knows. */
const RELEASE_KEYS = ['version', 'versions', 'migrate', 'debounce'];

/** An event of a determinism check: sent for `key` at `at` (virtual ms since the epoch; default the start). */
export interface TestEvent<I> {
  /** The key it is sent for. */
  readonly key: string;
  /** The event. */
  readonly event: I;
  /** When it is sent, on the virtual clock (ms since the epoch); default the start. */
  readonly at?: number;
}

/** A session's failure among its outputs: its handler's error (or a cap's), as stored. */
export interface TestFailure {
  /** The error's `name`, `message` and `code`. */
  readonly error: HandlerFailure;
}

/** Where a crash changed what a reader sees. */
export interface TestDivergence<O> {
  /** The crash came right after this commit (1: the first) of the crash-free run. */
  readonly afterCommit: number;
  /** The key of the session where the two runs first differ. */
  readonly key: string;
  /** The index in `events` of the event that opened that session. */
  readonly firstEvent: number;
  /** The session's outputs in the crash-free run (a failure as `{ error }`, the stored failure). */
  readonly expected: readonly (O | TestFailure)[];
  /** The session's outputs in the run with the crash. */
  readonly actual: readonly (O | TestFailure)[];
}

/** What `checkDeterminism` found. */
export interface DeterminismReport<O> {
  /** True if no crash point changed a session. */
  readonly ok: boolean;
  /** Crash points tried: one after each commit of the crash-free run. */
  readonly crashes: number;
  /** The first crash point whose run differs, if any. */
  readonly divergence?: TestDivergence<O>;
  /**
   * Why it failed, in words (with where the handler read the clock or a random number, or called `fetch()`,
   * `crypto.randomUUID()` or a `fakeModel`, outside a journaled call, if it did).
   */
  readonly message?: string;
}

const DAY_MS = 86_400_000;

function checkFn(fn: unknown, what: string): void {
  let open: unknown;
  try {
    open = (fn as Partial<Openable<unknown, unknown>> | null)?.[kOpen];
  } catch {
    // (A revoked Proxy: not a stream function either.)
  }
  if (typeof open !== 'function') {
    throw invalidType(`${what}: fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  }
}

/**
 * The most virtual time one `advance()` may cover: a day. Every process's lease renewal runs on the way (one step
 * each `leaseTtl / 3`), so a longer span costs steps, not just a jump of the clock; a test calls it again for more.
 */
const MAX_ADVANCE = DAY_MS;

/** A key argument of `call`, checked as `redisKeyState` checks it. */
function stateKey(call: string, key: unknown): string {
  try {
    return checkKey(key);
  } catch (error) {
    (error as Error).message = `${call}: ${(error as Error).message}`;
    throw error;
  }
}

/** Each process gets the function with a gate of its own (its own `maxConcurrent` slots), as a process would. */
function perProcess<I, O>(fn: StreamFn<I, O>): () => StreamFn<I, O> {
  // (Every stream function has `withConfig`; the public type leaves it out.)
  return () => (fn as StreamFn<I, O> & { withConfig(config: object): StreamFn<I, O> }).withConfig({});
}

class InMemoryWorker<I, O> implements TestWorker<I, O> {
  readonly #sim: Simulation<I, O>;
  #closed = false;
  /** The process that served when `close()` stopped them all: `stats()` reads it after. */
  #last: SimProcess<I, O> | null = null;
  /** An `advance()` or `settle()` under way: the clock is moving, and another would race it. */
  #running = false;
  /**
   * The first throw of `onError` since the last move of the clock settled, or null: the move rejects with it (a
   * test's assertion in `onError` fails the test) rather than the throw unwinding the process's own code, which
   * reports from wherever the error was found.
   */
  #thrown: { error: unknown } | null = null;
  /** The promises `onError` returned that have not settled: `close()` waits for them. */
  readonly #pending = new Set<PromiseLike<unknown>>();

  /** With a `version`: each release's handlers (its own and those it carries), by version, and `migrate`s. */
  readonly #fns = new Map<string, StreamFn<I, O>>();
  readonly #migrates = new Map<string, (state: unknown, fromVersion: string) => unknown>();

  constructor(fn: StreamFn<I, O>, options: unknown) {
    const { limits, codec, start, onError } = resolveTest('testWorker()', options);
    checkDebounceTarget('testWorker()', limits.debounce ?? null, fn);
    const o = options as TestWorkerOptions;
    const reported =
      onError === undefined
        ? undefined
        : (error: unknown) => {
            try {
              // (A rejection of the promise it returns is taken as its throw, by the move under way or the next.)
              const pending = onError(error) as PromiseLike<unknown> | undefined;
              if (pending !== null && typeof pending === 'object' && typeof pending.then === 'function') {
                this.#pending.add(pending);
                const settled = (): void => void this.#pending.delete(pending);
                pending.then(settled, (thrown: unknown) => {
                  settled();
                  this.#thrown ??= { error: thrown };
                });
              }
            } catch (thrown) {
              this.#thrown ??= { error: thrown };
            }
          };
    if (o.version === undefined && o.versions === undefined && o.migrate === undefined) {
      this.#sim = new Simulation<I, O>({ seed: 1, fn: perProcess(fn), events: [], limits, codec, start, reported });
      return;
    }
    const first = this.#release('testWorker()', fn, o.version, o.versions, o.migrate);
    this.#sim = new Simulation<I, O>({
      seed: 1,
      fn: (_delay, _now, version) => perProcess(this.#fns.get(version) as StreamFn<I, O>)(),
      releases: [first],
      migrate: (state, from, to) => (this.#migrates.get(to) as (state: unknown, from: string) => unknown)(state, from),
      events: [],
      limits,
      codec,
      start,
      reported,
    });
  }

  /** A release's options, checked as `redisWorker` checks them; its handlers and `migrate` kept by version. */
  #release(what: string, fn: unknown, version: unknown, versions: unknown, migrate: unknown): SimRelease {
    const v = checkVersions<I, O>(version, versions, migrate, what);
    if (v.version === '') throw invalidValue(`${what}: a release needs a "version"`);
    if (typeof (fn as Partial<Openable<I, O>> | null)?.[kOpen] !== 'function')
      throw invalidType(`${what}: the handler must be a stream function (from streamFn()), not ${describe(fn)}`);
    this.#fns.set(v.version, fn as StreamFn<I, O>);
    for (const [name, older] of v.older) if (!this.#fns.has(name)) this.#fns.set(name, older);
    if (v.migrate !== null) this.#migrates.set(v.version, v.migrate);
    return { version: v.version, carries: [...v.older.keys()], migrate: v.migrate !== null };
  }

  /** Refuses a call after `close()`. */
  #open(call: string): void {
    if (this.#closed) throw testWorkerStateError(`${call}: the test worker is closed`);
  }

  /** Runs a move of the clock, one at a time (a second while one runs would see the clock mid-move). */
  async #move(call: string, run: () => Promise<void>): Promise<void> {
    this.#open(call);
    if (this.#running) {
      throw testWorkerStateError(`${call}: an advance() or settle() is under way: await it before the next`);
    }
    this.#running = true;
    try {
      await run();
    } finally {
      this.#running = false;
      // (In `finally`: an onError that threw explains more than the move's own failure after it, if any.)
      this.#rethrow();
    }
  }

  /** Throws what `onError` threw since the last call, if it did. */
  #rethrow(): void {
    const thrown = this.#thrown;
    this.#thrown = null;
    if (thrown !== null) throw thrown.error;
  }

  now(): number {
    return this.#sim.clock.now();
  }

  send(key: string, event: I): string {
    this.#open('send()');
    return this.#sim.append(checkKey(key), event);
  }

  advance(ms: number): Promise<void> {
    return this.#move('advance()', async () => {
      integerArgument('advance()', 'ms', ms, 0, MAX_ADVANCE);
      const outcome = await this.#sim.advanceTo(this.now() + ms);
      if (outcome !== 'done') throw stepsError('advance()', this.now(), this.#sim.exhausted);
    });
  }

  settle(within = DAY_MS): Promise<void> {
    return this.#move('settle()', async () => {
      // (It stops once settled: a long bound costs only when the run never settles.)
      integerArgument('settle()', 'within', within, 0, MAX_TIMER_MS);
      const deadline = this.now() + within;
      const outcome = await this.#sim.runUntil(() => this.#sim.settled(), deadline);
      if (outcome === 'steps') throw stepsError('settle()', this.now(), this.#sim.exhausted);
      if (outcome !== 'done') {
        throw testNotSettledError(
          `settle(): the run did not settle within ${within} ms of virtual time (a session still open, or an event not handled).${realWaits()}`,
        );
      }
    });
  }

  crash(): void {
    this.#open('crash()');
    for (let p = 0; p < this.#sim.store.partitions; p++) this.#sim.crash(p);
  }

  outputs(): OutputItem<O>[] {
    return this.#sim.outputs();
  }

  sessions(): TestSession<O>[] {
    return sessionsOf(this.#sim.outputs());
  }

  errors(): unknown[] {
    return [...this.#sim.errors];
  }

  stats(): WorkerStats {
    return (this.#last ?? this.#serving()).stats();
  }

  /** The live process that owns the most partitions (the first started of those), else the first started live one. */
  #serving(): SimProcess<I, O> {
    let serving: SimProcess<I, O> | undefined;
    for (const p of this.#sim.processes) {
      if (!p.dead && (serving === undefined || p.runs.size > serving.runs.size)) serving = p;
    }
    // (A crash spawns the next process before it returns: one is always live until close().)
    return serving ?? this.#sim.processes[this.#sim.processes.length - 1];
  }

  readState<S = unknown>(key: string): KeyState<S> | undefined {
    const store = this.#sim.store;
    const partition = fnv1a(stateKey('readState()', key)) % store.partitions;
    const kept = store.keptState(partition, key);
    if (kept === null) return undefined;
    const stored = parseKept(kept.value);
    let state: unknown;
    try {
      if (stored.unreadable !== undefined) throw stored.unreadable as Error;
      state = this.#sim.codec.decode(stored.state);
    } catch (error) {
      throw decodeError(`readState(): the codec could not decode the state kept for key ${JSON.stringify(key)}`, error);
    }
    return { state: state as S, sid: stored.sid, expiresIn: kept.ttl };
  }

  deleteState(key: string): boolean {
    this.#open('deleteState()');
    const store = this.#sim.store;
    return store.deleteKept(fnv1a(stateKey('deleteState()', key)) % store.partitions, key);
  }

  seedState(key: string, state: unknown, retention?: number): void {
    this.#open('seedState()');
    const keyState = this.#sim.limits.keyState;
    if (keyState == null) throw testWorkerStateError('seedState(): the test worker has no keyState option');
    const k = stateKey('seedState()', key);
    const ms = retention ?? keyState.retention;
    integerArgument('seedState()', 'retention', ms, 1, MAX_TIMER_MS);
    const store = this.#sim.store;
    const encoded = encodeChecked(
      this.#sim.codec,
      state,
      Number.MAX_SAFE_INTEGER,
      `seedState(): the state of key ${JSON.stringify(k)}`,
    );
    store.setKept(fnv1a(k) % store.partitions, { key: k, sid: `${k}@seeded`, state: encoded }, ms);
  }

  deploy<I2, O2>(fn: StreamFn<I2, O2>, release: DeployOptions, workers = 1): void {
    this.#open('deploy()');
    if (this.#sim.releases === undefined)
      throw testWorkerStateError('deploy(): the test worker runs no version: make it with testWorker(fn, { version })');
    integerArgument('deploy()', 'workers', workers, 1, 16);
    if (release === null || typeof release !== 'object')
      throw invalidType(
        `deploy(): the release must be an object { version, versions?, migrate?, debounce? }, not ${describe(release)}`,
      );
    for (const key of Object.keys(release))
      if (!RELEASE_KEYS.includes(key))
        throw invalidValue(`deploy(): unknown release option ${JSON.stringify(key)}. Known: ${RELEASE_KEYS.join(', ')}`);
    const debounce =
      release.debounce === undefined || release.debounce === null
        ? release.debounce
        : checkDebounce(release.debounce, 'deploy()');
    if (debounce !== undefined) checkDebounceTarget('deploy()', debounce, fn);
    const r = this.#release('deploy()', fn, release.version, release.versions, release.migrate);
    const index = this.#sim.addRelease(debounce === undefined ? r : { ...r, debounce });
    this.#sim.deploy({ at: this.now(), release: index, workers });
  }

  stop(version: string): Promise<void> {
    this.#open('stop()');
    // (Every release of that version: deploy() may have started it more than once.)
    const indexes = (this.#sim.releases ?? []).flatMap((r, i) => (r.version === version ? [i] : []));
    if (indexes.length === 0) throw invalidValue(`stop(): no release of version ${JSON.stringify(version)} was deployed`);
    return this.#move('stop()', async () => {
      // (Their hand-overs are calls to the log, answered as the clock moves: it moves until they are done.)
      let stopped = false;
      void Promise.all(indexes.map((i) => this.#sim.stopRelease(i))).then(() => (stopped = true));
      const outcome = await this.#sim.runUntil(() => stopped, this.now() + DAY_MS);
      if (outcome !== 'done') throw stepsError('stop()', this.now(), this.#sim.exhausted);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#last = this.#serving();
    await this.#sim.stop();
    // (A rejection of onError's promise after the last move is this call's: the test's last word.)
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#rethrow();
  }
}

/**
 * A run that reached a bound of steps in one move of the clock (`what`; `which`: all its steps, or those at one
 * virtual time), at virtual time `now`.
 */
function stepsError(what: string, now: number, which: Simulation<unknown, unknown>['exhausted']): Error {
  return which === 'at once'
    ? testStepsError(
        `${what}: the run took ${simBounds.maxStepsAtOnce} steps at one virtual time (${now}) and stopped there, the ` +
          `process that owns the partitions stopped as by crash(): a handler looping without end at one time (a ` +
          `timer due at once made on every input, outputs yielded without taking input), or more events sent at ` +
          `one time than that many steps handle (send them at different times).`,
      )
    : testStepsError(
        `${what}: the run took ${simBounds.maxSteps} steps and stopped at ${now} (a handler or its timers looping ` +
          `without end, or a span too long for the lease renewals on the way).`,
      );
}

/**
 * Why a run may not settle that the virtual clock cannot see: a real timer (or I/O) pending in the process, such as
 * a handler's own `await setTimeout()`. The clock moves virtual time only; a handler waiting on real time is
 * still waiting when every virtual timer has run. A sentence to add to an error; empty when none is pending.
 */
function realWaits(): string {
  const info = (process as { getActiveResourcesInfo?: () => string[] }).getActiveResourcesInfo?.() ?? [];
  const real = info.filter((kind) => kind === 'Timeout' || kind === 'FSReqCallback' || kind.startsWith('TCP'));
  return real.length === 0
    ? ''
    : ` The process has real ${[...new Set(real)].join(', ')} pending: a handler that awaits a real timer or I/O ` +
        `(setTimeout from node:timers/promises, a network call) waits outside the virtual clock, which moves virtual time only.`;
}

function sessionsOf<O>(outputs: readonly OutputItem<O>[]): TestSession<O>[] {
  const bySid = new Map<string, TestSession<O>>();
  for (const o of outputs) {
    let s = bySid.get(o.sid);
    if (s === undefined) bySid.set(o.sid, (s = { key: o.key, sid: o.sid, outputs: [] }));
    s.outputs.push(o);
  }
  return [...bySid.values()];
}

/**
 * Runs `fn` as `redisWorker` would, in memory, on a virtual clock: send events, let time pass, crash the owner,
 * and read the sessions and outputs. Nothing runs until the test awaits `advance()` or `settle()`.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function.
 */
export function testWorker<I = unknown, O = unknown>(fn: StreamFn<I, O>, options: TestWorkerOptions = {}): TestWorker<I, O> {
  checkFn(fn, 'testWorker()');
  return new InMemoryWorker(fn, options);
}

/**
 * Event `i` of a check, refused as `testWorker().send` refuses it (the same key checks, encoded by the codec within
 * `maxEventBytes`), with `at` an integer ms from the start on (default the start); how far apart events may be is
 * checked once all are (`checkGaps`).
 */
function checkEvent<I>(
  what: string,
  events: readonly TestEvent<I>[],
  i: number,
  limits: SimLimits,
  codec: Codec<unknown>,
  start: number,
): { key: string; event: I; at: number } {
  const e = readGiven(what, `events[${i}]`, () => {
    const item = events[i];
    if (item === null || typeof item !== 'object') return { item, hole: item === undefined && !(i in events) };
    return { key: item.key, event: item.event, at: item.at };
  });
  if ('item' in e) {
    const given = e.hole ? 'a hole (the array is sparse)' : describe(e.item);
    throw invalidType(`${what}: events[${i}] must be an object { key, event, at? }, not ${given}`);
  }
  const key = checkKey(e.key);
  encodeChecked(codec, e.event, limits.maxEventBytes ?? 1 << 20, `events[${i}] (key ${JSON.stringify(key)})`);
  const at = e.at ?? start;
  integerOption(what, `events[${i}].at`, at, start, MAX_START, `from the start (${start}) to ${MAX_START} (ms since the epoch)`);
  return { key, event: e.event, at };
}

/**
 * The events' times, refused where one comes more than a day after the one before it in time (or after the start):
 * as `advance()`, a run moves a day at a time.
 */
function checkGaps(what: string, sent: readonly { at: number }[], start: number): void {
  const order = sent.map((_, i) => i).sort((a, b) => sent[a].at - sent[b].at || a - b);
  let before = start;
  for (const i of order) {
    if (sent[i].at - before > MAX_ADVANCE) {
      throw outOfRange(
        `${what}: events[${i}].at (${sent[i].at}) is more than a day (${MAX_ADVANCE} ms) after the event before it in time ` +
          `(or the start), at ${before}: as one advance() moves at most a day.`,
      );
    }
    before = sent[i].at;
  }
}

/**
 * Each session's outputs keyed by its key and the index of the event that opened it. Not by sid: an event's entry
 * id depends on what else its partition got in the same ms (a tick, a wake-up, a marker, which a crash changes), in
 * Redis as here. (An event is found by its key and id: two partitions give the same ids.)
 */
function byFirstEvent<O>(result: SimResult<O>, sent: readonly { key: string }[]): Map<string, (O | TestFailure)[]> {
  const index = new Map(result.ids.map((id, i) => [`${sent[i].key}@${id}`, i]));
  const out = new Map<string, (O | TestFailure)[]>();
  for (const o of result.outputs) {
    const name = `${o.key}\u0000${index.get(o.sid) ?? -1}`;
    const list = out.get(name) ?? [];
    list.push('error' in o ? { error: o.error } : o.value);
    out.set(name, list);
  }
  return out;
}

/**
 * Checks that a crash changes nothing a reader sees for these events: runs them crash-free, then once with a crash
 * right after each commit of that run (each point where the log holds a new state: outputs, a checkpoint, a
 * session's end), and compares every session's outputs. A handler that reads `Date.now()` or `Math.random()`, or
 * state outside its session, fails it: during the check both give other values in every run. Journaled calls
 * (`ctx.run`, `ctx.stream`) answer each run with a crash as they answered the crash-free run at the same place, so a
 * service that answers differently on every call passes when journaled; the report names `Date.now()`,
 * `Math.random()`, `fetch()` and `crypto.randomUUID()` called outside one. Each streamed answer pauses once after its
 * first chunk, so one crash falls in its middle: a `ctx.stream` factory that does not continue after the `chunks` it
 * is given fails, named.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function.
 */
export async function checkDeterminism<I = unknown, O = unknown>(
  fn: StreamFn<I, O>,
  events: readonly TestEvent<I>[],
  options: DeterminismOptions = {},
): Promise<DeterminismReport<O>> {
  const what = 'checkDeterminism()';
  checkFn(fn, what);
  // (Checked on a copy: narrowing `events` itself by Array.isArray would make its items `any`.)
  const given: unknown = events;
  const length = readGiven(what, 'events', () => (Array.isArray(given) ? events.length : undefined));
  if (length === undefined) throw invalidType(`${what}: events must be an array, not ${describe(given)}`);
  const { limits, codec, start, settleWithin: within } = resolveTest(what, options, KNOWN_CHECK);
  checkDebounceTarget(what, limits.debounce ?? null, fn);
  // (A loop, not map(): map() skips the holes of a sparse array, which would then never be sent.)
  const sent: { key: string; event: I; at: number }[] = [];
  for (let i = 0; i < length; i++) sent.push(checkEvent(what, events, i, limits, codec, start));
  checkGaps(what, sent, start);
  const idleTimeout = (fn as StreamFn<I, O> & Openable<I, O>).config.idleTimeout;
  const settleWithin = integerOption(
    what,
    'settleWithin',
    within ?? DAY_MS + idleTimeout,
    0,
    MAX_TIMER_MS,
    `from 0 to ${MAX_TIMER_MS} (ms)`,
  );
  // Date.now, Math.random, fetch, crypto.randomUUID and the journal's calls are the process's: a second check at once
  // would save the first one's stand-ins as the originals and leave them installed for good.
  if (checking)
    throw testWorkerStateError(
      `${what}: another check is running (one at a time: it replaces Date.now(), Math.random(), fetch() and crypto.randomUUID() while it runs)`,
    );
  const guard = new Nondeterminism();
  // Journaled calls answer each run with a crash as the crash-free run did at the same place (nondeterminism.ts):
  // only what the handler does outside them can differ.
  const answers = new JournaledAnswers();
  // A run with a crash waits for the takeover (the lease to run out, and another process to notice): it gets
  // that much more time.
  const crashWithin = settleWithin + takeoverWithin(limits.leaseTtl ?? 0);
  const run = (crashAfterCommits: number[]) => {
    answers.begin(crashAfterCommits.length > 0 ? 'replay' : 'record');
    return simulate<I, O>({
      seed: 1,
      fn: perProcess(fn),
      events: sent,
      limits,
      codec,
      start,
      faults: { crashAfterCommits },
      settleWithin: crashAfterCommits.length > 0 ? crashWithin : settleWithin,
      appended: answers.appended,
      started: answers.started,
    });
  };
  checking = true;
  guard.install();
  answers.install();
  try {
    const calm = await run([]);
    unsettled(what, 'the crash-free run', calm, start, settleWithin, settleWithin, guard.reads);
    if (calm.violations.length > 0)
      throw new Error(`${what}: the crash-free run broke the simulation's invariants: ${calm.violations.join('; ')}`);
    const expected = byFirstEvent(calm, sent);
    for (let k = 1; k <= calm.stats.commits; k++) {
      guard.run = k;
      const crashed = await run([k]);
      unsettled(what, `the run with a crash after commit ${k}`, crashed, start, crashWithin, settleWithin, guard.reads);
      const actual = byFirstEvent(crashed, sent);
      for (const name of new Set([...expected.keys(), ...actual.keys()])) {
        const want = expected.get(name) ?? [];
        const got = actual.get(name) ?? [];
        if (JSON.stringify(want) === JSON.stringify(got)) continue;
        const [key, first] = name.split('\u0000');
        const read = guard.reads.length > 0 ? ` ${unjournaled(guard.reads)}` : '';
        const continued = answers.discontinued === null ? '' : ` ${answers.discontinued}`;
        return {
          ok: false,
          crashes: k,
          divergence: { afterCommit: k, key, firstEvent: Number(first), expected: want, actual: got },
          message:
            `A crash after commit ${k} changed the outputs of the session of key ${JSON.stringify(key)} opened by event ${first}: ` +
            `${JSON.stringify(want)} crash-free, ${JSON.stringify(got)} with the crash. A handler must make the same outputs ` +
            `from the same events, its restored state and its timers (a restore goes on from its checkpoint's state at ` +
            `the next event).${continued}${read}${realWaits()}`,
        };
      }
    }
    return { ok: true, crashes: calm.stats.commits };
  } finally {
    answers.uninstall();
    guard.uninstall();
    checking = false;
  }
}

/**
 * The advice for what the handler called outside its journaled calls (`reads`: `Date.now()`, `Math.random()`,
 * `fetch()`, `crypto.randomUUID()`, a `fakeModel().stream()`, each with where).
 */
function unjournaled(reads: readonly string[]): string {
  const clock = reads.some((read) => read.startsWith('Date.now()') || read.startsWith('Math.random()'));
  const calls = reads.some((read) => /^(fetch|crypto\.randomUUID|fakeModel)\(\)/.test(read));
  return (
    `It called ${reads.join('; ')}, outside a journaled call:` +
    (clock ? ' take time from the events (a timestamp they carry, or their entry ids), and no randomness' : '') +
    (clock && calls ? ';' : '') +
    (calls ? ' make a call whose answer differs (a service, an id) inside ctx.run() or ctx.stream(), which journal it' : '') +
    '.'
  );
}

/** Rejects a check's run that did not settle (`ERR_VELO_TEST_NOT_SETTLED`, or `ERR_VELO_TEST_STEPS`). */
function unsettled(
  what: string,
  run: string,
  result: SimResult<unknown>,
  start: number,
  within: number,
  settleWithin = within,
  reads: readonly string[] = [],
): void {
  const outcome: RunOutcome = result.outcome;
  if (outcome === 'done') return;
  if (outcome === 'steps') throw stepsError(`${what}: ${run}`, start + result.stats.time, result.exhausted);
  const window =
    within === settleWithin
      ? `settleWithin (${within} ms of virtual time after the last event)`
      : `${within} ms of virtual time after the last event (settleWithin ${settleWithin}, and ${within - settleWithin} for the takeover after the crash)`;
  // The most common cause is a timer computed from Date.now(): the run's clock starts at `start` (2024 by default),
  // so such a timer is due years ahead and keeps its session open whatever settleWithin is. Name it when the
  // handler read the clock (the check's stand-in recorded where), before any advice to wait longer.
  const clock = reads.filter((read) => read.startsWith('Date.now()'));
  const cause =
    clock.length > 0
      ? ` The handler read Date.now() (${clock.join('; ')}): a timer computed from it is due on this machine's clock, ` +
        `years after the run's (it starts at ${new Date(start).toISOString()}), and keeps its session open. ` +
        `Compute timer times from ctx.entry.time (the log's clock) instead.`
      : ' A handler with longer idle ends or timers needs a longer settleWithin.';
  throw testNotSettledError(
    `${what}: ${run} did not settle within ${window}: a session still open, or an event not handled.${cause}${realWaits()}`,
  );
}

/** A `checkDeterminism` is running (its stand-ins, nondeterminism.ts, are installed). */
let checking = false;

// The replay test before a deploy: a new handler over recorded sessions (docs/durable/replay-before-deploy.md).
export { replayRecording, type ReplayOptions } from './replay';
export { fakeModel, type FakeModel, type FakeModelOptions, type FakeToken } from './fake-model';
export {
  formatReplayReport,
  type NotReplayable,
  type ReplayDifference,
  type ReplayEnd,
  type ReplayOutput,
  type ReplayReport,
  type ReplaySummary,
  type UnverifiedSession,
} from './replay-compare';
export {
  checkRecording,
  parseRecording,
  type RecordedEnd,
  type RecordedEntry,
  type RecordedEvent,
  type RecordedMarker,
  type RecordedOutput,
  type RecordedPartition,
  type RecordedWake,
  type Recording,
  type RecordingBounds,
} from '../common/recording';
// Per-key state beyond a session (`keyState`): what a test worker's readState gives, and the option.
export type { KeyState } from '../common/stored';
export type { KeyStateOptions } from '../engine/worker-limits';
