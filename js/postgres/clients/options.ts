// Options shared by the Postgres worker, producer and output reader of one distributed stream function (as
// redis/log/options.ts for Redis): the user's pool, the schema, the function's name and shape. The tables are made
// (and migrated) at the first call that needs them, once per object (`Preparation`), so that the entry points stay
// synchronous as on Redis.
import { describe, invalidType, invalidValue } from '../../errors';
import { integerOption } from '../../validate';
import { type Codec, jsonCodec } from '../../durable/common/codec';
import { type PgSpace, spaceOf } from '../log/pg-log';
import { ensurePartitions, migrate } from '../log/schema';
import { type PgClientLike, type PgPoolLike, checkPool } from '../log/sql';

/** The part of a node-postgres `PoolClient` velo-stream uses: what an `effects` callback gets (the commit's client). */
export type PostgresClient = Pick<PgClientLike, 'query'>;

/** The options every entry point of `velo-stream/postgres` shares; every process of a function must agree on them. */
export interface PostgresOptions<T = unknown> {
  /** A node-postgres `pg.Pool` (its settings are yours; velo-stream never ends it). */
  pool: PgPoolLike;
  /** The Postgres schema velo-stream's tables live in: a lower-case identifier, made (and migrated) if missing. Default `'velo_stream'`. */
  schema?: string;
  /** The function's name: 1-200 characters without whitespace. */
  name: string;
  /** Partitions (K). Fixed for the life of the data: a key's partition is `fnv1a(key) mod K`. Default 64. */
  partitions?: number;
  /** Encodes events and outputs. Default `jsonCodec`. */
  codec?: Codec<T>;
  /** Largest encoded event or output, bytes; larger ones are refused with `ERR_VELO_EVENT_TOO_LARGE`. Default 1 MiB. */
  maxEventBytes?: number;
}

export interface PgResolved<T> {
  readonly pool: PgPoolLike;
  readonly schema: string;
  readonly space: PgSpace;
  readonly partitions: number;
  readonly codec: Codec<T>;
  readonly maxEventBytes: number;
  /** Resolves once the schema and the function's partition rows are there (retried after a failure). */
  readonly prepare: () => Promise<void>;
}

const SHARED_KEYS = ['pool', 'schema', 'name', 'partitions', 'codec', 'maxEventBytes'];

/** Checks the shared options; `ownKeys`: the entry point's other options (any other name is refused). */
export function resolvePgOptions<T>(options: PostgresOptions<T>, what: string, ownKeys: readonly string[]): PgResolved<T> {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!SHARED_KEYS.includes(key) && !ownKeys.includes(key)) {
      throw invalidValue(`${what}: unknown option "${key}". Known options: ${[...SHARED_KEYS, ...ownKeys].join(', ')}`);
    }
  }
  const { pool, schema = 'velo_stream', name, partitions = 64, codec = jsonCodec as Codec<T>, maxEventBytes = 1 << 20 } = options;
  checkPool(what, pool);
  const space = spaceOf(what, schema, name);
  integerOption(what, 'partitions', partitions, 1, 16384);
  const c = codec as Partial<Codec<unknown>> | null;
  if (c === null || typeof c !== 'object' || typeof c.encode !== 'function' || typeof c.decode !== 'function') {
    throw invalidType(`${what}: options.codec must have encode() and decode(), not ${describe(codec)}`);
  }
  integerOption(what, 'maxEventBytes', maxEventBytes, 1, 512 << 20);
  let prepared: Promise<void> | null = null;
  const prepare = (): Promise<void> => {
    prepared ??= (async () => {
      await migrate(pool, schema);
      await ensurePartitions(pool, space.S, space.fn, partitions);
    })().catch((error: unknown) => {
      prepared = null;
      throw error;
    });
    return prepared;
  };
  return { pool, schema, space, partitions, codec, maxEventBytes, prepare };
}
