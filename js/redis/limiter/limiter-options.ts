// The checks of redisLimiter()'s own options (the client); the rest, and the rules shared with postgresLimiter, are
// common/limiter-rules.ts's. Nothing here talks to Redis.
import { describe, invalidType, invalidValue } from '../../errors';
import { assertOptionsObject } from '../../config';
import type { RedisClientLike } from '../log/connection';
import type { FleetLimiterBase, WhenBackendFails } from '../../durable/common/clients';
import { checkName } from '../log/options';
import {
  type FleetOptionsOf,
  type FleetSettings,
  checkFleetOptions,
  checkOptionKeys,
  fleetKeys,
  read,
} from '../../durable/common/limiter-rules';

/** What acquire does while Redis cannot be reached or does not answer within `callTimeout`: a `WhenBackendFails`. */
export type WhenRedisFails = WhenBackendFails;

/** Options of `redisLimiter()`: the limiter's own, the Redis client and the failure policy. */
export interface RedisLimiterOptions<T = unknown> extends FleetLimiterBase<T> {
  /** A connected node-redis client (v5 or v6, single server or Cluster). Not closed by the limiter. */
  client: RedisClientLike;
  /** See {@link WhenRedisFails}. Default 'fail-closed'. */
  whenRedisFails?: WhenRedisFails;
}

/** How an entry point names itself and its failure policy: `redisLimiter()` and `whenRedisFails` by default. */
export interface LimiterEntry {
  /** The entry point, as errors name it. */
  readonly what: string;
  /** The option of the failure policy. */
  readonly policy: 'whenRedisFails' | 'whenBackendFails';
}

const REDIS_LIMITER: LimiterEntry = { what: 'redisLimiter()', policy: 'whenRedisFails' };

const optionsOf = ({ what, policy }: LimiterEntry): FleetOptionsOf => ({
  what,
  store: 'Redis',
  known: ['client', ...fleetKeys(policy)],
  policy,
  renamed: policy === 'whenRedisFails' ? undefined : { whenRedisFails: policy },
  checkName,
});

export interface Resolved<T> extends FleetSettings<T> {
  client: RedisClientLike;
}

/** Checks every option of redisLimiter(); throws a coded error for the first one refused. */
export function resolveLimiterOptions<T>(options: RedisLimiterOptions<T>, entry: LimiterEntry = REDIS_LIMITER): Resolved<T> {
  const OF = optionsOf(entry);
  const WHAT = entry.what;
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
