// velo-stream/prometheus: what the register functions share: the check of histogram bounds and of the names that
// label series, and the registration of a call's metrics on a registry, all of them or none.
import type { Metric, Registry } from 'prom-client';
import { describe, invalidReturn, invalidValue, outOfRange } from '../errors';
import { isWellFormed } from '../text';

/**
 * Refuses `buckets` unless every item, holes included, is a finite number above 0 and above the item before it.
 * (A hole is read as `undefined`: array methods such as `forEach` would skip it, and it would be exported as
 * `le="undefined"`.)
 */
export function checkBuckets(buckets: readonly unknown[], what: string): void {
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i];
    if (typeof b !== 'number' || !Number.isFinite(b) || b <= 0 || (i > 0 && b <= (buckets[i - 1] as number))) {
      throw outOfRange(
        `${what}: opts.buckets must be finite positive numbers of seconds in strictly increasing order; item ${i} is ${i in buckets ? describe(b) : 'a hole'}`,
      );
    }
  }
}

/**
 * Refuses a name with a lone surrogate as a series' label: the exposition is sent as UTF-8, where each lone
 * surrogate becomes U+FFFD, so names that differ only there would be one label value (duplicate series).
 */
export function checkLabelName(name: string, what: string, atScrape: boolean): void {
  if (isWellFormed(name)) return;
  const message = `${what} ${JSON.stringify(name)} has a lone surrogate: as UTF-8 its label would be U+FFFD, the same as other names'. Give it a name of well-formed text`;
  throw atScrape ? invalidReturn(message) : invalidValue(message);
}

/** A metric of ours, in the shape prom-client's registry takes. */
export interface Collector {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter' | 'histogram';
  readonly aggregator: 'sum';
  get(): Promise<unknown>;
  reset(): void;
}

/**
 * Registers every metric of `metrics` on `registry`, or none: a name the registry holds already (a metric of
 * yours, or a register function called twice) is refused with `ERR_INVALID_ARG_VALUE` before any is registered.
 */
export function registerAll(registry: Registry, metrics: readonly Collector[], what: string): void {
  const held = (registry as Partial<Pick<Registry, 'getSingleMetric'>>).getSingleMetric;
  if (typeof held === 'function') {
    const taken = metrics.map((m) => m.name).filter((name) => held.call(registry, name) !== undefined);
    if (taken.length > 0)
      throw invalidValue(
        `${what}: the registry holds a metric named ${taken.map((n) => `"${n}"`).join(', ')} already: nothing was registered. Give another opts.prefix, or a registry without those names`,
      );
  }
  const done: Collector[] = [];
  try {
    for (const m of metrics) {
      registry.registerMetric(m as unknown as Metric);
      done.push(m);
    }
  } catch (error) {
    // (A registry without getSingleMetric refused one: the ones registered before it are taken back.)
    if (typeof registry.removeSingleMetric === 'function') for (const m of done) registry.removeSingleMetric(m.name);
    throw error;
  }
}
