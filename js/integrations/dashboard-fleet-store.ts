// Picks the dashboard fleet's store by the client it is given: a node-redis client (`sendCommand`) meets the fleet
// in Redis, a pg.Pool (`query` and `connect`) in Postgres. The one file of the integrations that imports a backend
// (__test__/layers.test.mjs treats it as an entry point).
import { describe, invalidType, invalidValue } from '../errors';
import type { FleetStore } from '../durable/common/fleet-store';
import { redisFleetStore } from '../redis/clients/fleet-store';
import type { RedisClientLike } from '../redis/log/connection';
import { pgFleetStore } from '../postgres/clients/fleet-store';
import type { PgPoolLike } from '../postgres/log/sql';

/** What `fleet.client` takes: a node-redis client, or a node-postgres Pool. */
export type FleetClient = RedisClientLike | PgPoolLike;

/** The fleet `name`'s store on `client`; `schema` (Postgres only, default 'velo_stream'). */
export function fleetStoreOf(client: unknown, name: string, schema: unknown): FleetStore {
  const c = client as Partial<RedisClientLike & PgPoolLike> | null;
  if (c !== null && typeof c === 'object' && typeof c.sendCommand === 'function') {
    if (schema !== undefined) {
      throw invalidValue(
        'dashboard(): fleet.schema names a Postgres schema: a fleet on Redis takes none (its keys are velo:dash:{<name>}:…)',
      );
    }
    return redisFleetStore(c as RedisClientLike, name);
  }
  if (c !== null && typeof c === 'object' && typeof c.query === 'function' && typeof c.connect === 'function') {
    return pgFleetStore('dashboard(): fleet', c as PgPoolLike, schema === undefined ? 'velo_stream' : (schema as string), name);
  }
  throw invalidType(
    `dashboard(): fleet.client must be a connected node-redis client or a node-postgres Pool (pg.Pool). Received ${describe(client)}`,
  );
}
