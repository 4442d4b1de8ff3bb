// A partition's input on Postgres: entries added under the partition's head row (ids in commit order), read back as
// the InputEntry the engine takes (through stored.ts's reader of stream fields, as the Redis and in-memory logs).
import { inputEntries } from '../../durable/common/stored';
import type { InputEntry } from '../../durable/common/transport';
import { NOW, type PgClientLike, type PgPoolLike, bytes, idOf, run, text, str } from './sql';

/** One entry to add: an event (payload, trace), a close marker (close, reason) or a wake-up (wake, due, payload). */
export interface NewEntry {
  readonly key: string;
  readonly payload?: Buffer | string;
  readonly close?: string;
  readonly reason?: string;
  readonly wake?: string;
  readonly due?: number;
  readonly traceparent?: string;
  readonly tracestate?: string;
}

/** The columns of `entries` an InputEntry is made from, in this order (see `entryOf`). */
export const ENTRY_COLUMNS = 'key, payload, close, reason, wake, due, tp, ts';

/**
 * Adds entries to partition `p`'s input in order, in one statement; their ids. The head row's lock (UPDATE) is held
 * to the end of the statement's transaction (the caller's, or on a pool its own): the next append waits for this
 * one's commit, so ids are given in commit order. A NOTIFY on `channel` (payload: the partition and the last id
 * added, `<p> <ms>-<seq>`) goes out at commit: a wake-up hint for waiting workers.
 */
export async function addEntries(
  db: PgClientLike | PgPoolLike,
  S: string,
  fn: string,
  p: number,
  rows: readonly NewEntry[],
  channel: string,
): Promise<string[]> {
  if (rows.length === 0) return [];
  const n = rows.length;
  // Row i (from 1) gets seq last_seq - n + i: the head's new last id is the last row's.
  const { rows: head } = await run(
    db,
    `WITH h AS (UPDATE ${S}.heads h
                   SET last_ms = CASE WHEN c.now > h.last_ms THEN c.now ELSE h.last_ms END,
                       last_seq = CASE WHEN c.now > h.last_ms THEN $3::bigint - 1 ELSE h.last_seq + $3::bigint END
                  FROM (SELECT ${NOW} AS now) c
                 WHERE h.fn = $1 AND h.p = $2
             RETURNING h.last_ms, h.last_seq),
          ins AS (INSERT INTO ${S}.entries (fn, p, ms, seq, ${ENTRY_COLUMNS})
                  SELECT $1, $2, h.last_ms, h.last_seq - $3::bigint + u.i, u.key, u.payload, u.close, u.reason, u.wake, u.due,
                         u.tp, u.ts
                    FROM h, unnest($4::text[], $5::bytea[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[],
                                   $11::text[]) WITH ORDINALITY AS u(key, payload, close, reason, wake, due, tp, ts, i)),
          n AS (SELECT pg_notify($12, $13 || ' ' || h.last_ms || '-' || h.last_seq) FROM h)
     SELECT h.last_ms, h.last_seq FROM h, n`,
    [
      fn,
      p,
      n,
      rows.map((r) => text('A key', r.key)),
      rows.map((r) => (r.payload === undefined ? null : bytes(r.payload))),
      rows.map((r) => (r.close === undefined ? null : text('A session id', r.close))),
      rows.map((r) => r.reason ?? null),
      rows.map((r) => (r.wake === undefined ? null : text('A session id', r.wake))),
      rows.map((r) => (r.due === undefined ? null : str(r.due))),
      rows.map((r) => r.traceparent ?? null),
      rows.map((r) => (r.tracestate === undefined || r.tracestate === '' ? null : r.tracestate)),
      channel,
      str(p),
    ],
  );
  if (head.length === 0) throw new RangeError(`No partition ${p} of function ${fn} in Postgres (ensurePartitions)`);
  const ms = str(head[0].last_ms);
  const firstSeq = BigInt(str(head[0].last_seq)) - BigInt(n) + 1n;
  return rows.map((_, i) => `${ms}-${firstSeq + BigInt(i)}`);
}

/**
 * Adds entries to several partitions' inputs in one statement (so one transaction): `rows[i]` to partition
 * `partitions[i]`, each partition's in the order given; their ids, in the order of `rows`. The head rows are locked
 * in partition order first (two such appends never wait for each other in a cycle), then updated and the entries
 * added as `addEntries` does, with a NOTIFY per partition at commit.
 */
export async function addEntriesMany(
  db: PgClientLike | PgPoolLike,
  S: string,
  fn: string,
  partitions: readonly number[],
  rows: readonly NewEntry[],
  channel: string,
): Promise<string[]> {
  if (rows.length === 0) return [];
  // Per partition: its count of rows, and each row's place among them (from 1).
  const counts = new Map<number, number>();
  const places = partitions.map((p) => {
    const n = (counts.get(p) ?? 0) + 1;
    counts.set(p, n);
    return n;
  });
  const { rows: heads } = await run(
    db,
    `WITH c AS (SELECT ${NOW} AS now),
          l AS (SELECT h.p FROM ${S}.heads h WHERE h.fn = $1 AND h.p = ANY ($2::integer[]) ORDER BY h.p FOR UPDATE),
          n AS (SELECT u.p, u.n FROM unnest($2::integer[], $3::bigint[]) AS u(p, n)),
          h AS (UPDATE ${S}.heads h
                   SET last_ms = CASE WHEN c.now > h.last_ms THEN c.now ELSE h.last_ms END,
                       last_seq = CASE WHEN c.now > h.last_ms THEN n.n - 1 ELSE h.last_seq + n.n END
                  FROM c, l JOIN n ON n.p = l.p
                 WHERE h.fn = $1 AND h.p = l.p
             RETURNING h.p, h.last_ms, h.last_seq, n.n),
          ins AS (INSERT INTO ${S}.entries (fn, p, ms, seq, ${ENTRY_COLUMNS})
                  SELECT $1, h.p, h.last_ms, h.last_seq - h.n + u.i, u.key, u.payload, u.close, u.reason, u.wake, u.due,
                         u.tp, u.ts
                    FROM h JOIN unnest($4::integer[], $5::bigint[], $6::text[], $7::bytea[], $8::text[], $9::text[],
                                       $10::text[], $11::bigint[], $12::text[], $13::text[])
                                AS u(p, i, key, payload, close, reason, wake, due, tp, ts) ON u.p = h.p),
          t AS (SELECT count(pg_notify($14, h.p || ' ' || h.last_ms || '-' || h.last_seq)) AS sent FROM h)
     SELECT h.p, h.last_ms, h.last_seq FROM h, t`,
    [
      fn,
      [...counts.keys()],
      [...counts.values()],
      partitions,
      places,
      rows.map((r) => text('A key', r.key)),
      rows.map((r) => (r.payload === undefined ? null : bytes(r.payload))),
      rows.map((r) => (r.close === undefined ? null : text('A session id', r.close))),
      rows.map((r) => r.reason ?? null),
      rows.map((r) => (r.wake === undefined ? null : text('A session id', r.wake))),
      rows.map((r) => (r.due === undefined ? null : str(r.due))),
      rows.map((r) => r.traceparent ?? null),
      rows.map((r) => (r.tracestate === undefined || r.tracestate === '' ? null : r.tracestate)),
      channel,
    ],
  );
  const last = new Map(heads.map((h) => [Number(h.p), { ms: str(h.last_ms), seq: BigInt(str(h.last_seq)) }]));
  for (const p of counts.keys()) {
    if (!last.has(p)) throw new RangeError(`No partition ${p} of function ${fn} in Postgres (ensurePartitions)`);
  }
  return partitions.map((p, i) => {
    const head = last.get(p) as { ms: string; seq: bigint };
    return `${head.ms}-${head.seq - BigInt(counts.get(p) as number) + BigInt(places[i])}`;
  });
}

/** A row of `entries` (ENTRY_COLUMNS, or all null for an entry trimmed away) as the engine's InputEntry. */
export function entryOf(id: string, row: Record<string, unknown> | null): InputEntry {
  if (row === null) return inputEntries([[Buffer.from(id), null]])[0];
  const list: Buffer[] = [];
  const field = (name: string, value: unknown) => {
    if (value !== null && value !== undefined)
      list.push(Buffer.from(name), Buffer.isBuffer(value) ? value : Buffer.from(str(value)));
  };
  field('k', row.key);
  field('c', row.close);
  field('r', row.reason);
  field('w', row.wake);
  field('d', row.due);
  field('v', row.payload);
  field('t', row.tp);
  field('s', row.ts);
  return inputEntries([[Buffer.from(id), list]])[0];
}

/** Entry rows (with `ms`, `seq` and ENTRY_COLUMNS; `found` false for a pending entry trimmed away) as InputEntries. */
export function entriesOf(rows: readonly Record<string, unknown>[]): InputEntry[] {
  return rows.map((r) => entryOf(idOf(r.ms, r.seq), r.found === false ? null : r));
}
