// velo-stream/prometheus, limiters: `registerLimiterMetrics` (re-exported by prometheus.ts).
import type { Registry } from 'prom-client';
import { describe, invalidReturn, invalidType, invalidValue, outOfRange } from '../errors';
import { isLocalLimiter } from '../limits/local';
import type { Limiter, LimiterStats } from '../limits/types';
import { type Collector, checkBuckets, checkLabelName, registerAll } from './prometheus-register';

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Permit waits, seconds: 10 µs to 1 min. */
const DEFAULT_BUCKETS = [1e-5, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1, 5, 10, 60];

/** Options of `registerLimiterMetrics`. */
export interface LimiterMetricsOptions {
  /** Prefix of every metric name. Default `velo_`. */
  prefix?: string;
  /** Permit wait histogram bounds, seconds. Default 10 µs to 1 min. */
  buckets?: number[];
}

function isLimiter(value: unknown): value is Limiter<unknown> {
  try {
    return (
      typeof (value as Limiter<unknown> | null)?.stats === 'function' && typeof (value as Limiter<unknown>).name === 'string'
    );
  } catch {
    return false;
  }
}

/** The limiters of a list, each once; two different ones with one name are refused (their series would collide). */
function distinct(items: Iterable<unknown>, atScrape: boolean): Limiter<unknown>[] {
  const byName = new Map<string, Limiter<unknown>>();
  for (const l of items) {
    if (!isLimiter(l)) {
      const message = `Every item of "limiters" must be a limiter. Received ${describe(l)}`;
      throw atScrape ? invalidReturn(message) : invalidType(message);
    }
    checkLabelName(l.name, 'The limiter name', atScrape);
    const seen = byName.get(l.name);
    if (seen === undefined) byName.set(l.name, l);
    else if (seen !== l) {
      const message = `Two different limiters are named "${l.name}": their metric series would collide. Give each its own name`;
      throw atScrape ? invalidReturn(message) : invalidValue(message);
    }
  }
  return [...byName.values()];
}

/**
 * Registers, on `registry`, metrics of the limiters that `limiters` lists (a list read once, or a function
 * returning one, called at every scrape), labelled `limiter` by name:
 * - `velo_limiter_in_use`, `velo_limiter_waiting`, `velo_limiter_keys`, `velo_limiter_oldest_wait_seconds` (gauges:
 *   permits held, acquires waiting, keys holding or waiting, the longest wait under way), `velo_limiter_rate` (gauge: units admitted per second over about the last period,
 *   rate limiters only)
 * - `velo_limiter_admitted_total`, `velo_limiter_refunded_total` (permits given back unused), `velo_limiter_rejected_total`
 *   (counters)
 * - `velo_limiter_wait_seconds` (histogram of the time acquires waited for their permit, a grant without a wait
 *   counting 0; limiters made by `limiter()`)
 *
 * Values are read from the limiters at scrape time (`stats()`); nothing is added to the acquire path. A limiter
 * whose `stats()` throws is left out of that scrape (the others are not).
 */
export function registerLimiterMetrics(
  registry: Registry,
  limiters: Iterable<Limiter<never>> | (() => Iterable<Limiter<never>>),
  opts: LimiterMetricsOptions = {},
): void {
  if (registry === null || typeof registry?.registerMetric !== 'function') {
    throw invalidType(`The "registry" argument must be a prom-client Registry. Received ${describe(registry)}`);
  }
  let list: () => Limiter<unknown>[];
  if (typeof limiters === 'function') {
    list = () => {
      const listed: unknown = limiters();
      if (listed === null || typeof (listed as Iterable<unknown>)?.[Symbol.iterator] !== 'function') {
        throw invalidReturn(`The "limiters" function must return an iterable of limiters. Received ${describe(listed)}`);
      }
      return distinct(listed as Iterable<unknown>, true);
    };
  } else if (limiters !== null && typeof limiters?.[Symbol.iterator] === 'function') {
    const fixed = distinct(limiters, false);
    list = () => fixed;
  } else {
    throw invalidType(
      `The "limiters" argument must be an iterable of limiters or a function returning one. Received ${describe(limiters)}`,
    );
  }
  if (opts === null || typeof opts !== 'object')
    throw invalidType(`registerLimiterMetrics(): the "opts" argument must be an object. Received ${describe(opts)}`);
  for (const key of Object.keys(opts)) {
    if (key !== 'prefix' && key !== 'buckets')
      throw invalidValue(`registerLimiterMetrics(): unknown option "${key}". Known options: prefix, buckets`);
  }
  const { prefix = 'velo_', buckets = DEFAULT_BUCKETS } = opts;
  if (typeof prefix !== 'string')
    throw invalidType(`registerLimiterMetrics(): opts.prefix must be a string. Received ${describe(prefix)}`);
  if (prefix !== '' && !METRIC_NAME.test(prefix)) {
    throw invalidValue(
      `registerLimiterMetrics(): opts.prefix must make valid Prometheus metric names. Received ${describe(prefix)}`,
    );
  }
  if (!Array.isArray(buckets) || buckets.length === 0) {
    throw outOfRange(
      `registerLimiterMetrics(): opts.buckets must be finite positive numbers of seconds in strictly increasing order`,
    );
  }
  checkBuckets(buckets, 'registerLimiterMetrics()');
  const bounds = [...buckets];
  const boundsUs = bounds.map((s) => Math.round(s * 1e6));

  // One scrape's limiters and their stats(), read once for all its metrics: prom-client asks every metric in one
  // synchronous loop, so what is read is dropped at the next microtask, and the next scrape reads afresh.
  let scrape: { limiters: Limiter<unknown>[]; stats: Map<Limiter<unknown>, LimiterStats | undefined> } | undefined;
  const limitersNow = (): Limiter<unknown>[] => {
    if (scrape === undefined) {
      scrape = { limiters: list(), stats: new Map() };
      queueMicrotask(() => (scrape = undefined));
    }
    return scrape.limiters;
  };
  const statsOf = (l: Limiter<unknown>): LimiterStats | undefined => {
    const read = scrape?.stats;
    if (read?.has(l)) return read.get(l);
    let s: LimiterStats | undefined;
    try {
      s = l.stats();
    } catch {
      // A limiter whose stats() throws (one of another make) has no samples in this scrape; the others do.
      s = undefined;
    }
    read?.set(l, s);
    return s;
  };

  // Registered together at the end: all of them, or none when the registry holds one of their names.
  const metrics: Collector[] = [];
  const metric = (name: string, help: string, type: 'gauge' | 'counter' | 'histogram', collect: () => Sample[]): void => {
    const full = prefix + name;
    const values = () => new Promise((resolve) => resolve({ name: full, help, type, aggregator: 'sum', values: collect() }));
    metrics.push({ name: full, help, type, aggregator: 'sum', get: values, reset: () => {} });
  };
  const gauge = (name: string, help: string, type: 'gauge' | 'counter', value: (s: LimiterStats) => number | undefined) =>
    metric(name, help, type, () =>
      limitersNow().flatMap((l) => {
        const s = statsOf(l);
        let v: unknown;
        try {
          v = s === undefined ? undefined : value(s);
        } catch {
          return [];
        }
        // (A figure that is not a number is left out, and a counter's that is not a count, a whole number from 0:
        // a limiter of another make may give anything.)
        if (typeof v !== 'number' || Number.isNaN(v) || (type === 'counter' && !(Number.isInteger(v) && v >= 0))) return [];
        return [{ labels: { limiter: l.name }, value: v }];
      }),
    );
  gauge('limiter_in_use', 'Permits held now.', 'gauge', (s) => s.inUse);
  gauge('limiter_waiting', 'Acquires waiting for a permit now.', 'gauge', (s) => s.waiting);
  gauge('limiter_keys', 'Keys holding a permit or a waiter now.', 'gauge', (s) => s.keys);
  gauge('limiter_oldest_wait_seconds', 'How long the acquire waiting longest has waited so far (0: none waits).', 'gauge', (s) =>
    typeof s.oldestWaitMs === 'number' ? s.oldestWaitMs / 1000 : undefined,
  );
  gauge('limiter_rate', 'Units admitted per second over about the last period.', 'gauge', (s) => s.rate);
  gauge('limiter_admitted_total', 'Permits granted.', 'counter', (s) => s.admitted);
  gauge(
    'limiter_refunded_total',
    'Permits given back unused (a later limiter refused, or the stream was cancelled while it waited).',
    'counter',
    (s) => s.refunded,
  );
  gauge(
    'limiter_rejected_total',
    "Acquires refused ('reject' mode, a full line, a cost above the burst).",
    'counter',
    (s) => s.rejected,
  );
  metric('limiter_wait_seconds', 'Time acquires waited for their permit (0 when granted at once).', 'histogram', () =>
    limitersNow().flatMap((l) => {
      if (!isLocalLimiter(l)) return [];
      const h = l.waitHistogram(boundsUs);
      const name = `${prefix}limiter_wait_seconds`;
      const samples: Sample[] = [
        ...h.counts.map((n, i) => ({ labels: { limiter: l.name, le: bounds[i] }, value: n, metricName: `${name}_bucket` })),
        { labels: { limiter: l.name, le: '+Inf' }, value: h.count, metricName: `${name}_bucket` },
        { labels: { limiter: l.name }, value: h.sumUs / 1e6, metricName: `${name}_sum` },
        { labels: { limiter: l.name }, value: h.count, metricName: `${name}_count` },
      ];
      return samples;
    }),
  );
  registerAll(registry, metrics, 'registerLimiterMetrics()');
}
