// A session's opening on Postgres (what it opened with: version and caps), kept once per sid with its first write
// (a commit or a wake-up), and counted per version: what a grant of the partition is refused by (versions).
import { openingValue } from '../../durable/common/stored';
import type { SessionOpening } from '../../durable/common/transport';
import { type PgClientLike, run, str } from './sql';

/**
 * Keeps a session's opening once (as HSETNX), counted under its version; a migrated session's (`replaces`) replaces
 * the one kept, its count moving to its version.
 */
export async function keepOpening(client: PgClientLike, S: string, fn: string, p: number, o: SessionOpening): Promise<void> {
  const value = openingValue(o);
  const count = async (version: string, by: number) => {
    const { rows } = await run(
      client,
      `INSERT INTO ${S}.versions (fn, p, version, count) VALUES ($1, $2, $3, $4)
         ON CONFLICT (fn, p, version) DO UPDATE SET count = ${S}.versions.count + EXCLUDED.count RETURNING count`,
      [fn, p, version, by],
    );
    if (Number(rows[0].count) <= 0) {
      await run(client, `DELETE FROM ${S}.versions WHERE fn = $1 AND p = $2 AND version = $3`, [fn, p, version]);
    }
  };
  if (o.replaces === undefined) {
    const { rowCount } = await run(
      client,
      `INSERT INTO ${S}.openings (fn, p, sid, version, value) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
      [fn, p, o.sid, o.version, value],
    );
    if (rowCount === 1) await count(o.version, 1);
    return;
  }
  const { rows } = await run(
    client,
    `SELECT version, value FROM ${S}.openings WHERE fn = $1 AND p = $2 AND sid = $3 FOR UPDATE`,
    [fn, p, o.sid],
  );
  if (rows.length > 0 && rows[0].value === value) return;
  if (rows.length > 0) await count(str(rows[0].version), -1);
  await run(
    client,
    `INSERT INTO ${S}.openings (fn, p, sid, version, value) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (fn, p, sid) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value`,
    [fn, p, o.sid, o.version, value],
  );
  await count(o.version, 1);
}

/**
 * Keeps the openings of a commit, in order: new sessions' (no `replaces`) in one statement, counted per version in the
 * order of their first appearance; with a migrated session's among them, one at a time (`keepOpening`).
 */
export async function keepOpenings(
  client: PgClientLike,
  S: string,
  fn: string,
  p: number,
  openings: readonly SessionOpening[],
): Promise<void> {
  if (openings.length === 0) return;
  if (openings.length === 1 || openings.some((o) => o.replaces !== undefined)) {
    for (const o of openings) await keepOpening(client, S, fn, p, o);
    return;
  }
  // (ON CONFLICT DO NOTHING: a sid kept before is not counted again; one twice here counts its first.)
  const seen = new Set<string>();
  const firsts = openings.filter((o) => !seen.has(o.sid) && seen.add(o.sid));
  await run(
    client,
    `WITH ins AS (INSERT INTO ${S}.openings (fn, p, sid, version, value)
                  SELECT $1, $2, u.sid, u.version, u.value FROM unnest($3::text[], $4::text[], $5::text[]) AS u(sid, version, value)
                      ON CONFLICT DO NOTHING RETURNING version, sid)
     INSERT INTO ${S}.versions (fn, p, version, count)
     SELECT $1, $2, ins.version, count(*) FROM ins
       JOIN unnest($3::text[]) WITH ORDINALITY AS o(sid, i) ON o.sid = ins.sid
      GROUP BY ins.version ORDER BY min(o.i)
         ON CONFLICT (fn, p, version) DO UPDATE SET count = ${S}.versions.count + EXCLUDED.count`,
    [fn, p, firsts.map((o) => o.sid), firsts.map((o) => o.version), firsts.map(openingValue)],
  );
}
