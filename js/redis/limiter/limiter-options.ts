// The checks of redisLimiter()'s own options (the client); the rest, and the rules shared with postgresLimiter, are
// common/limiter-rules.ts's. Nothing here talks to Redis.
import type { LimiterOptions } from '../../limits/types';
import { describe, invalidType, invalidValue } from '../../errors';
import { assertOptionsObject } from '../../config';
import type { RedisClientLike } from '../log/connection';
import { checkName } from '../log/options';
import {
  type FleetOptionsOf,
  type FleetSettings,
  checkFleetOptions,
  checkOptionKeys,
  fleetKeys,
  read,
} from '../../durable/common/limiter-rules';

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

const WHAT = 'redisLimiter()';

const OF: FleetOptionsOf = {
  what: WHAT,
  store: 'Redis',
  known: ['client', ...fleetKeys('whenRedisFails')],
  policy: 'whenRedisFails',
  checkName,
};

export interface Resolved<T> extends FleetSettings<T> {
  client: RedisClientLike;
}

/** Checks every option of redisLimiter(); throws a coded error for the first one refused. */
export function resolveLimiterOptions<T>(options: RedisLimiterOptions<T>): Resolved<T> {
  assertOptionsObject(options, 'options', "{ client, name: 'api', concurrency: 4 }");
  checkOptionKeys(options, OF);
  const client = read(options, 'client', WHAT) as RedisClientLike | undefined;
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
  return { client, ...checkFleetOptions<T>(options, OF) };
}
