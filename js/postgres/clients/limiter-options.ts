// Every check of postgresLimiter()'s options. The limits, and what `key` and `cost` return, are checked by the rules
// every fleet limiter shares (redis/common/limiter-rules.ts); here only what Postgres adds: the pool, the schema, the
// limiter's name, the failure policy, LISTEN and polling.
import type { LimiterOptions } from '../../limits/types';
import { describe, invalidType, invalidValue, limitKeyError } from '../../errors';
import { integerOption } from '../../validate';
import { assertOptionsObject } from '../../config';
import { type Limits, MAX_COUNT, checkLimits, keyOf, ownKeys, read } from '../../redis/common/limiter-rules';
import { type PgPoolLike, checkPool, checkPoolSize } from '../log/sql';
import { checkFunctionName, schemaIdent } from '../log/schema';

/** What acquire does while Postgres cannot be reached or does not answer within `callTimeout`. */
export type WhenPostgresFails = 'fail-closed' | 'fail-open' | 'local';

/** Options of `postgresLimiter()`: the limiter's own, the pool, the schema and the failure policy. */
export interface PostgresLimiterOptions<T = unknown> extends LimiterOptions<T> {
  /** A node-postgres `pg.Pool` (its settings are yours; the limiter never ends it). */
  pool: PgPoolLike;
  /** The schema of velo-stream's tables (made and migrated if missing), as the worker's. Default `'velo_stream'`. */
  schema?: string;
  /** The limiter's name (1-200 characters without whitespace): every process that passes it on the schema shares the limits. */
  name: string;
  /** A holder's lease on its permits, ms (renewed every third of it while held). Default 30,000; 300 to 2^31-1. */
  leaseTtl?: number;
  /** See {@link WhenPostgresFails}. Default 'fail-closed'. */
  whenPostgresFails?: WhenPostgresFails;
  /** The longest a call to Postgres may take before it counts as failed, ms (or Infinity). Default 5,000. */
  callTimeout?: number;
  /**
   * Default true: waiters are woken by NOTIFY (and poll too), with LISTEN on one connection of the pool, held from the
   * first wait until none waited for a third of a lease. false: they only poll (behind PgBouncer in transaction mode,
   * where LISTEN does not work).
   */
  listen?: boolean;
  /** The longest a waiter goes without asking whether its turn came, ms (it asks at 50 ms, then twice as long each time up to this). Default 1,000. */
  pollInterval?: number;
}

const OWN_KEYS = [
  'pool',
  'schema',
  'name',
  'concurrency',
  'rate',
  'key',
  'cost',
  'mode',
  'maxWaiting',
  'leaseTtl',
  'whenPostgresFails',
  'callTimeout',
  'listen',
  'pollInterval',
] as const;

export interface PgLimiterResolved<T> {
  pool: PgPoolLike;
  schema: string;
  /** The schema as SQL (checked and quoted). */
  S: string;
  name: string;
  limits: Limits;
  key?: (item: T) => string;
  cost?: (item: T) => number;
  mode: 'throttle' | 'reject';
  maxWaiting: number;
  leaseTtl: number;
  whenPostgresFails: WhenPostgresFails;
  callTimeout: number;
  listen: boolean;
  pollInterval: number;
}

const WHAT = 'postgresLimiter()';
const MAX_CALL_TIMEOUT_MS = 2 ** 31 - 1;

/** Checks every option of postgresLimiter(); throws a coded error for the first one refused. */
export function resolvePgLimiterOptions<T>(options: PostgresLimiterOptions<T>): PgLimiterResolved<T> {
  assertOptionsObject(options, 'options', "{ pool, name: 'api', concurrency: 4 }");
  for (const key of ownKeys(options, WHAT)) {
    if ((key === 'fairness' || key === 'priority') && read(options, key, WHAT) !== undefined)
      throw invalidValue(
        `${WHAT}: the "${key}" option is not supported on Postgres yet: waiters are served first come, first served. Use the in-process limiter() for ${key === 'fairness' ? 'fairness across tenants' : 'priorities'}`,
      );
    if (key === 'whenRedisFails')
      throw invalidValue(`${WHAT}: unknown option "whenRedisFails": on Postgres it is "whenPostgresFails"`);
    if (key !== 'fairness' && key !== 'priority' && !(OWN_KEYS as readonly string[]).includes(key))
      throw invalidValue(`${WHAT}: unknown option "${key}". Known options: ${OWN_KEYS.join(', ')}`);
  }
  const get = (key: (typeof OWN_KEYS)[number]) => read(options, key, WHAT);
  const pool = get('pool');
  checkPool(WHAT, pool);
  const schema = get('schema') ?? 'velo_stream';
  const S = schemaIdent(WHAT, schema);
  const name = get('name');
  if (name === undefined) throw invalidType(`${WHAT}: the "name" option is required: the fleet shares a limiter by its name`);
  checkFunctionName(WHAT, name);
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
  const whenPostgresFails = get('whenPostgresFails') ?? 'fail-closed';
  if (whenPostgresFails !== 'fail-closed' && whenPostgresFails !== 'fail-open' && whenPostgresFails !== 'local') {
    throw invalidValue(
      `${WHAT}: the "whenPostgresFails" option must be 'fail-closed', 'fail-open' or 'local'. Received ${describe(whenPostgresFails)}`,
    );
  }
  const rawTimeout = get('callTimeout') ?? 5000;
  const callTimeout =
    rawTimeout === Infinity
      ? Infinity
      : integerOption(
          WHAT,
          'callTimeout',
          rawTimeout,
          1,
          MAX_CALL_TIMEOUT_MS,
          `from 1 to ${MAX_CALL_TIMEOUT_MS} (ms), or Infinity`,
        );
  const listen = get('listen') ?? true;
  if (typeof listen !== 'boolean') throw invalidType(`${WHAT}: the "listen" option must be a boolean, not ${describe(listen)}`);
  checkPoolSize(WHAT, pool as PgPoolLike, listen);
  const pollInterval = integerOption(WHAT, 'pollInterval', get('pollInterval') ?? 1000, 10, 60_000, 'from 10 to 60000 (ms)');
  return {
    pool,
    schema: schema as string,
    S,
    name,
    limits,
    key: key as PgLimiterResolved<T>['key'],
    cost: cost as PgLimiterResolved<T>['cost'],
    mode,
    maxWaiting,
    leaseTtl,
    whenPostgresFails,
    callTimeout,
    listen,
    pollInterval,
  };
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
