// The options of `testWorker`, apart so that the replay tools and the test kit read one definition.
import type { DebounceConfig, StreamFn } from '../../types';
import type { Codec } from '../common/codec';
import type { KeyStateOptions } from '../engine/worker-limits';

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
}
