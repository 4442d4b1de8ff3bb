// velo-stream/prometheus: collectors for a prom-client registry.
//
// prom-client is an optional peer dependency: only this subpath needs it, and
// it is handed in (the registry), never imported by the core package.
import type { Metric, Registry } from 'prom-client';
import { describe, invalidType } from './errors';
import { kTotals, type Totals } from './function';
import type { StreamFn } from './types';

export interface PrometheusOptions {
  /** Prefix of every metric name. Default `velo_`. */
  prefix?: string;
  /** Queue-wait histogram bounds, seconds. Default 1 µs to 10 s. */
  buckets?: number[];
}

type AnyFn = StreamFn<never, unknown>;
type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

const DEFAULT_BUCKETS = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1, 5, 10];

/**
 * Registers, on `registry`, metrics of the stream functions that `fns` lists
 * (an iterable, or a function returning one, read at every scrape), labelled
 * `fn` by function name:
 * - `velo_streams_open` (gauge)
 * - `velo_streams_{opened,completed,failed,cancelled,rejected}_total`
 * - `velo_events_in_total`, `velo_events_out_total`
 * - `velo_queue_wait_seconds` (histogram: how long events waited in input buffers)
 *
 * Values are read at scrape time from the core; nothing is added to the
 * per-event path.
 */
export function registerStreamMetrics(
  registry: Registry,
  fns: Iterable<AnyFn> | (() => Iterable<AnyFn>),
  opts: PrometheusOptions = {},
): void {
  if (registry === null || typeof (registry as Registry)?.registerMetric !== 'function') {
    throw invalidType(`The "registry" argument must be a prom-client Registry. Received ${describe(registry)}`);
  }
  const prefix = opts.prefix ?? 'velo_';
  const bounds = opts.buckets ?? DEFAULT_BUCKETS;
  const boundsUs = bounds.map((s) => Math.round(s * 1e6));
  const list = (): AnyFn[] => [...(typeof fns === 'function' ? fns() : fns)];

  const metric = (name: string, help: string, type: 'gauge' | 'counter' | 'histogram', collect: () => Sample[]): void => {
    const full = prefix + name;
    const m = {
      name: full,
      help,
      type,
      aggregator: 'sum',
      get: async () => ({ name: full, help, type, aggregator: 'sum', values: collect() }),
      reset: () => {},
    };
    registry.registerMetric(m as unknown as Metric);
  };

  const perFn = (value: (f: AnyFn) => number) => () => list().map((f) => ({ labels: { fn: f.name }, value: value(f) }));
  metric('streams_open', 'Streams open now.', 'gauge', perFn((f) => f.stats().open));
  for (const key of ['opened', 'completed', 'failed', 'cancelled', 'rejected'] as const) {
    metric(`streams_${key}_total`, `Streams ${key}.`, 'counter', perFn((f) => f.stats()[key]));
  }
  const totals = (f: AnyFn): Totals => (f as unknown as { [kTotals](b: number[]): Totals })[kTotals](boundsUs);
  metric('events_in_total', 'Events accepted into input buffers.', 'counter', perFn((f) => totals(f).eventsIn));
  metric('events_out_total', 'Outputs yielded by handlers.', 'counter', perFn((f) => totals(f).eventsOut));
  metric('queue_wait_seconds', 'Time events waited in input buffers before the handler took them.', 'histogram', () =>
    list().flatMap((f): Sample[] => {
      const { count, sumUs, buckets } = totals(f).queueWait;
      const name = `${prefix}queue_wait_seconds`;
      return [
        ...buckets.map(([, n], i) => ({ labels: { fn: f.name, le: bounds[i] as number }, value: n, metricName: `${name}_bucket` })),
        { labels: { fn: f.name, le: '+Inf' }, value: count, metricName: `${name}_bucket` },
        { labels: { fn: f.name }, value: sumUs / 1e6, metricName: `${name}_sum` },
        { labels: { fn: f.name }, value: count, metricName: `${name}_count` },
      ];
    }),
  );
}
