// Which backend an entry point of velo-stream/durable runs on, by the client it is given: a node-redis client
// (`sendCommand`) runs it on Redis, a node-postgres pg.Pool (`query` and `connect`) on Postgres. Only the kind is
// told here; the backend checks the rest of the client as its own entry points do (a Redis client not connected, a
// pg.Client or a pool that was ended are refused there, with the entry point's name).
import { describe, invalidType, invalidValue } from '../errors';
import type { RedisClientLike } from '../redis/log/connection';
import type { PgPoolLike } from '../postgres/log/sql';

/** The backends a client picks. */
export type Backend = 'redis' | 'postgres';

/** Whether `client` looks like a node-redis client (single server or Cluster). */
export function isRedisClient(client: unknown): client is RedisClientLike {
  return client !== null && typeof client === 'object' && typeof (client as Partial<RedisClientLike>).sendCommand === 'function';
}

/** Whether `client` looks like a node-postgres pool (or a single connection, which the backend refuses by name). */
export function isPgPool(client: unknown): client is PgPoolLike {
  const c = client as Partial<PgPoolLike> | null;
  return c !== null && typeof c === 'object' && typeof c.query === 'function' && typeof c.connect === 'function';
}

/**
 * The options of entry point `what`, each read once here (own or inherited, a class's getters and methods too), so
 * that a getter or a Proxy trap that throws is ERR_INVALID_ARG_TYPE naming the option, with its error as `cause`,
 * rather than that error thrown from somewhere inside the entry point. Returns `options` itself: the entry point
 * reads them as given (a method keeps its object). Refuses options that are no object.
 */
export function readOptions<T>(what: string, options: T): T {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  const names = new Set<string>();
  try {
    for (let o: object | null = options; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null)
      for (const name of Object.getOwnPropertyNames(o)) if (name !== 'constructor') names.add(name);
  } catch (error) {
    throw invalidType(`${what}: options cannot be read (${describe(error)})`, error);
  }
  for (const name of names) {
    try {
      void (options as Record<string, unknown>)[name];
    } catch (error) {
      throw invalidType(`${what}: options.${name} cannot be read (${describe(error)})`, error);
    }
  }
  return options;
}

/**
 * The backend `options.client` picks, for the entry point `what`. Refuses options that are no object, a client of
 * neither kind (ERR_INVALID_ARG_TYPE, naming both), and `schema` with a Redis client (ERR_INVALID_ARG_VALUE).
 */
export function backendOf(what: string, options: unknown): Backend {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  let client: unknown;
  let schema: unknown;
  let pool: unknown;
  try {
    ({ client, schema, pool } = options as { client?: unknown; schema?: unknown; pool?: unknown });
  } catch (error) {
    throw invalidType(`${what}: options cannot be read (${describe(options)})`, error);
  }
  if (isRedisClient(client)) {
    if (schema !== undefined) {
      throw invalidValue(
        `${what}: options.schema names a Postgres schema: a Redis client takes none (its keys are named by options.name)`,
      );
    }
    return 'redis';
  }
  if (isPgPool(client)) return 'postgres';
  if (client === undefined && pool !== undefined) {
    throw invalidType(`${what}: the pool goes in options.client (options.pool is its name in velo-stream/postgres)`);
  }
  throw invalidType(
    `${what}: options.client must be a connected node-redis client or a node-postgres Pool (pg.Pool), not ${describe(client)}`,
  );
}
