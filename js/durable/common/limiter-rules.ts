// The rules every fleet limiter (redisLimiter, postgresLimiter) shares on this side of its store: the checks of
// its options (all but the store's own: client or pool, schema, polling) and of its limits, of what its `key` and
// `cost` functions return, and the share of the 'local' fallback. Pure: nothing here talks to Redis or Postgres.
import type { RateLimit } from '../../limits/types';
import { describe, invalidType, invalidValue, limitCostError, limitKeyError } from '../../errors';
import { callTimeoutOption, integerOption } from '../../validate';
import { assertOptionsObject } from '../../config';
import { MAX_KEY_BYTES } from './keys';

/** The largest concurrency, rate limit and burst, and maxWaiting (beyond any real use; keeps the arithmetic exact). */
export const MAX_COUNT = 1_000_000_000;
/** The longest rate period, ms: 31 days. */
export const MAX_PERIOD_MS = 31 * 86_400_000;

/** What acquire does while the store cannot be reached or does not answer within `callTimeout`. */
export type WhenStoreFails = 'fail-closed' | 'fail-open' | 'local';

/** Settings resolved: `rate.burst` always set. */
export interface Limits {
  concurrency?: number;
  rate?: Required<RateLimit>;
}

/**
 * Reads one property, turning a throwing getter or a revoked Proxy into a coded error (options are read once each,
 * here: the limiter never reads the caller's object again).
 */
export function read(object: object, key: string, what: string): unknown {
  try {
    return (object as Record<string, unknown>)[key];
  } catch (error) {
    throw invalidType(`${what}: the "${key}" option cannot be read (${describe(error)})`, error);
  }
}

export function ownKeys(object: object, what: string): string[] {
  try {
    return Object.keys(object);
  } catch (error) {
    throw invalidType(`${what}: the options cannot be read (${describe(error)})`, error);
  }
}

/** Checks `concurrency` and `rate` (of the options or of setLimits): at least one, each in range. */
export function checkLimits(settings: unknown, what: string, only = false): Limits {
  // As the in-process limiter answers (a plain object; an array, null or a class instance of a built-in refused alike).
  assertOptionsObject(settings, only ? 'settings' : 'options', '{ concurrency: 4 }');
  // setLimits() takes the limits alone: another option there (a typo, `key`) would be dropped without a word.
  if (only) {
    for (const key of ownKeys(settings, what)) {
      if (key !== 'concurrency' && key !== 'rate')
        throw invalidValue(`${what}: unknown option "${key}". Known options: concurrency, rate`);
    }
  }
  const concurrency = read(settings, 'concurrency', what);
  const rate = read(settings, 'rate', what);
  if (concurrency === undefined && rate === undefined) {
    throw invalidValue(`${what}: give a "concurrency" or a "rate" (or both): a limiter without either limits nothing`);
  }
  const limits: Limits = {};
  if (concurrency !== undefined) limits.concurrency = integerOption(what, 'concurrency', concurrency, 1, MAX_COUNT);
  if (rate !== undefined) {
    assertOptionsObject(rate, 'rate', '{ limit: 100, period: 60_000 }');
    for (const key of ownKeys(rate, what)) {
      if (key !== 'limit' && key !== 'period' && key !== 'burst')
        throw invalidValue(`${what}: unknown rate option "${key}". Known: limit, period, burst`);
    }
    const limit = integerOption(what, 'rate.limit', read(rate, 'limit', what), 1, MAX_COUNT);
    const period = integerOption(
      what,
      'rate.period',
      read(rate, 'period', what),
      1,
      MAX_PERIOD_MS,
      `from 1 to ${MAX_PERIOD_MS} (ms)`,
    );
    const burst = read(rate, 'burst', what) ?? limit;
    limits.rate = { limit, period, burst: integerOption(what, 'rate.burst', burst, 1, MAX_COUNT) };
  }
  return limits;
}

/** The key of an item: what `key(item)` returns, checked (`ERR_VELO_LIMIT_KEY`, as the in-process limiter); '' for an unkeyed limiter. */
export function keyOf<T>(name: string, key: ((item: T) => string) | undefined, item: T): string {
  if (key === undefined) return '';
  let k: unknown;
  try {
    k = key(item);
  } catch (error) {
    throw limitKeyError(`Limiter "${name}": key(item) threw`, error);
  }
  if (typeof k !== 'string' || k.length === 0) {
    throw limitKeyError(`Limiter "${name}": key(item) must return a non-empty string. Received ${describe(k)}`);
  }
  // Redis stores keys as UTF-8: a lone surrogate becomes U+FFFD, so two such keys would share one limit.
  if (!(k as string & { isWellFormed(): boolean }).isWellFormed())
    throw limitKeyError(
      `Limiter "${name}": key(item) must be well-formed Unicode (a lone surrogate would share another key's limit in Redis)`,
    );
  if (Buffer.byteLength(k) > MAX_KEY_BYTES)
    throw limitKeyError(`Limiter "${name}": key(item) returned a key longer than ${MAX_KEY_BYTES} bytes (UTF-8)`);
  return k;
}

/** The cost of an item: what `cost(item)` returns, checked against the burst (a larger cost could never conform). */
export function costOf<T>(name: string, cost: ((item: T) => number) | undefined, item: T, limits: Limits): number {
  if (cost === undefined) return 1;
  let c: unknown;
  try {
    c = cost(item);
  } catch (error) {
    throw limitCostError(`Limiter "${name}": cost(item) threw`, error);
  }
  // Whole units, as the in-process limiter (and the 'local' fallback, which is one) takes them.
  if (typeof c !== 'number' || !Number.isInteger(c) || c < 0 || c > MAX_COUNT) {
    throw limitCostError(
      `Limiter "${name}": cost(item) must return a whole number from 0 to ${MAX_COUNT}. Received ${describe(c)}`,
    );
  }
  if (limits.rate !== undefined && c > limits.rate.burst) {
    throw limitCostError(
      `Limiter "${name}": cost(item) returned ${c}, above the rate's burst (${limits.rate.burst}): it could never be admitted`,
    );
  }
  return c;
}

/** The limits as the scripts take them: concurrency, limit, period, burst ('' for none). */
export function limitArgs(limits: Limits): string[] {
  const r = limits.rate;
  return [String(limits.concurrency ?? ''), String(r?.limit ?? ''), String(r?.period ?? ''), String(r?.burst ?? '')];
}

/**
 * The in-process share of the fleet's limits for the 'local' fallback, among `processes` live processes (those
 * that renewed within a lease, as Redis last said): concurrency and rate divided by them, so the fleet stays within
 * its limits while every process is cut off alike. Each share keeps at least one permit (concurrency 1) and the
 * rate's burst at least one unit: a fleet larger than the limit may exceed it by that rounding.
 */
export function localShare(limits: Limits, processes: number): Limits {
  const n = Math.max(1, Math.floor(processes));
  const share: Limits = {};
  if (limits.concurrency !== undefined) share.concurrency = Math.max(1, Math.floor(limits.concurrency / n));
  if (limits.rate !== undefined) {
    const { limit, period, burst } = limits.rate;
    // The same emission interval as limit / n per period, in whole units (the in-process limiter's terms).
    // (A period past the longest timer, about 24.8 days, is cut to it: a share that much faster.)
    share.rate = { limit, period: Math.min(period * n, 2 ** 31 - 1), burst: Math.max(1, Math.floor(burst / n)) };
  }
  return share;
}

/** The options every fleet limiter takes, checked (`whenFails`: its `whenRedisFails` / `whenPostgresFails`). */
export interface FleetSettings<T> {
  name: string;
  limits: Limits;
  key?: (item: T) => string;
  cost?: (item: T) => number;
  mode: 'throttle' | 'reject';
  maxWaiting: number;
  leaseTtl: number;
  whenFails: WhenStoreFails;
  callTimeout: number;
}

/** The options every fleet limiter takes, in the order errors list them (`policy`: its failure policy's name). */
export function fleetKeys(policy: string): string[] {
  return ['name', 'concurrency', 'rate', 'key', 'cost', 'mode', 'maxWaiting', 'leaseTtl', policy, 'callTimeout'];
}

/** What a fleet limiter's options check is told of its store. */
export interface FleetOptionsOf {
  /** The function checked, as errors name it ('redisLimiter()'). */
  what: string;
  /** The store, as errors name it ('Redis'). */
  store: string;
  /** Every option it takes. */
  known: readonly string[];
  /** Its failure policy option ('whenRedisFails'). */
  policy: string;
  /** Another store's option name, and what this store calls it. */
  renamed?: Record<string, string>;
  /** Checks the name (what the store can hold). */
  checkName(what: string, name: unknown): asserts name is string;
}

/** Refuses an option the limiter does not know (fairness and priority: known, not supported on a fleet yet). */
export function checkOptionKeys(options: object, of: FleetOptionsOf): void {
  const { what } = of;
  for (const key of ownKeys(options, what)) {
    // Part of the shared LimiterOptions, not implemented on a fleet yet: said plainly rather than "unknown".
    // (Given as undefined, as the in-process limiter takes it: nothing to refuse.)
    if ((key === 'fairness' || key === 'priority') && read(options, key, what) !== undefined)
      throw invalidValue(
        `${what}: the "${key}" option is not supported on ${of.store} yet: waiters are served first come, first served. Use the in-process limiter() for ${key === 'fairness' ? 'fairness across tenants' : 'priorities'}`,
      );
    const renamed = of.renamed?.[key];
    if (renamed !== undefined) throw invalidValue(`${what}: unknown option "${key}": on ${of.store} it is "${renamed}"`);
    if (key !== 'fairness' && key !== 'priority' && !of.known.includes(key))
      throw invalidValue(`${what}: unknown option "${key}". Known options: ${of.known.join(', ')}`);
  }
}

/** Checks the options every fleet limiter takes, in this order (the first refused throws its coded error). */
export function checkFleetOptions<T>(options: object, of: FleetOptionsOf): FleetSettings<T> {
  const { what } = of;
  const get = (key: string) => read(options, key, what);
  // (Undefined takes the default; null is a value, refused as any other of the wrong type.)
  const or = (key: string, fallback: unknown) => {
    const value = get(key);
    return value === undefined ? fallback : value;
  };
  const name = get('name');
  if (name === undefined) throw invalidType(`${what}: the "name" option is required: the fleet shares a limiter by its name`);
  of.checkName(what, name);
  const limits = checkLimits(options, what);
  const key = get('key');
  if (key !== undefined && typeof key !== 'function')
    throw invalidType(`${what}: the "key" option must be a function, not ${describe(key)}`);
  const cost = get('cost');
  if (cost !== undefined && typeof cost !== 'function')
    throw invalidType(`${what}: the "cost" option must be a function, not ${describe(cost)}`);
  const mode = or('mode', 'throttle');
  if (mode !== 'throttle' && mode !== 'reject')
    throw invalidValue(`${what}: the "mode" option must be 'throttle' or 'reject'. Received ${describe(mode)}`);
  const maxWaiting = integerOption(what, 'maxWaiting', or('maxWaiting', 10_000), 1, MAX_COUNT);
  const leaseTtl = integerOption(what, 'leaseTtl', or('leaseTtl', 30_000), 300, 2 ** 31 - 1, 'from 300 to 2147483647 (ms)');
  const whenFails = or(of.policy, 'fail-closed');
  if (whenFails !== 'fail-closed' && whenFails !== 'fail-open' && whenFails !== 'local') {
    throw invalidValue(
      `${what}: the "${of.policy}" option must be 'fail-closed', 'fail-open' or 'local'. Received ${describe(whenFails)}`,
    );
  }
  const callTimeout = or('callTimeout', 5000);
  return {
    name,
    limits,
    key: key as FleetSettings<T>['key'],
    cost: cost as FleetSettings<T>['cost'],
    mode,
    maxWaiting,
    leaseTtl,
    whenFails,
    callTimeout: callTimeoutOption(what, callTimeout),
  };
}
