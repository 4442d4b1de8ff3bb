// How a limiter of this package describes itself to the dashboard (js/integrations/dashboard-sample.ts): a
// method under a symbol, implemented by the in-process limiter (local.ts) and the fleet ones (their one driver,
// durable/common/fleet-limiter.ts).
// Imports types only: both limiters and the dashboard load it without a cycle.
import type { RateLimit } from './types';

/**
 * A limiter of this package describes itself through this method (the dashboard shows it): its kind, its limits
 * now (after any `setLimits`, and for a Redis limiter as of its last renewal), its mode and whether it is keyed.
 * Other limiters (any object with the three methods) have none.
 */
export const kDescribe = Symbol.for('velo-stream.limiterDescribe');

/** What `[kDescribe]()` answers. */
export interface LimiterDescription {
  /** `limiter()` ('in-process'), `redisLimiter()` ('redis') or `postgresLimiter()` ('postgres'). */
  kind: 'in-process' | 'redis' | 'postgres';
  /** Permits held at once (per key when keyed), if limited. */
  concurrency?: number;
  /** The rate, if limited. */
  rate?: Required<RateLimit>;
  /** 'throttle' or 'reject'. */
  mode: 'throttle' | 'reject';
  /** Whether each key has its own limits (`key` given). */
  keyed: boolean;
}
