// Every check of postgresLimiter()'s options. The options every fleet limiter takes, the limits, and what `key` and
// `cost` return, are checked by the rules they share (durable/common/limiter-rules.ts); here only what Postgres adds:
// the pool, the schema, the name a function can hold, LISTEN and polling.
import { describe, invalidType, limitKeyError } from '../../errors';
import { integerOption } from '../../validate';
import { assertOptionsObject } from '../../config';
import {
  type FleetOptionsOf,
  type FleetSettings,
  type Limits,
  checkFleetOptions,
  checkOptionKeys,
  fleetKeys,
  keyOf,
  read,
} from '../../durable/common/limiter-rules';
import { type PgPoolLike, checkPool, checkPoolSize } from '../log/sql';
import type { FleetLimiterBase, WhenBackendFails } from '../../durable/common/clients';
import type { PoolKey } from './options';
import { checkFunctionName, schemaIdent } from '../log/schema';

/** What acquire does while Postgres cannot be reached or does not answer within `callTimeout`: a `WhenBackendFails`. */
export type WhenPostgresFails = WhenBackendFails;

/** Options of `postgresLimiter()`: the limiter's own, the pool, the schema and the failure policy. */
export interface PostgresLimiterOptions<T = unknown> extends FleetLimiterBase<T>, PostgresLimiterOnly {
  /** A node-postgres `pg.Pool` (its settings are yours; the limiter never ends it). */
  pool: PgPoolLike;
  /** The schema of velo-stream's tables (made and migrated if missing), as the worker's. Default `'velo_stream'`. */
  schema?: string;
  /** See {@link WhenPostgresFails}. Default 'fail-closed'. */
  whenPostgresFails?: WhenPostgresFails;
}

/** A fleet limiter's options on Postgres only. */
export interface PostgresLimiterOnly {
  /**
   * Default true: waiters are woken by NOTIFY (and poll too), with LISTEN on one connection of the pool, held from the
   * first wait until none waited for a third of a lease. false: they only poll (behind PgBouncer in transaction mode,
   * where LISTEN does not work).
   */
  listen?: boolean;
  /** The longest a waiter goes without asking whether its turn came, ms (it asks at 50 ms, then twice as long each time up to this). Default 1,000. */
  pollInterval?: number;
}

/** How an entry point names itself, its pool option and its failure policy: `postgresLimiter()` by default. */
export interface PgLimiterEntry {
  /** The entry point, as errors name it. */
  readonly what: string;
  /** The option that holds the pool. */
  readonly poolKey: PoolKey;
  /** The option of the failure policy. */
  readonly policy: 'whenPostgresFails' | 'whenBackendFails';
}

const POSTGRES_LIMITER: PgLimiterEntry = { what: 'postgresLimiter()', poolKey: 'pool', policy: 'whenPostgresFails' };

const optionsOf = ({ what, poolKey, policy }: PgLimiterEntry): FleetOptionsOf => ({
  what,
  store: 'Postgres',
  known: [poolKey, 'schema', ...fleetKeys(policy), 'listen', 'pollInterval'],
  policy,
  renamed: policy === 'whenPostgresFails' ? { whenRedisFails: policy } : { whenRedisFails: policy, whenPostgresFails: policy },
  checkName: checkFunctionName,
});

export interface PgLimiterResolved<T> extends FleetSettings<T> {
  pool: PgPoolLike;
  schema: string;
  /** The schema as SQL (checked and quoted). */
  S: string;
  listen: boolean;
  pollInterval: number;
}

/** Checks every option of postgresLimiter(); throws a coded error for the first one refused. */
export function resolvePgLimiterOptions<T>(
  options: PostgresLimiterOptions<T>,
  entry: PgLimiterEntry = POSTGRES_LIMITER,
): PgLimiterResolved<T> {
  const OF = optionsOf(entry);
  const WHAT = entry.what;
  assertOptionsObject(options, 'options', `{ ${entry.poolKey}, name: 'api', concurrency: 4 }`);
  checkOptionKeys(options, OF);
  const get = (key: string) => read(options, key, WHAT);
  const pool = get(entry.poolKey);
  checkPool(WHAT, pool);
  const schema = get('schema') ?? 'velo_stream';
  const S = schemaIdent(WHAT, schema);
  const settings = checkFleetOptions<T>(options, OF);
  const listen = get('listen') ?? true;
  if (typeof listen !== 'boolean') throw invalidType(`${WHAT}: the "listen" option must be a boolean, not ${describe(listen)}`);
  checkPoolSize(WHAT, pool, listen);
  const pollInterval = integerOption(WHAT, 'pollInterval', get('pollInterval') ?? 1000, 10, 60_000, 'from 10 to 60000 (ms)');
  return { pool, schema: schema as string, S, ...settings, listen, pollInterval };
}

/** An item's key as the shared rules check it, and storable in a Postgres text column (no NUL): ERR_VELO_LIMIT_KEY. */
export function pgKeyOf<T>(name: string, key: ((item: T) => string) | undefined, item: T): string {
  const k = keyOf(name, key, item);
  if (k.includes('\0'))
    throw limitKeyError(`Limiter "${name}": key(item) must not hold a NUL character (Postgres text holds none)`);
  return k;
}

/** The limits as the functions take them: concurrency, limit, period, burst (null: none). */
export function pgLimitArgs(limits: Limits): (number | null)[] {
  const r = limits.rate;
  return [limits.concurrency ?? null, r?.limit ?? null, r?.period ?? null, r?.burst ?? null];
}
