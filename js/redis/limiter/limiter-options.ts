// Every check of redisLimiter()'s options and of what its `key` and `cost` functions return, and the pure rules
// the limiter decides by on this side of Redis (the share of the 'local' fallback). Nothing here talks to Redis.
import type { LimitSettings, LimiterOptions, RateLimit } from '../../limits/types';
import { describe, invalidType, invalidValue, limitCostError, limitKeyError } from '../../errors';
import { integerOption } from '../../validate';
import { assertOptionsObject } from '../../config';
import type { RedisClientLike } from '../log/connection';
import { MAX_KEY_BYTES, callTimeoutOption, checkName } from '../log/options';

/** What acquire does while Redis cannot be reached or does not answer within `callTimeout`. */
export type WhenRedisFails = 'fail-closed' | 'fail-open' | 'local';

/** Options of `redisLimiter()`: the limiter's own, the Redis client and the failure policy. */
export interface RedisLimiterOptions<T = unknown> extends LimiterOptions<T> {
  /** A connected node-redis client (v5 or v6, single server or Cluster). Not closed by the limiter. */
  client: RedisClientLike;
  /** The limiter's name in Redis (`velo:lim:{<name>}:...`): every process that passes it shares the limits. */
  name: string;
  /** A holder's lease on its permits, ms (renewed every third of it while held). Default 30,000; 300 to 2^31-1. */
  leaseTtl?: number;
  /** See {@link WhenRedisFails}. Default 'fail-closed'. */
  whenRedisFails?: WhenRedisFails;
  /** The longest a call to Redis may take before it counts as failed, ms. Default 5,000. */
  callTimeout?: number;
}

/** The largest concurrency, rate limit and burst, and maxWaiting (beyond any real use; keeps the arithmetic exact). */
export const MAX_COUNT = 1_000_000_000;
/** The longest rate period, ms: 31 days. */
export const MAX_PERIOD_MS = 31 * 86_400_000;

const OWN_KEYS = [
  'client',
  'name',
  'concurrency',
  'rate',
  'key',
  'cost',
  'mode',
  'maxWaiting',
  'leaseTtl',
  'whenRedisFails',
  'callTimeout',
] as const;

/** Settings resolved: `rate.burst` always set. */
export interface Limits {
  concurrency?: number;
  rate?: Required<RateLimit>;
}

export interface Resolved<T> {
  client: RedisClientLike;
  name: string;
  limits: Limits;
  key?: (item: T) => string;
  cost?: (item: T) => number;
  mode: 'throttle' | 'reject';
  maxWaiting: number;
  leaseTtl: number;
  whenRedisFails: WhenRedisFails;
  callTimeout: number;
}

const WHAT = 'redisLimiter()';

/**
 * Reads one property, turning a throwing getter or a revoked Proxy into a coded error (options are read once each,
 * here: the limiter never reads the caller's object again).
 */
function read(object: object, key: string, what: string): unknown {
  try {
    return (object as Record<string, unknown>)[key];
  } catch (error) {
    throw invalidType(`${what}: the "${key}" option cannot be read (${describe(error)})`, error);
  }
}

function ownKeys(object: object, what: string): string[] {
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

/** Checks every option of redisLimiter(); throws a coded error for the first one refused. */
export function resolveLimiterOptions<T>(options: RedisLimiterOptions<T>): Resolved<T> {
  assertOptionsObject(options, 'options', "{ client, name: 'api', concurrency: 4 }");
  for (const key of ownKeys(options, WHAT)) {
    // Part of the shared LimiterOptions, not implemented on Redis yet: said plainly rather than "unknown".
    // (Given as undefined, as the in-process limiter takes it: nothing to refuse.)
    if ((key === 'fairness' || key === 'priority') && read(options, key, WHAT) !== undefined)
      throw invalidValue(
        `${WHAT}: the "${key}" option is not supported on Redis yet: waiters are served first come, first served. Use the in-process limiter() for ${key === 'fairness' ? 'fairness across tenants' : 'priorities'}`,
      );
    if (key !== 'fairness' && key !== 'priority' && !(OWN_KEYS as readonly string[]).includes(key))
      throw invalidValue(`${WHAT}: unknown option "${key}". Known options: ${OWN_KEYS.join(', ')}`);
  }
  const get = (key: (typeof OWN_KEYS)[number]) => read(options, key, WHAT);
  const client = get('client') as RedisClientLike | undefined;
  let isClient = false;
  let isOpen: unknown;
  try {
    isClient =
      client !== null &&
      typeof client === 'object' &&
      typeof client.sendCommand === 'function' &&
      typeof client.duplicate === 'function';
    isOpen = isClient ? (client as { isOpen?: unknown }).isOpen : undefined;
  } catch {
    // A revoked Proxy, a getter that throws: not a client (isClient stays false).
  }
  if (!isClient || client === undefined)
    throw invalidType(`${WHAT}: options.client must be a connected node-redis client, not ${describe(client)}`);
  if (isOpen === false) throw invalidValue(`${WHAT}: options.client is not connected: await client.connect() first`);
  const name = get('name');
  if (name === undefined) throw invalidType(`${WHAT}: the "name" option is required: the fleet shares a limiter by its name`);
  checkName(WHAT, name);
  const limits = checkLimits(options, WHAT);
  const key = get('key');
  if (key !== undefined && typeof key !== 'function')
    throw invalidType(`${WHAT}: the "key" option must be a function, not ${describe(key)}`);
  const cost = get('cost');
  if (cost !== undefined && typeof cost !== 'function')
    throw invalidType(`${WHAT}: the "cost" option must be a function, not ${describe(cost)}`);
  const mode = get('mode') ?? 'throttle';
  if (mode !== 'throttle' && mode !== 'reject')
    throw invalidValue(`${WHAT}: the "mode" option must be 'throttle' or 'reject'. Received ${describe(mode)}`);
  const maxWaiting = integerOption(WHAT, 'maxWaiting', get('maxWaiting') ?? 10_000, 1, MAX_COUNT);
  const leaseTtl = integerOption(WHAT, 'leaseTtl', get('leaseTtl') ?? 30_000, 300, 2 ** 31 - 1, 'from 300 to 2147483647 (ms)');
  const whenRedisFails = get('whenRedisFails') ?? 'fail-closed';
  if (whenRedisFails !== 'fail-closed' && whenRedisFails !== 'fail-open' && whenRedisFails !== 'local') {
    throw invalidValue(
      `${WHAT}: the "whenRedisFails" option must be 'fail-closed', 'fail-open' or 'local'. Received ${describe(whenRedisFails)}`,
    );
  }
  const callTimeout = callTimeoutOption(WHAT, get('callTimeout'));
  return {
    client,
    name,
    limits,
    key: key as Resolved<T>['key'],
    cost: cost as Resolved<T>['cost'],
    mode,
    maxWaiting,
    leaseTtl,
    whenRedisFails,
    callTimeout,
  };
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

export type { LimitSettings };
