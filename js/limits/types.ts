// The limiter contract shared by the in-process limiter (js/limits/local.ts)
// and the Redis one (js/redis/limiter.ts). Copy this file to js/limits/types.ts
// unchanged; report any change you had to make to it.

/** A GCRA rate: at most `limit` units per `period` ms, of which `burst` may be used at once (default `limit`). */
export interface RateLimit {
  /** Units per period. */
  limit: number;
  /** The period, ms. */
  period: number;
  /** Units usable at once (default `limit`). */
  burst?: number;
}

/** What a limiter allows. At least one of `concurrency` and `rate`. */
export interface LimitSettings {
  /** At most this many permits held at once (per key when keyed). */
  concurrency?: number;
  /** At most `rate.limit` units per `rate.period` ms (per key when keyed); a permit's units are its `cost`. */
  rate?: RateLimit;
}

export interface LimiterOptions<T = unknown> extends LimitSettings {
  /** Names the limiter in metrics, the dashboard and errors; required on Redis (the fleet shares it by name). */
  name?: string;
  /** A limit per key: `key(item)` must return a non-empty string. */
  key?: (item: T) => string;
  /** Units of rate one permit uses (default 1), e.g. an LLM call's token estimate. */
  cost?: (item: T) => number;
  /**
   * 'throttle' (default): the excess waits, first come first served, at most `maxWaiting` at once (more is refused
   * with ERR_VELO_LIMIT_QUEUE_FULL). 'reject': the excess is refused at once with ERR_VELO_RATE_LIMITED (counted).
   */
  mode?: 'throttle' | 'reject';
  /** Bound of the waiting line in 'throttle' mode (default 10_000). */
  maxWaiting?: number;
  /**
   * Serves the waiters of one limit (the unkeyed limit, or one key's) fairly across tenants instead of first come
   * first served: a tenant that had less than its share (`weight / W`) of the line's last 512 grants goes first, in
   * arrival order; otherwise tenants take turns, `weight` grants each. First come first served within a tenant.
   * 'throttle' mode only. In-process only for now: the Redis limiter refuses it.
   */
  fairness?: Fairness<T>;
  /**
   * The waiter's priority: a whole number from -1,000,000 to 1,000,000 (default 0), asked at every `acquire`. A
   * waiter of a higher priority is served before every waiter of a lower one of the same limit (the unkeyed limit,
   * or one key's), even one that came earlier; within a priority, first come first served (or `fairness`).
   * 'throttle' mode only. In-process only for now: the Redis limiter refuses it.
   */
  priority?: (item: T) => number;
}

/** `LimiterOptions.fairness`: who a waiter is served with, and how many grants a tenant gets per turn. */
export interface Fairness<T = unknown> {
  /** The waiter's tenant: a non-empty string (asked at every `acquire`). */
  by: (item: T) => string;
  /** Grants per turn for `tenant` (a whole number from 1 to 10000; default 1), asked when the tenant starts waiting. */
  weight?: (tenant: string) => number;
}

/**
 * A granted permit, held from its grant to `release()` whatever the limits are meanwhile: release every permit,
 * a rate-only limiter's too (a concurrency limit that `setLimits()` adds later counts the permits held).
 * `release()` is idempotent.
 */
export interface Permit {
  /** Gives the permit back (once; later calls do nothing). */
  release(): void;
}

/** Options of `Limiter.acquire`. */
export interface AcquireOptions {
  /** Stops waiting: the acquire rejects with the signal's reason and holds nothing. */
  signal?: AbortSignal;
}

/** A limiter's figures (`Limiter.stats()`). */
export interface LimiterStats {
  /** The limiter's name. */
  name: string;
  /** Permits held now (all keys). */
  inUse: number;
  /** Acquires waiting now. */
  waiting: number;
  /** Permits granted since creation; it only grows. */
  admitted: number;
  /**
   * Of those, the permits given back unused: a later limiter of an array refused, or the stream was cancelled while
   * it waited for one. Their rate units came back with them. `admitted - refunded` were used. Always 0 for a fleet
   * limiter, whose permits are released instead.
   */
  refunded: number;
  /**
   * Acquires refused (reject mode, full line, a cost above the burst); for `limiter()`, also the `tryAcquire()`
   * calls that gave no permit (not after `close()`).
   */
  rejected: number;
  /** Time acquires waited before their grant (recent window), ms. */
  waitedMs: {
    /** Median. */
    p50: number;
    /** 99th percentile. */
    p99: number;
  };
  /** Units admitted per second over the last period. */
  rate?: number;
  /** Keys with a permit held or a waiter. */
  keys: number;
  /** How long the acquire waiting longest (all keys) has waited so far, ms; 0 when none waits. */
  oldestWaitMs: number;
}

/** One key's line (`Limiter.waitingKeys()`). */
export interface KeyWait {
  /** The key (`key(item)`'s answer; `''` for a limiter without `key`). */
  key: string;
  /** Acquires of the key waiting now. */
  waiting: number;
  /** Permits of the key held now (by this process, for a `redisLimiter`). */
  held: number;
  /** How long the key's acquire waiting longest has waited so far, ms. */
  oldestWaitMs: number;
}

/** A limiter: permits for task calls, streams, or any code (in-process: `limiter()`; on Redis: velo-stream/redis). */
export interface Limiter<T = unknown> {
  /** Its name (metrics, errors). */
  readonly name: string;
  /** Waits for a permit ('throttle') or refuses at once ('reject'). */
  acquire(item: T, options?: AcquireOptions): Promise<Permit>;
  /**
   * The keys whose acquires have waited longest, at most `limit` of them (default 10, up to 1000), the longest
   * first: per-key waits, for a dashboard or a log line. A `redisLimiter` reports this process's waiters.
   */
  waitingKeys?(limit?: number): KeyWait[];
  /**
   * A permit now, or undefined; never waits. `limiter()` counts an undefined in `stats().rejected` (the caller goes
   * without): to wait when none is free, call `acquire()` alone.
   */
  tryAcquire(item: T): Permit | undefined;
  /** Changes the limits at runtime; waiters are re-decided at once. */
  setLimits(settings: LimitSettings): void | Promise<void>;
  /** Its figures now. */
  stats(): LimiterStats;
  /** Refuses new acquires (ERR_VELO_LIMITER_CLOSED), rejects waiters with it, and stops its timers. */
  close(): Promise<void>;
}
