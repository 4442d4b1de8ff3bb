// The dashboard fleet's store on Redis. Keys, all under one hash tag (one Cluster slot, so MGET works there too):
// `velo:dash:{<fleet>}:m:<member id>` holds a member's latest sample (`PX ttl`), and the set
// `velo:dash:{<fleet>}:members` names the members (it expires with the last publish; a reader removes the members
// whose sample has expired). Expiry is Redis' clock.
import type { FleetRow, FleetStore } from '../../durable/common/fleet-store';
import { type RedisClientLike, send } from '../log/connection';

/** The fleet `name`'s store on `client` (checked by the caller: a node-redis client, a name without braces). */
export function redisFleetStore(client: RedisClientLike, name: string): FleetStore {
  const members = `velo:dash:{${name}}:members`;
  const member = (id: string) => `velo:dash:{${name}}:m:${id}`;
  return {
    server: 'Redis',
    async publish(id, value, ttl) {
      const key = member(id);
      // The sample first, then the set that names it: a reader never finds a member without its sample but one
      // whose sample expired (and removes it).
      await Promise.all([
        send(client, key, ['SET', key, value, 'PX', String(ttl)]),
        send(client, members, ['SADD', members, id]),
        send(client, members, ['PEXPIRE', members, String(ttl)]),
      ]);
    },
    async read(max) {
      const ids = ((await send(client, members, ['SMEMBERS', members])) as unknown[])
        .filter((id): id is string => typeof id === 'string')
        .sort();
      const rows: FleetRow[] = [];
      const gone: string[] = [];
      // In pages of `max` ids, until `max` live members are found: an expired member takes no place of a live one.
      for (let from = 0; from < ids.length && rows.length < max; from += max) {
        const page = ids.slice(from, from + max);
        const keys = page.map(member);
        const values = (await send(client, keys[0], ['MGET', ...keys])) as unknown[];
        page.forEach((id, i) => (values[i] === null ? gone.push(id) : rows.length < max && rows.push({ id, value: values[i] })));
      }
      // Expired samples: their members leave the set (the readers' part of keeping it bounded).
      if (gone.length > 0) await send(client, members, ['SREM', members, ...gone]);
      return rows;
    },
    async remove(ids) {
      if (ids.length > 0) await send(client, members, ['SREM', members, ...ids]);
    },
    async leave(id) {
      const key = member(id);
      await Promise.all([send(client, key, ['DEL', key]), send(client, members, ['SREM', members, id])]);
    },
  };
}
