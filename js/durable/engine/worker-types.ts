// The public types of a worker on any backend: its own options (besides the backend's client and the log's shape),
// its stats and the handle it returns.
import type { DebounceConfig, StreamFn } from '../../types';
import type { OutputItem } from '../common/outputs';
import type { WorkerLimiterOptions } from './session-permits';
import type { KeyStateOptions } from './worker-limits';

/**
 * A worker's own options, on any backend, besides the backend's (its client) and the log's shape (name, partitions,
 * codec, maxEventBytes), and besides the function's own settings (`idleTimeout`, `maxConcurrent`, `buffer`). `O` and
 * `I` type `onOutput` and `migrate`.
 */
export interface WorkerOptions<O = unknown, I = unknown> {
  /** Lease time-to-live, ms: a dead worker's partitions are taken over once its last renewal has run out, at most this after it. Renewed every ttl/3. Default 10 000. */
  leaseTtl?: number;
  /**
   * Entries per read of a partition; a partition behind (its last read came back full, and its sessions took it without
   * waiting) reads up to 4x as many. Default 256.
   */
  readCount?: number;
  /**
   * How often each owned partition's input is trimmed to its oldest pending entry, ms (checked at each lease
   * renewal, every leaseTtl/3); 0: never. Default 5000.
   */
  trimInterval?: number;
  /** This worker's id in leases (unique per process). Default `<hostname>-<pid>-<random>`. */
  workerId?: string;
  /**
   * Called with errors the worker recovers from by retrying (a lost connection, a server restart); while the server
   * cannot be reached, with one of those failures a second (`stats().errors` counts them all). Default:
   * `process.emitWarning`. A throw of it, or a rejection of the promise it returns, is a process warning
   * (`ERR_VELO_ON_ERROR`): the worker goes on.
   */
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
   * so a replay ends it at the same event. A session keeps the value it opened with on every worker (docs/durable/versions.md). 0: no cap (default).
   */
  maxSessionEvents?: number;
  /**
   * The longest a session lives, ms, measured on entry ids (Redis' clock when each entry was added, never the
   * worker's): an event more than this after the session's first one ends it as `maxSessionEvents` does
   * (`ERR_VELO_SESSION_AGE`) and opens the key's next session; a session with no such event is closed by a
   * marker in the log once it is that old. A `ctx.wakeAt()` due after it throws `TimerPastAgeError`
   * (`ERR_VELO_TIMER_PAST_AGE`); it bounds a session that its pending timers keep open. A session keeps the value it
   * opened with on every worker (docs/durable/versions.md). 0: no cap (default).
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
   * compared with the one written before; so is the number of outputs when the session ends, and where it ended
   * (its last input and reason, kept while its first entry is in the input) with a later end of the same session.
   * A difference is reported to `onError` as `ReplayDivergedError` (`ERR_VELO_REPLAY_DIVERGED`) and counted in
   * `stats().diverged`; readers keep the output written first. Only outputs and ends written by a worker with the
   * check on are compared. Costs a hash field and a SHA-1 per output in Redis, and two small entries per ended
   * session. Default false.
   */
  checkReplay?: boolean;
  /**
   * Largest encoded state a session's `ctx.checkpoint(state)` may record, bytes: a larger one throws
   * `CheckpointTooLargeError` (`ERR_VELO_CHECKPOINT_TOO_LARGE`) at the call, and the session fails. Default 1 MiB.
   */
  maxCheckpointBytes?: number;
  /**
   * Largest journal a session keeps, bytes: the encoded results and chunks of its journaled calls (`ctx.run`,
   * `ctx.stream`) since its last checkpoint. A record that would pass it throws `JournalTooLargeError`
   * (`ERR_VELO_JOURNAL_TOO_LARGE`) at the call; a checkpoint drops the records it covers. Default 16 MiB.
   */
  maxJournalBytes?: number;
  /**
   * What the worker keeps of each owned partition's output stream (trimmed on the input's clock, `trimInterval`):
   * `'all'` (the default) keeps every output (trimming is the readers' business); `'acked'` removes outputs every
   * consumer group of the stream has acked (`redisOutputs` and `redisMaterialize` with a `group`, or your own
   * `XREADGROUP`/`XACK`): an output a group has not read, or read and not acked, is never removed, so a slow or
   * stopped group holds them. A stream with no consumer group is not trimmed by `'acked'`: a plain `XREAD` reader
   * (`redisOutputs` without a group) leaves no trace of what it read; bound it with `outputMaxLen`.
   */
  outputRetention?: 'all' | 'acked';
  /**
   * Caps each owned partition's output stream at about this many outputs (`XTRIM MAXLEN ~`: at least this many
   * are kept, the oldest removed whether or not anyone read them): a reader more than this far behind misses
   * outputs. 0: no cap (the default). Applied after `outputRetention`.
   */
  outputMaxLen?: number;
  /**
   * Most timers a session may have pending (`ctx.wakeAt`; not taken, not replaced by a timer of its key, not
   * cancelled): one more throws `TooManyTimersError` (`ERR_VELO_TOO_MANY_TIMERS`) at the call. Each is kept in
   * memory and in the session's checkpoints. Default 1000.
   */
  maxSessionTimers?: number;
  /**
   * Debounce per key, on the log's clock (entry ids' times): a key's events within `wait` ms of its previous one
   * are one group, and one event of a group reaches the session: the last once the key has been quiet for `wait`
   * ms or `maxDelay` ms after the group's first (`edge: 'trailing'`, the default), or the first at once
   * (`'leading'`). What is pending is a durable timer of the session, so a crash changes nothing a reader sees.
   * Needs a stream function of one handler. Default none (docs/durable/debounce.md).
   */
  debounce?: DebounceConfig;
  /**
   * Limiters (in-process `limiter()`, fleet-wide `redisLimiter`, or any `Limiter`) whose permits sessions take:
   * `session` (a permit of each per session, from before it opens to its end) and/or `step` (a permit of each per
   * input its handler takes, from before the input is given to its next ask). Their `key` and `cost` functions
   * get a `SessionPermitItem` (`{ key, sid, input, event }`). A wait for a permit is like a slow handler: it never
   * changes which inputs a session takes or where it ends, and other keys go on meanwhile. See
   * docs/durable/limiters.md.
   */
  limiter?: WorkerLimiterOptions<I>;
  /**
   * Per-key state beyond a session (opt-in): when a session ends, its last checkpoint (`ctx.checkpoint`; with none,
   * the state it started from) is kept as its key's state, in the commit that ends it, for `retention` ms (a Redis
   * expiry); the key's next session starts from it (`ctx.restored`). Read and delete it from outside with
   * `redisKeyState`. Every worker of the function must use the same setting. Default none: nothing is kept after a
   * session (docs/durable/key-state.md).
   */
  keyState?: KeyStateOptions;
  /**
   * This worker's handler version (1-64 letters, digits, `.`, `_` or `-`): the version new sessions open on. A
   * session keeps the version it opened with until it ends, on whichever worker runs it (a worker takes a partition
   * only if it runs the version of each of its live sessions), so during a rolling deploy every session runs on one
   * version. Default none: sessions open with no version, and run on any worker. See docs/durable/versions.md.
   */
  version?: string;
  /**
   * Older versions this worker still runs, by version: their stream functions (of the same event and output types),
   * for the sessions that opened on them. A worker that runs every version another runs, and more, supersedes it: the
   * other hands its partitions over, so new sessions open on the newer version while old ones finish on theirs.
   * Needs `version`.
   */
  versions?: Readonly<Record<string, StreamFn<NoInferred<I>, NoInferred<O>>>>;
  /**
   * Adopts sessions of versions this worker does not run instead of waiting for them to end: a worker with it takes
   * any partition, and a session of another version continues on this worker's version from its last checkpoint,
   * whose state (decoded) `migrate(state, fromVersion)` turns into this version's (`ctx.restored`). A session with no
   * checkpoint continues on this version from its first event, as a takeover replays it. Outputs the old version
   * wrote after the checkpoint stay, and this version's first outputs up to the same seq are not written (as in any
   * replay). A throw fails the session (`ERR_VELO_MIGRATE`). Needs `version`. See docs/durable/versions.md.
   */
  migrate?: Migrate;
}

/**
 * `T` in a form the compiler does not infer `T` from (`NoInfer` from TypeScript 5.4 on): the types of a worker are
 * its `fn`'s, and an older version whose outputs are wider is refused rather than widening them.
 */
export type NoInferred<T> = [T][T extends unknown ? 0 : never];

/** A `migrate` function: synchronous (see `SyncMigrate`). */
export type Migrate = (state: unknown, fromVersion: string) => unknown;

/**
 * `M` if it returns no promise, else `never`: `redisWorker` takes `migrate` as `M & SyncMigrate<M>`, so an async
 * `migrate` (refused at run time: a session cannot wait for its state) is refused at compile time.
 */
export type SyncMigrate<M> = M extends (...args: never[]) => PromiseLike<unknown> ? never : M;

/** What waits for a limiter's permit on a worker (`WorkerStats.permits`; all 0 without the `limiter` option). */
export interface WorkerPermitStats {
  /** Keys whose next session waits for its `limiter.session` permits (at most `limiter.maxWaiting`). */
  waitingSessions: number;
  /** Sessions whose handler waits for a step's `limiter.step` permits. */
  waitingSteps: number;
  /** Grants held now: sessions holding their session permits, and handlers holding a step's. */
  held: number;
  /** Acquires that failed (the limiter refused them; each is reported through `onError` as `ERR_VELO_SESSION_PERMIT`, at most one a second, and made again later). */
  failures: number;
}

/** Round-trip times of the worker's calls to Redis, ms: nearest-rank percentiles of its last 1024 calls. */
export interface RoundTripStats {
  /** Calls timed since the start. */
  count: number;
  /** Median of the last 1024 calls, ms. */
  p50: number;
  /** 99th percentile of the last 1024 calls, ms. */
  p99: number;
  /** Slowest of the last 1024 calls, ms. */
  max: number;
}

/** Lease renewals of a worker: `count` succeeded; lateness percentiles in ms (nearest rank, last 1024). */
export interface RenewalStats {
  /** Renewals that succeeded. */
  count: number;
  /** Median lateness, ms past `leaseTtl/3` after the previous renewal was sent. */
  lateP50: number;
  /** 99th percentile of that lateness, ms. */
  lateP99: number;
  /** The latest renewal of the last 1024, ms late. */
  lateMax: number;
}

/** Counters of one worker. */
export interface WorkerStats {
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
  /**
   * How old the oldest pending input entry of the owned partitions is, ms by Redis' clock, as measured at the
   * last lease renewal (0: none pending). A pending entry is input a live session still needs (the events after
   * its last checkpoint, or all its events without checkpoints): the partition's log is never trimmed past it,
   * so a session that lives long without checkpoints keeps every key's entries of its partition since it began
   * in Redis' memory. Watch this grow.
   */
  pinnedAge: number;
  /** `pinnedAge` per owned partition (partition -> ms). */
  partitionPinnedAge: Record<number, number>;
  /** Live sessions on this worker: handlers running, each holding a slot of the function's `maxConcurrent`. */
  sessions: number;
  /**
   * Events kept in memory waiting for a session slot (`maxConcurrent` sessions of the function are open), at
   * most 64 reads' worth (`readCount`) per partition.
   */
  held: number;
  /**
   * Keys whose events wait for a slot in Redis instead (read past the bound of `held`; they stay in the
   * pending list and are read again by id once sessions end): the worker keeps one small record per key, with the
   * ids of up to 64 of its entries (a key with more is found by a pass over the pending list).
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
  /**
   * Ticks written: entries naming no session that move a partition's log clock past idle deadlines when no other
   * entry does (one per partition per idle period at most, only while it has sessions and its log is quiet).
   */
  ticks: number;
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
  /** Outputs trimmed away (`outputRetention: 'acked'`, `outputMaxLen`). */
  trimmedOutputs: number;
  /** Outputs committed (before the dedupe in the fenced script). */
  outputs: number;
  /** Errors the worker met: those passed to onError, and an outage's failures it did not pass (one a second is). */
  errors: number;
  /** Outputs passed to `onOutput` (those whose call threw included). */
  delivered: number;
  /** Outputs committed and not yet delivered to `onOutput` (the one it is handling included; at most `maxUndelivered`). */
  undelivered: number;
  /** Replay divergences found by `checkReplay`. */
  diverged: number;
  /** Checkpoints committed (`ctx.checkpoint`; of several by one session before a commit, only the latest is written). */
  checkpoints: number;
  /** Sessions started again from their checkpoint after a takeover (`ctx.restored`). */
  restored: number;
  /** Timers' wake-ups this worker wrote into the input (`ctx.wakeAt`; one made again by a replay is not written again). */
  wakeups: number;
  /**
   * Events `debounce` dropped: collapsed into a later one of their group (trailing) or within a quiet period
   * (leading). Counted as a session's handler takes them, so a replay after a takeover counts its again.
   */
  debounced: number;
  /**
   * `keyState`: states kept for keys by the commits that ended their sessions (a session's end that kept one, once;
   * a replay that ends it again writes it again, and counts it again).
   */
  keptStates: number;
  /** `keyState`: sessions that started from their key's kept state (`ctx.restored`); a replay counts its again. */
  keyStateStarts: number;
  /** Its `version` (`''`: none set). */
  version: string;
  /** Superseded by a live worker of a newer version: it takes no partition, and hands over those it has. */
  superseded: boolean;
  /** Its live sessions per version they run on (`''`: sessions that opened with no version). */
  sessionsByVersion: Record<string, number>;
  /** Partitions it did not take because a live session there runs a version it does not run (each attempt counts). */
  refusedVersions: number;
  /** Sessions it adopted from another version's checkpoint (`migrate`); a replay that adopts one again counts it again. */
  migrated: number;
  /** Round-trip times of the worker's calls to Redis (reads, commits, leases), blocking wake-up reads excluded. */
  roundTrip: RoundTripStats;
  /**
   * Lease renewals (every `leaseTtl/3`, on their own timer): how many succeeded, and how late their replies came,
   * ms past when each was due (`leaseTtl/3` after the previous one was sent), over the last 1024. A lease is lost
   * when this reaches two thirds of `leaseTtl`.
   */
  renewals: RenewalStats;
  /** What waits for a limiter's permit, and what is held (`limiter` option). */
  permits: WorkerPermitStats;
  /** Session slots (`fn`'s `maxConcurrent`) and the keys that wait for one. */
  slots: WorkerSlotStats;
}

/**
 * A worker's session slots (`WorkerStats.slots`). A key that needs a new session while every slot is taken
 * waits (its events in log order) until a session ends: reported through `onError` as `ERR_VELO_SESSION_SLOTS`, at
 * most once a minute.
 */
export interface WorkerSlotStats {
  /** Live sessions this worker runs at most: `fn`'s `maxConcurrent`. */
  max: number;
  /** Keys that need a new session and wait for a slot now. */
  waitingKeys: number;
  /** Keys that began to wait for a slot, since the start (a key counts again once it went on and waits again). */
  waits: number;
}

/** A running worker: it takes its share of the partitions and runs their sessions until `close()`. */
export interface Worker {
  /** Its `workerId` (lease tokens name it). */
  readonly id: string;
  /** The function's name in Redis keys (`options.name`). */
  readonly name: string;
  /**
   * The backend it runs on: `'redis'` (Redis or Valkey), `'postgres'`, or `'memory'` (the testing kit's in-memory
   * log). Metrics and the dashboard label its figures with it.
   */
  readonly backend: 'redis' | 'postgres' | 'memory';
  /** Its figures now (partitions, lag, sessions, leases, replays, round trips): see `WorkerStats`. */
  stats(): WorkerStats;
  /**
   * Graceful hand-off: stops reading, commits the outputs made so far, stops the local sessions and releases
   * every lease at once (other workers take the partitions over and replay their live sessions), then leaves,
   * once `onOutput` (if given) has had every output this worker committed. Idempotent. Does not close the client.
   */
  close(): Promise<void>;
}
