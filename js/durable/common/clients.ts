// The handles the tier's entry points return, on any backend: a producer, the output readers, the versions view,
// the fleet limiter, key states and the materializer. Each backend's clients implement these; their own types (the
// `Redis*` and `Postgres*` ones) extend them, never the reverse.
import type { AcquireOptions, LimitSettings, Limiter, LimiterOptions, LimiterStats, Permit } from '../../limits/types';
import type { VersionStatus } from '../rules/versions';
import type { DrainedOptions } from './drained';
import type { KeyOutput } from './key-reader';
import type { OutputBatch, OutputBatchOptions, OutputItem } from './outputs';
import type { KeyState } from './stored';

/** Appends events for a distributed stream function; see `sessionProducer`. */
export interface Producer<I> {
  /** The function's partition count. */
  readonly partitions: number;
  /** The partition of `key`: `fnv1a(key) mod partitions`. */
  partitionOf(key: string): number;
  /**
   * Appends one event to its key's partition. Resolves with the entry id once the backend accepted it.
   * @throws {EventTooLargeError} `ERR_VELO_EVENT_TOO_LARGE` (rejects, nothing written) above `maxEventBytes`.
   * @throws {SendError} `ERR_VELO_SEND_FAILED` when the backend refused it, or gave no answer.
   * @throws {TypeError} `ERR_VELO_ENCODE` when the codec cannot encode the event, `ERR_INVALID_ARG_TYPE` /
   * `ERR_INVALID_ARG_VALUE` for a key that is not a non-empty string (or that the backend cannot store).
   */
  readonly send: (key: string, event: I) => Promise<string>;
  /**
   * Appends many events, in the given order per partition (so per key too). Every event is encoded and checked
   * before anything is written: one bad event rejects the whole call with nothing written. Resolves with the entry
   * ids, in the order of `events`.
   */
  readonly sendMany: (events: Iterable<readonly [string, I]>) => Promise<string[]>;
  /**
   * The lag of `key`'s partition (or of partition `partition`), measured now: entries of its input not yet read by
   * the worker that owns it (all of them while no worker ever took it).
   * @throws {RangeError} `ERR_OUT_OF_RANGE` for a partition number outside 0..partitions-1 (and the key errors of `send`).
   */
  lag(keyOrPartition: string | number): Promise<number>;
}

/** What `sessionOutputs` returns: its outputs as an async iterable, and a disposer for `await using`. */
export interface Outputs<O = unknown> extends AsyncIterable<OutputItem<O>>, AsyncDisposable {
  /**
   * The same outputs in batches: each batch is what the reader has at hand (at most `max`, without waiting for more),
   * with the positions before (`from`) and after (`to`) it. Write a batch and store its `to` in one transaction of
   * yours, guarded by `from` (docs/durable/outputs.md): each output then lands once, in order per key. Each call is
   * a loop of its own, from the reader's start (`from`, `after`). Reads without a consumer `group` only: a group keeps
   * its own position.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` for a `max` that is not an integer from 1 to 100,000.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for options that are not an object; `ERR_INVALID_ARG_VALUE` on a reader
   * with a `group`.
   */
  batches(options?: OutputBatchOptions): AsyncIterableIterator<OutputBatch<O>>;
  /** Ends every loop over these outputs, and resolves once they have ended. A loop started after it ends at once. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** What `keyOutputs` returns: the outputs of a key (or a set of keys) as an async iterable, and a disposer for `await using`. */
export interface KeyOutputs<O = unknown> extends AsyncIterable<KeyOutput<O>>, AsyncDisposable {
  /** Ends every loop over these outputs (its reading stopped), and resolves once they have ended. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The versions of a function's sessions and workers; see `sessionVersions`. */
export interface Versions {
  /** The function's partition count. */
  readonly partitions: number;
  /** Reads live sessions per version, live workers and what they own. */
  status(): Promise<VersionStatus>;
  /**
   * Resolves once `version` is drained: no live session runs on it, and no live worker whose version it is owns a
   * partition (such a worker would open new sessions on it). Then the workers of that version may stop. It reads
   * `status()` every `interval` ms until then (it keeps the process alive meanwhile). A version that, at the
   * first read, no live worker runs and no live session is on rejects with `ERR_VELO_VERSION_UNKNOWN` (a
   * misspelt name must not pass for a drained one), unless `ifUnknown: 'resolve'`.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a version that is not a version name
   * (1-64 letters, digits, `.`, `_` or `-`) or bad options; rejects with the error of a read that failed.
   */
  drained(version: string, options?: DrainedOptions): Promise<void>;
}

/** What a fleet limiter's acquire does while its backend cannot be reached or does not answer within `callTimeout`. */
export type WhenBackendFails = 'fail-closed' | 'fail-open' | 'local';

/** The options of a fleet limiter on any backend, besides the backend's (its client) and its failure policy. */
export interface FleetLimiterBase<T = unknown> extends LimiterOptions<T> {
  /**
   * The limiter's name: every process that passes it on the same backend shares the limits. 1-200 characters
   * without whitespace (on Redis, without braces either: its keys are `velo:lim:{<name>}:...`).
   */
  name: string;
  /** A holder's lease on its permits, ms (renewed every third of it while held). Default 30,000; 300 to 2^31-1. */
  leaseTtl?: number;
  /** The longest a call to the backend may take before it counts as failed, ms (or Infinity). Default 5,000. */
  callTimeout?: number;
}

/** A permit of a fleet limiter: `lost` once its lease ran out before its release (its slot may be someone else's). */
export interface FleetPermit extends Permit {
  /** The permit's fencing token ('' for one granted without the backend: fail-open, or the local fallback), never handed out twice. */
  readonly token: string;
  /** The backend's clock (ms) when it was granted; NaN without the backend. */
  readonly grantedAt: number;
  /** Whence it came: the backend (`'redis'`, `'postgres'`), `'open'` (fail-open: counted nowhere) or `'local'` (the in-process fallback). */
  readonly source: 'redis' | 'postgres' | 'open' | 'local';
  /** True once its lease is known to have run out before its release. */
  readonly lost: boolean;
  /** Resolves after release() with true if the backend freed the permit, false if its lease had already run out (fenced). */
  released(): Promise<boolean>;
}

/** `stats()` of a fleet limiter: this process' view, and the fleet's counters as of the last renewal. */
export interface FleetLimiterStats extends LimiterStats {
  /** The fleet's view as of the last renewal (one call per third of a lease). */
  fleet: {
    /** Processes that renewed within a lease (the divisor of the 'local' fallback). */
    processes: number;
    /** Permits the fleet granted since the limiter was made in the backend. */
    admitted: number;
    /** Acquires the fleet refused (reject mode, full line). */
    rejected: number;
  };
  /** Permits of this process whose lease ran out before their release. */
  lost: number;
  /** Whether the last call to the backend failed (acquires follow `whenBackendFails` until a renewal succeeds). */
  backendDown: boolean;
}

/** A limiter shared by a fleet (see `fleetLimiter`). */
export interface FleetLimiter<T = unknown> extends Limiter<T> {
  /** Waits in the fleet's line for a permit ('throttle'), or refuses at once ('reject'). */
  acquire(item: T, options?: AcquireOptions): Promise<FleetPermit>;
  /** Stores the fleet's limits in the backend; resolves once stored (and the lines re-decided). */
  setLimits(settings: LimitSettings): Promise<void>;
  /** This process' view, plus the fleet's counters as of the last renewal. */
  stats(): FleetLimiterStats;
}

/** Reads and deletes the states a function's keys keep after their sessions (the worker's `keyState`); see `keyState`. */
export interface KeyStates<S> {
  /** The function's partition count. */
  readonly partitions: number;
  /**
   * The state `key` keeps now, decoded with the function's codec; undefined if it keeps none (its sessions never
   * checkpointed, it expired, it was deleted, or the worker runs without `keyState`). A live session's own
   * checkpoints are not it: the key's state changes when a session ends.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a key that is not a non-empty, well-formed
   * string; `ERR_VELO_DECODE` (rejects) when the codec cannot decode the stored state.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` for a key longer than 1024 bytes (UTF-8).
   */
  readState(key: string): Promise<KeyState<S> | undefined>;
  /**
   * Deletes the state `key` keeps: its next session starts without it. Resolves with true if there was one. It does
   * not reach a session of the key that is live now: that session goes on with the state it started from and its
   * own checkpoints, and its end keeps its state again. The same errors as `readState`.
   */
  deleteState(key: string): Promise<boolean>;
}

/** What a materializer has done so far. */
export interface MaterializeStats {
  /** Outputs written to their hash. */
  applied: number;
  /** Outputs not written: the hash had this output, or a newer one of its key, already (re-deliveries). */
  skipped: number;
  /** Handler failures read (not materialized). */
  failures: number;
  /** Batches written and acked. */
  batches: number;
}

/** A running materializer: it reads outputs with its group and writes them into hashes until `close()`. */
export interface Materializer {
  /** Its figures now. */
  stats(): MaterializeStats;
  /**
   * Settles when it stops: resolves after close(); rejects with the error of a `key` or `fields` callback that
   * threw or returned something unusable (that batch is not acked, so nothing of it is lost; it comes back first
   * when a materializer with the same group and consumer starts).
   */
  readonly done: Promise<void>;
  /**
   * Finishes the batch being written (waiting `callTimeout` at most), then stops and closes its connection.
   * Idempotent. Does not close the client.
   */
  close(): Promise<void>;
  /** `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}
