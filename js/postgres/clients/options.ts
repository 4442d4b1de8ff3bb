// Options shared by the Postgres worker, producer and output reader of one distributed stream function (as
// redis/log/options.ts for Redis): the user's pool, the schema, the function's name and shape. The tables are made
// (and migrated) at the first call that needs them, once per object (`Preparation`), so that the entry points stay
// synchronous as on Redis.
import { describe, invalidType } from '../../errors';
import { integerOption } from '../../validate';
import { type Codec, jsonCodec } from '../../durable/common/codec';
import { type ShapeOptions, unknownOption } from '../../durable/common/shape';
import { type PgSpace, spaceOf } from '../log/pg-log';
import { PoolGate } from '../log/gate';
import { ensurePartitions, migrate } from '../log/schema';
import { type PgClientLike, type PgPoolLike, checkPool } from '../log/sql';

/** The part of a node-postgres `PoolClient` velo-stream uses: what an `effects` callback gets (the commit's client). */
export type PostgresClient = Pick<PgClientLike, 'query'>;

/**
 * The Postgres part of the options of every entry point of `velo-stream/durable`: a pg.Pool as `client`, and the
 * schema. (The entry points of `velo-stream/postgres` take the pool as `pool`.)
 */
export interface PostgresClientOption {
  /** A node-postgres `pg.Pool` (its settings are yours; velo-stream never ends it). */
  client: PgPoolLike;
  /** The Postgres schema velo-stream's tables live in: a lower-case identifier, made (and migrated) if missing. Default `'velo_stream'`. */
  schema?: string;
}

/** The options every entry point of `velo-stream/postgres` shares; every process of a function must agree on them. */
export interface PostgresOptions<T = unknown> extends ShapeOptions<T> {
  /** A node-postgres `pg.Pool` (its settings are yours; velo-stream never ends it). */
  pool: PgPoolLike;
  /** The Postgres schema velo-stream's tables live in: a lower-case identifier, made (and migrated) if missing. Default `'velo_stream'`. */
  schema?: string;
  /** The function's name: 1-200 characters without whitespace. */
  name: string;
}

/** The name of the option that holds the pool: `pool` (velo-stream/postgres) or `client` (velo-stream/durable). */
export type PoolKey = 'pool' | 'client';

export interface PgResolved<T> {
  readonly pool: PgPoolLike;
  readonly schema: string;
  readonly space: PgSpace;
  readonly partitions: number;
  readonly codec: Codec<T>;
  readonly maxEventBytes: number;
  /**
   * Resolves once the schema and the function's partition rows are there (retried after a failure); `through`: a
   * log's gated pool (gate.ts) to make them on, default a gate of the default `callTimeout` on `pool`.
   */
  readonly prepare: (through?: PgPoolLike) => Promise<void>;
}

const sharedKeys = (poolKey: PoolKey) => [poolKey, 'schema', 'name', 'partitions', 'codec', 'maxEventBytes'];

/**
 * Checks the shared options; `ownKeys`: the entry point's other options (any other name is refused). `poolKey`: the
 * option that holds the pool (`client` for an entry point of velo-stream/durable).
 */
export function resolvePgOptions<T>(
  options: PostgresOptions<T>,
  what: string,
  ownKeys: readonly string[],
  poolKey: PoolKey = 'pool',
): PgResolved<T> {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  const shared = sharedKeys(poolKey);
  for (const key of Object.keys(options)) {
    if (!shared.includes(key) && !ownKeys.includes(key)) {
      throw unknownOption(what, key, [...shared, ...ownKeys], 'Postgres');
    }
  }
  const { schema = 'velo_stream', name, partitions = 64, codec = jsonCodec as Codec<T>, maxEventBytes = 1 << 20 } = options;
  const pool = (options as unknown as Record<PoolKey, unknown>)[poolKey];
  checkPool(what, pool);
  const space = spaceOf(what, schema, name);
  integerOption(what, 'partitions', partitions, 1, 16384);
  const c = codec as Partial<Codec<unknown>> | null;
  if (c === null || typeof c !== 'object' || typeof c.encode !== 'function' || typeof c.decode !== 'function') {
    throw invalidType(`${what}: options.codec must have encode() and decode(), not ${describe(codec)}`);
  }
  integerOption(what, 'maxEventBytes', maxEventBytes, 1, 512 << 20);
  let prepared: Promise<void> | null = null;
  const prepare = (through?: PgPoolLike): Promise<void> => {
    prepared ??= (async () => {
      // (Through a gate: each statement answered within callTimeout, a migration's as the user's are: gate.ts.)
      const gated = through ?? new PoolGate(pool).pool;
      await migrate(gated, schema);
      await ensurePartitions(gated, space.S, space.fn, partitions);
    })().catch((error: unknown) => {
      prepared = null;
      throw error;
    });
    return prepared;
  };
  return { pool, schema, space, partitions, codec, maxEventBytes, prepare };
}
