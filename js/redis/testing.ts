// velo-stream/testing: a handler run as `redisWorker` runs it, in memory and on a virtual clock, for tests without
// a Redis server. The worker's own partition code, sessions and streams run on an in-memory log that answers as
// Redis does (the library's contract test holds the two together); time moves only when the test moves it. A
// crash drops the process that owns the partitions, as kill -9 would; another takes over when its lease runs out.
import { describe, invalidType, invalidValue } from '../errors';
import type { StreamFn } from '../types';
import type { Codec } from './codec';
import { checkKey } from './options';
import { type Openable, kOpen } from './partition-run';
import type { HandlerFailure, OutputItem } from './reader';
import { type SimLimits, type SimResult, Simulation, simulate } from './simulator';

/** The settings of `redisWorker` a test may give (each with its default there), the codec, and where time starts. */
export interface TestWorkerOptions {
  /** Default 1. */
  partitions?: number;
  /** Default 10 000 (ms): after a crash, the next process takes over once this much virtual time has passed. */
  leaseTtl?: number;
  /** Default 256. */
  readCount?: number;
  /** Default 65 536. */
  maxBufferedEvents?: number;
  /** Default 0 (no cap). */
  maxSessionEvents?: number;
  /** Default 0 (no cap), ms. */
  maxSessionAge?: number;
  /** Default 1000. */
  maxSessionTimers?: number;
  /** Default 1 MiB. */
  maxCheckpointBytes?: number;
  /** Default 1 MiB. */
  maxEventBytes?: number;
  /** Default false. */
  checkReplay?: boolean;
  /** The function's codec (default JSON). */
  codec?: Codec<unknown>;
  /** The virtual clock's time at the start, ms since the epoch (default 2024-01-01T00:00:00Z). */
  start?: number;
}

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
  send(key: string, event: I): string;
  /** Lets `ms` of virtual time pass: everything due by then happens (reads, handlers, timers, session ends). */
  advance(ms: number): Promise<void>;
  /**
   * Runs until every event sent is handled and every session has ended (their idle ends pass on the virtual
   * clock). Rejects if that takes more than `within` ms of virtual time (default a day).
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
  /** Stops every process. */
  close(): Promise<void>;
}

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
  /** Why it failed, in words (with where the handler read the clock or a random number, if it did). */
  readonly message?: string;
}

const DEFAULT_START = Date.UTC(2024, 0, 1);
const DAY_MS = 86_400_000;

function checkFn(fn: unknown, what: string): void {
  if (typeof (fn as Partial<Openable<unknown, unknown>> | null)?.[kOpen] !== 'function') {
    throw invalidType(`${what}: fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  }
}

/** The run's settings as the simulator takes them. */
function limitsOf(o: TestWorkerOptions): SimLimits {
  return {
    partitions: o.partitions,
    leaseTtl: o.leaseTtl ?? 10_000,
    readCount: o.readCount,
    maxBufferedEvents: o.maxBufferedEvents,
    maxSessionEvents: o.maxSessionEvents,
    maxSessionAge: o.maxSessionAge,
    maxSessionTimers: o.maxSessionTimers,
    maxCheckpointBytes: o.maxCheckpointBytes,
    maxEventBytes: o.maxEventBytes,
    checkReplay: o.checkReplay,
  };
}

/** Each process gets the function with a gate of its own (its own `maxConcurrent` slots), as a process would. */
function perProcess<I, O>(fn: StreamFn<I, O>): () => StreamFn<I, O> {
  // (Every stream function has `withConfig`; the public type leaves it out.)
  return () => (fn as StreamFn<I, O> & { withConfig(config: object): StreamFn<I, O> }).withConfig({});
}

class InMemoryWorker<I, O> implements TestWorker<I, O> {
  readonly #sim: Simulation<I, O>;
  #closed = false;

  constructor(fn: StreamFn<I, O>, options: TestWorkerOptions) {
    this.#sim = new Simulation<I, O>({
      seed: 1,
      fn: perProcess(fn),
      events: [],
      limits: limitsOf(options),
      codec: options.codec,
      start: options.start ?? DEFAULT_START,
    });
  }

  now(): number {
    return this.#sim.clock.now();
  }

  send(key: string, event: I): string {
    return this.#sim.append(checkKey(key), event);
  }

  advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0)
      throw invalidValue(`advance(): ms must be a finite number of at least 0, not ${describe(ms)}`);
    return this.#sim.advanceTo(this.now() + ms);
  }

  async settle(within = DAY_MS): Promise<void> {
    const deadline = this.now() + within;
    if (!(await this.#sim.runUntil(() => this.#sim.settled(), deadline))) {
      throw new Error(
        `The run did not settle within ${within} ms of virtual time (a session still open, or an event not handled)`,
      );
    }
  }

  crash(): void {
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

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#sim.stop();
  }
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

/** `Date.now` and `Math.random`, replaced for a check: different in every run, and where the handler called them. */
class Nondeterminism {
  run = 0;
  readonly reads: string[] = [];
  readonly #now = Date.now;
  readonly #random = Math.random;

  install(): void {
    const now = this.#now;
    Date.now = () => {
      this.#record('Date.now()');
      return now() + this.run * DAY_MS;
    };
    let state = 0;
    Math.random = () => {
      this.#record('Math.random()');
      state = (state * 1_103_515_245 + 12_345 + this.run) % 2 ** 31;
      return state / 2 ** 31;
    };
  }

  uninstall(): void {
    Date.now = this.#now;
    Math.random = this.#random;
  }

  /** The caller's frame, unless it is the library's own (its files are under this module's parent folder). */
  #record(what: string): void {
    const frame = new Error().stack?.split('\n')[3]?.trim() ?? '';
    const read = `${what} ${frame}`;
    if (frame.includes(LIBRARY_DIR) || this.reads.length >= 3 || this.reads.includes(read)) return;
    this.reads.push(read);
  }
}

/** The compiled library's folder (dist/): calls from its own files are not the handler's. */
const LIBRARY_DIR = __dirname.slice(0, __dirname.lastIndexOf('redis') - 1);

/** Each session's outputs keyed by its key and the index of the event that opened it (ids differ between runs). */
function byFirstEvent<O>(result: SimResult<O>): Map<string, (O | TestFailure)[]> {
  const index = new Map(result.ids.map((id, i) => [id, i]));
  const out = new Map<string, (O | TestFailure)[]>();
  for (const o of result.outputs) {
    const name = `${o.key}\u0000${index.get(o.sid.slice(o.sid.lastIndexOf('@') + 1)) ?? -1}`;
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
 * state outside its session, fails it: during the check both give other values in every run.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function.
 */
export async function checkDeterminism<I = unknown, O = unknown>(
  fn: StreamFn<I, O>,
  events: readonly TestEvent<I>[],
  options: TestWorkerOptions = {},
): Promise<DeterminismReport<O>> {
  checkFn(fn, 'checkDeterminism()');
  // (Checked on a copy: narrowing `events` itself by Array.isArray would make its items `any`.)
  const given: unknown = events;
  if (!Array.isArray(given)) throw invalidType(`checkDeterminism(): events must be an array, not ${describe(given)}`);
  const start = options.start ?? DEFAULT_START;
  const guard = new Nondeterminism();
  const run = (crashAfterCommits: number[]) =>
    simulate<I, O>({
      seed: 1,
      fn: perProcess(fn),
      events: events.map((e) => ({ key: e.key, event: e.event, at: e.at ?? start })),
      limits: limitsOf(options),
      codec: options.codec,
      start,
      faults: { crashAfterCommits },
    });
  guard.install();
  try {
    const calm = await run([]);
    if (calm.violations.length > 0) throw new Error(`The crash-free run did not settle: ${calm.violations.join('; ')}`);
    const expected = byFirstEvent(calm);
    for (let k = 1; k <= calm.stats.commits; k++) {
      guard.run = k;
      const crashed = await run([k]);
      const actual = byFirstEvent(crashed);
      for (const name of new Set([...expected.keys(), ...actual.keys()])) {
        const want = expected.get(name) ?? [];
        const got = actual.get(name) ?? [];
        if (JSON.stringify(want) === JSON.stringify(got)) continue;
        const [key, first] = name.split('\u0000');
        const read =
          guard.reads.length > 0
            ? ` It read ${guard.reads.join('; ')}: take time from the events (a timestamp they carry, or their entry ids), and no randomness.`
            : '';
        return {
          ok: false,
          crashes: k,
          divergence: { afterCommit: k, key, firstEvent: Number(first), expected: want, actual: got },
          message:
            `A crash after commit ${k} changed the outputs of the session of key ${JSON.stringify(key)} opened by event ${first}: ` +
            `${JSON.stringify(want)} crash-free, ${JSON.stringify(got)} with the crash. A handler must make the same outputs ` +
            `from the same events, its restored state and its timers (a restore goes on from its checkpoint's state at ` +
            `the next event).${read}`,
        };
      }
    }
    return { ok: true, crashes: calm.stats.commits };
  } finally {
    guard.uninstall();
  }
}
