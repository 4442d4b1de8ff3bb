// The checks of redisLimiter()'s own options (client, name, lease, failure policy); the limits and the rules shared
// with postgresLimiter are common/limiter-rules.ts's. Nothing here talks to Redis.
import type { LimitSettings, LimiterOptions } from '../../limits/types';
import { describe, invalidType, invalidValue } from '../../errors';
import { integerOption } from '../../validate';
import { assertOptionsObject } from '../../config';
import type { RedisClientLike } from '../log/connection';
import { callTimeoutOption, checkName } from '../log/options';
import { type Limits, MAX_COUNT, checkLimits, ownKeys, read } from '../common/limiter-rules';

export {
  MAX_COUNT,
  MAX_PERIOD_MS,
  type Limits,
  checkLimits,
  costOf,
  keyOf,
  limitArgs,
  localShare,
} from '../common/limiter-rules';

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

export type { LimitSettings };
