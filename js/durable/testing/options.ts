// The options of `testWorker` and `checkDeterminism`, and their checks, apart so that the replay tools and the test
// kit read one definition.
import { describe, invalidType, invalidValue } from '../../errors';
import { readString, textOf } from '../../text';
import type { DebounceConfig, StreamFn } from '../../types';
import { integerOption } from '../../validate';
import { type Codec, jsonCodec } from '../common/codec';
import { checkShape } from '../common/shape';
import { type KeyStateOptions, LIMIT_KEYS, checkLimits } from '../engine/worker-limits';
import type { SimLimits } from './sim-process';

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
  /** Default 16 MiB: a session's journal (`ctx.run`, `ctx.stream`), as the worker's `maxJournalBytes`. */
  maxJournalBytes?: number;
  /** Default 1 MiB. */
  maxEventBytes?: number;
  /** Default false. */
  checkReplay?: boolean;
  /** Default none: debounce per key, as `redisWorker`'s `debounce` (docs/durable/debounce.md). */
  debounce?: DebounceConfig;
  /** Default none: per-key state beyond a session, as `redisWorker`'s `keyState` (docs/durable/key-state.md). */
  keyState?: KeyStateOptions;
  /** The function's codec (default JSON). */
  codec?: Codec<unknown>;
  /** The virtual clock's time at the start, ms since the epoch, from 1 (default 2024-01-01T00:00:00Z). */
  start?: number;
  /**
   * Default none: the version new sessions open on, as `redisWorker`'s `version`. Needed for `deploy()`: the first
   * release of the test is this one.
   */
  version?: string;
  /** Default none: older handlers this release still runs, as `redisWorker`'s `versions`. */
  versions?: Readonly<Record<string, StreamFn<never, unknown>>>;
  /** Default none: adopts sessions of versions this release does not run, as `redisWorker`'s `migrate`. */
  migrate?: (state: unknown, fromVersion: string) => unknown;
  /**
   * Default none: called with each error the worker reports, as `redisWorker`'s `onError` is, besides `errors()`
   * keeping it. A throw there (a test's assertion) rejects the `advance()`, `settle()`, `stop()` or `close()` during
   * which it was reported, with the first error it threw; the run goes on.
   */
  onError?: (error: unknown) => void;
}

/**
 * The options of `checkDeterminism`: those of `testWorker` but `onError` (its runs crash at every commit: their
 * reports are its own) and a release's (`version`, `versions`, `migrate`: it runs one release, the handler given), and
 * how long each run may take to settle.
 */
export interface DeterminismOptions extends Omit<TestWorkerOptions, 'onError' | 'version' | 'versions' | 'migrate'> {
  /**
   * Virtual ms after the last event's `at` by which each run must have settled (every event handled, every session
   * ended), else the check rejects with `ERR_VELO_TEST_NOT_SETTLED`: an integer from 0 to 2 147 483 647. Default
   * a day plus the function's `idleTimeout`. A run with a crash gets `leaseTtl * 4/3` more (the takeover's wait:
   * the lease running out after the last renewal, and the next process's balance, every `leaseTtl / 3`).
   */
  settleWithin?: number;
}

/** Where the virtual clock starts by default: 2024-01-01T00:00:00Z. */
const DEFAULT_START = Date.UTC(2024, 0, 1);

/**
 * `read()`, the caller's reads of the test's own values (options, events), which may be hostile: a revoked Proxy,
 * or a getter that throws, gets the coded `ERR_INVALID_ARG_TYPE` naming what could not be read, not the bare error
 * of the read. Each value is read once, here; the checks after work on what was read.
 */
export function readGiven<T>(what: string, name: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    const why =
      (error !== null && typeof error === 'object' ? readString(() => (error as Error).message) : undefined) ?? textOf(error);
    throw invalidType(`${what}: ${name} cannot be read (a revoked Proxy, or a getter that throws: ${why})`);
  }
}

/** The options a test worker knows. */
const SHARED = ['partitions', 'codec', 'maxEventBytes', ...LIMIT_KEYS, 'start'];
/** `testWorker`'s: the shared ones, and a first release's for `deploy()`. */
const KNOWN = [...SHARED, 'version', 'versions', 'migrate', 'onError'];
/** The options a determinism check knows. */
export const KNOWN_CHECK = [...SHARED, 'settleWithin'];
/** The latest start: the latest time a Date holds. */
export const MAX_START = 8.64e15;

/** The run's settings, checked as `redisWorker` checks them (the same codes), and where time starts. */
export function resolveTest(
  what: string,
  options: unknown,
  known = KNOWN,
): {
  limits: SimLimits;
  codec: Codec<unknown>;
  start: number;
  settleWithin: unknown;
  onError: ((error: unknown) => void) | undefined;
} {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  const given = options as Record<string, unknown>;
  const { keys, o } = readGiven<{ keys: string[]; o: DeterminismOptions & TestWorkerOptions }>(what, 'options', () => {
    const copy: Record<string, unknown> = {};
    for (const key of known) if (given[key] !== undefined) copy[key] = given[key];
    // (The codec's methods too: a getter there would throw at the first event instead.)
    const codec = copy.codec as Record<string, unknown> | null | undefined;
    if (codec !== null && typeof codec === 'object') void [codec.encode, codec.decode];
    return { keys: Object.keys(given), o: copy };
  });
  for (const key of keys) {
    if (!known.includes(key)) throw invalidValue(`${what}: unknown option "${key}". Known options: ${known.join(', ')}`);
  }
  const { partitions = 1, codec = jsonCodec, maxEventBytes = 1 << 20, start = DEFAULT_START } = o;
  checkShape(what, partitions, codec, maxEventBytes);
  // From 1: Redis gives no entry id of time 0, and a session's rule reads `last` 0 as 'no input taken yet' (with
  // inputs at time 0 its idle end never came).
  integerOption(what, 'start', start, 1, MAX_START, `from 1 to ${MAX_START} (ms since the epoch)`);
  if (o.onError !== undefined && typeof o.onError !== 'function')
    throw invalidType(`${what}: options.onError must be a function, not ${describe(o.onError)}`);
  return {
    limits: { partitions, maxEventBytes, ...checkLimits(what, o, partitions) },
    codec,
    start,
    settleWithin: o.settleWithin,
    onError: o.onError,
  };
}
