// The dashboard fleet's store on Postgres: one row per member in `dash_members` (log/schema.ts, version 6), keyed
// by (fleet, id), with its latest sample and `until_ms`, the server's time (sql.ts's NOW) at its last publish plus
// its ttl. A row past `until_ms` is never read; readers delete expired rows of their fleet, a bounded number per
// read, and a publisher does the same every CLEAN_EVERY publishes (so that a fleet nobody reads does not grow with
// every process that ever joined it).
//
// A publish is one upsert that changes only unindexed columns (`until_ms`, `value`; the table's only index is its
// key) on a table with room left in each page (fillfactor): a HOT update, no index write.
import type { FleetRow, FleetStore } from '../../durable/common/fleet-store';
import { PoolGate } from '../log/gate';
import { migrate, schemaIdent } from '../log/schema';
import { NOW, type PgPoolLike, checkPool, run, str } from '../log/sql';

/** Expired rows deleted by one read at most. */
const CLEAN_READ = 100;
/** A publisher deletes expired rows (up to CLEAN_PUBLISH, not its own) with every CLEAN_EVERY-th publish. */
const CLEAN_EVERY = 16;
const CLEAN_PUBLISH = 16;

/**
 * The fleet `name`'s store in `schema` on `raw` (a pg.Pool, not a single client: ERR_VELO_NOT_A_POOL; the name
 * checked by the caller).
 * The schema is made (and migrated) at the first call, retried after a failure.
 */
export function pgFleetStore(what: string, raw: PgPoolLike, schema: string, name: string): FleetStore {
  checkPool(what, raw);
  // (Each statement answered within the default callTimeout, else its connection destroyed: gate.ts.)
  const pool = new PoolGate(raw).pool;
  const S = schemaIdent(what, schema);
  const T = `${S}.dash_members`;
  /** Up to `n` expired rows of the fleet (not `$2`'s), deleted; as a CTE. */
  const expired = (n: number, notId: boolean) =>
    `gone AS (DELETE FROM ${T} WHERE fleet = $1 AND until_ms <= ${NOW} AND id IN (SELECT id FROM ${T}
       WHERE fleet = $1${notId ? ' AND id <> $2' : ''} AND until_ms <= ${NOW} LIMIT ${n} FOR UPDATE SKIP LOCKED))`;
  const upsert = `INSERT INTO ${T} (fleet, id, until_ms, value) VALUES ($1, $2, ${NOW} + $3, $4)
    ON CONFLICT (fleet, id) DO UPDATE SET until_ms = excluded.until_ms, value = excluded.value`;
  const PUBLISH = upsert;
  const PUBLISH_CLEAN = `WITH ${expired(CLEAN_PUBLISH, true)} ${upsert}`;
  const READ = `WITH ${expired(CLEAN_READ, false)} SELECT id, value FROM ${T} WHERE fleet = $1 AND until_ms > ${NOW}
    ORDER BY id COLLATE "C" LIMIT $2`;
  let prepared: Promise<unknown> | null = null;
  const prepare = (): Promise<unknown> =>
    (prepared ??= migrate(pool, schema).catch((error: unknown) => {
      prepared = null;
      throw error;
    }));
  let publishes = 0;
  return {
    server: 'Postgres',
    async publish(id, value, ttl) {
      await prepare();
      await run(pool, publishes++ % CLEAN_EVERY === 0 ? PUBLISH_CLEAN : PUBLISH, [name, id, ttl, value]);
    },
    async read(max) {
      await prepare();
      const { rows } = await run(pool, READ, [name, max]);
      return rows.map((r): FleetRow => ({ id: str(r.id), value: r.value }));
    },
    async remove(ids) {
      if (ids.length === 0) return;
      await prepare();
      await run(pool, `DELETE FROM ${T} WHERE fleet = $1 AND id = ANY ($2::text[])`, [name, ids]);
    },
    async leave(id) {
      await prepare();
      await run(pool, `DELETE FROM ${T} WHERE fleet = $1 AND id = $2`, [name, id]);
    },
  };
}
