// An owner's reads of its partition's input on Postgres. The statement that fences a read holds row locks (the
// lease row FOR KEY SHARE, for new entries the cursor row FOR UPDATE) until its result is sent: a result larger
// than the socket buffers, to an owner paused while receiving it (SIGSTOP), would keep the server's backend
// writing it (an active statement: idle_in_transaction_session_timeout never ends it) with those locks held, and a
// takeover's FOR UPDATE of the lease row would wait for the owner to wake. So the locking statement returns at most
// READ_ROWS entries' ids, and their fields only while their total stays under READ_BYTES; the rest of the entries
// come by a plain SELECT, with no lock, after it (one round trip still for the common small-event read).
import type { InputEntry } from '../../durable/common/transport';
import { ENTRY_COLUMNS, entryOf } from './input';
import { ID_BASE, NOW, type PgPoolLike, idOf, run } from './sql';

/** The most bytes of entry fields the locking statement of a read returns (past it, ids only). */
export const READ_BYTES = 16 * 1024;
/** The most entries one read takes (a read's count is a most: the next read takes the rest). */
export const READ_ROWS = 1000;

/** What a fenced read found: not fenced; its entries; with none, the partition's tail (`'0-0'` when empty). */
export type Fenced = { ok: false } | { ok: true; entries: InputEntry[]; tail: string };

/** An entry's fields' size, bytes, in SQL (of the columns of ENTRY_COLUMNS on alias `e`). */
const SIZE = ENTRY_COLUMNS.split(', ')
  .map((c) => `coalesce(octet_length(e.${c}::text), 0)`)
  .join(' + ')
  .replace('octet_length(e.payload::text)', 'octet_length(e.payload)')
  .replace('octet_length(e.due::text)', '8');

/** The fields of ENTRY_COLUMNS of `g`, each null unless `g.small` (the caller fetches the others). */
const BOUNDED = ENTRY_COLUMNS.split(', ')
  .map((c) => `CASE WHEN g.small THEN g.${c} END AS ${c}`)
  .join(', ');

/** The entries of `rows` whose fields the locking statement left out (`small` false), fetched with no lock. */
async function complete(
  pool: PgPoolLike,
  S: string,
  fn: string,
  p: number,
  rows: Record<string, unknown>[],
): Promise<InputEntry[]> {
  const rest = rows.filter((r) => r.small === false && r.found !== false);
  const fetched = new Map<string, Record<string, unknown>>();
  if (rest.length > 0) {
    const { rows: found } = await run(
      pool,
      `SELECT e.ms, e.seq, ${ENTRY_COLUMNS.replace(/(\w+)/g, 'e.$1')}
         FROM ${S}.entries e JOIN unnest($3::bigint[], $4::bigint[]) AS w(ms, seq) ON e.ms = w.ms AND e.seq = w.seq
        WHERE e.fn = $1 AND e.p = $2`,
      [fn, p, rest.map((r) => r.ms), rest.map((r) => r.seq)],
    );
    for (const r of found) fetched.set(idOf(r.ms, r.seq), r);
  }
  return rows.map((r) => {
    const id = idOf(r.ms, r.seq);
    if (r.found === false) return entryOf(id, null);
    return entryOf(id, r.small === false ? (fetched.get(id) ?? null) : r);
  });
}

function tailOf(rows: Record<string, unknown>[]): string {
  return rows[0].tail_ms === null ? '0-0' : idOf(rows[0].tail_ms, rows[0].tail_seq);
}

/**
 * New entries, fenced (the lease row FOR KEY SHARE, the cursor row FOR UPDATE) in one statement (its own
 * transaction): the entries after the last delivered made pending and the position moved; with none, the tail.
 */
export async function readNew(pool: PgPoolLike, S: string, fn: string, p: number, token: string, limit: number): Promise<Fenced> {
  const { rows } = await run(
    pool,
    `WITH f AS (SELECT l.token = $3 AND l.until_ms >= ${NOW} AS ok, c.delivered_ms, c.delivered_seq
                  FROM ${S}.leases l JOIN ${S}.cursors c ON c.fn = l.fn AND c.p = l.p
                 WHERE l.fn = $1 AND l.p = $2 FOR KEY SHARE OF l FOR UPDATE OF c),
          got AS (SELECT e.ms, e.seq, ${ENTRY_COLUMNS.replace(/(\w+)/g, 'e.$1')},
                         sum(${SIZE}) OVER (ORDER BY e.ms, e.seq) <= $5 AS small
                    FROM ${S}.entries e, f
                   WHERE f.ok AND e.fn = $1 AND e.p = $2 AND (e.ms, e.seq) > (f.delivered_ms, f.delivered_seq)
                   ORDER BY e.ms, e.seq LIMIT $4),
          ins AS (INSERT INTO ${S}.pending (fn, p, k, ms, seq)
                   SELECT $1, $2, ms::numeric * ${ID_BASE} + seq, ms, seq FROM got ON CONFLICT DO NOTHING),
          upd AS (UPDATE ${S}.cursors SET (delivered_ms, delivered_seq) =
                    (SELECT ms, seq FROM got ORDER BY ms DESC, seq DESC LIMIT 1)
                   WHERE fn = $1 AND p = $2 AND EXISTS (SELECT 1 FROM got))
     SELECT f.ok, g.ms, g.seq, g.small, ${BOUNDED}, t.ms AS tail_ms, t.seq AS tail_seq
       FROM f LEFT JOIN got g ON true
       LEFT JOIN LATERAL (SELECT ms, seq FROM ${S}.entries WHERE fn = $1 AND p = $2 AND g.ms IS NULL
                           ORDER BY ms DESC, seq DESC LIMIT 1) t ON true
      ORDER BY g.ms, g.seq`,
    [fn, p, token, Math.min(limit, READ_ROWS), READ_BYTES],
  );
  if (rows.length === 0 || rows[0].ok !== true) return { ok: false };
  if (rows[0].ms !== null) return { ok: true, entries: await complete(pool, S, fn, p, rows), tail: '' };
  return { ok: true, entries: [], tail: tailOf(rows) };
}

/**
 * Replay, fenced (the lease row FOR KEY SHARE) in one statement: the pending entries after `k` (one trimmed away
 * comes back with no fields); with none, the tail.
 */
export async function readPending(
  pool: PgPoolLike,
  S: string,
  fn: string,
  p: number,
  token: string,
  k: string,
  limit: number,
): Promise<Fenced> {
  const { rows } = await run(
    pool,
    `WITH f AS (SELECT l.token = $3 AND l.until_ms >= ${NOW} AS ok FROM ${S}.leases l
                 WHERE l.fn = $1 AND l.p = $2 FOR KEY SHARE),
          got AS (SELECT d.ms, d.seq, d.k, e.ms IS NOT NULL AS found, ${ENTRY_COLUMNS.replace(/(\w+)/g, 'e.$1')},
                         sum(${SIZE}) OVER (ORDER BY d.k) <= $6 AS small
                    FROM f, ${S}.pending d
                    LEFT JOIN ${S}.entries e ON e.fn = d.fn AND e.p = d.p AND e.ms = d.ms AND e.seq = d.seq
                   WHERE f.ok AND d.fn = $1 AND d.p = $2 AND d.k > $4::numeric
                   ORDER BY d.k LIMIT $5)
     SELECT f.ok, g.ms, g.seq, g.k, g.found, g.small, ${BOUNDED}, t.ms AS tail_ms, t.seq AS tail_seq
       FROM f LEFT JOIN got g ON true
       LEFT JOIN LATERAL (SELECT ms, seq FROM ${S}.entries WHERE fn = $1 AND p = $2 AND g.ms IS NULL
                           ORDER BY ms DESC, seq DESC LIMIT 1) t ON true
      ORDER BY g.k`,
    [fn, p, token, k, Math.min(limit, READ_ROWS), READ_BYTES],
  );
  if (rows.length === 0 || rows[0].ok !== true) return { ok: false };
  if (rows[0].ms !== null) return { ok: true, entries: await complete(pool, S, fn, p, rows), tail: '' };
  return { ok: true, entries: [], tail: tailOf(rows) };
}

/** One partition's part of `readNewMany`: its partition, the lease's token, the most entries to take. */
export interface ReadAsk {
  readonly p: number;
  readonly token: string;
  readonly limit: number;
}

/**
 * `readNew` of several partitions in one statement (its own transaction), each fenced by its own lease row and
 * cursor row (locked in partition order) and answered as `readNew` answers it: by partition.
 */
export async function readNewMany(
  pool: PgPoolLike,
  S: string,
  fn: string,
  asks: readonly ReadAsk[],
): Promise<Map<number, Fenced>> {
  const { rows } = await run(
    pool,
    `WITH w AS (SELECT * FROM unnest($2::integer[], $3::text[], $4::integer[]) AS w(p, token, lim)),
          f AS (SELECT w.p, w.lim, l.token = w.token AND l.until_ms >= ${NOW} AS ok, c.delivered_ms, c.delivered_seq
                  FROM w JOIN ${S}.leases l ON l.fn = $1 AND l.p = w.p JOIN ${S}.cursors c ON c.fn = l.fn AND c.p = l.p
                 ORDER BY w.p FOR KEY SHARE OF l FOR UPDATE OF c),
          got AS (SELECT f.p, e.ms, e.seq, ${ENTRY_COLUMNS.replace(/(\w+)/g, 'e.$1')},
                         sum(${SIZE}) OVER (PARTITION BY f.p ORDER BY e.ms, e.seq) <= $5 AS small
                    FROM f CROSS JOIN LATERAL (
                           SELECT * FROM ${S}.entries e
                            WHERE f.ok AND e.fn = $1 AND e.p = f.p AND (e.ms, e.seq) > (f.delivered_ms, f.delivered_seq)
                            ORDER BY e.ms, e.seq LIMIT f.lim) e),
          ins AS (INSERT INTO ${S}.pending (fn, p, k, ms, seq)
                   SELECT $1, p, ms::numeric * ${ID_BASE} + seq, ms, seq FROM got ON CONFLICT DO NOTHING),
          upd AS (UPDATE ${S}.cursors c SET (delivered_ms, delivered_seq) = (m.ms, m.seq)
                    FROM (SELECT DISTINCT ON (p) p, ms, seq FROM got ORDER BY p, ms DESC, seq DESC) m
                   WHERE c.fn = $1 AND c.p = m.p)
     SELECT f.p, f.ok, g.ms, g.seq, g.small, ${BOUNDED}, t.ms AS tail_ms, t.seq AS tail_seq
       FROM f LEFT JOIN got g ON g.p = f.p
       LEFT JOIN LATERAL (SELECT ms, seq FROM ${S}.entries WHERE fn = $1 AND p = f.p AND g.ms IS NULL
                           ORDER BY ms DESC, seq DESC LIMIT 1) t ON true
      ORDER BY f.p, g.ms, g.seq`,
    [fn, asks.map((a) => a.p), asks.map((a) => a.token), asks.map((a) => Math.min(a.limit, READ_ROWS)), READ_BYTES],
  );
  const byP = new Map<number, Record<string, unknown>[]>();
  for (const r of rows) {
    const p = Number(r.p);
    const list = byP.get(p);
    if (list === undefined) byP.set(p, [r]);
    else list.push(r);
  }
  const found = new Map<number, Fenced>();
  await Promise.all(
    asks.map(async ({ p }) => {
      const mine = byP.get(p) ?? [];
      if (mine.length === 0 || mine[0].ok !== true) found.set(p, { ok: false });
      else if (mine[0].ms !== null) found.set(p, { ok: true, entries: await complete(pool, S, fn, p, mine), tail: '' });
      else found.set(p, { ok: true, entries: [], tail: tailOf(mine) });
    }),
  );
  return found;
}
