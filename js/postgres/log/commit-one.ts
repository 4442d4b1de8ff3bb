// A commit in one statement: what commit.ts does in its fenced transaction of several round trips. Schema version 4's
// function `commit_4` (kept for the workers of releases before version 8) takes the commits that only write outputs,
// checkpoints and acks; version 8's `commit_8` (kept for the workers of version 8) every commit but a replay-checked
// one, one keeping a migrated session's opening or one that journals; version 9's `commit_9` those that journal too
// (its journal entries and the fields it forgets: journal.ts), and runs inside the transaction of a commit with
// effects (velo-stream's statements then take one round trip before the effects and the COMMIT after them). The
// function takes the same locks in the same order as the transaction (the lease row FOR KEY
// SHARE, refused unless it holds the token unexpired; the group row FOR UPDATE), then, in statements of its own that
// see every commit before it, the marks, and writes: outputs above their session's mark (ids after the group row's
// last, in order), marks (with their places), checkpoints, acks, the group row (with a serial: this commit, for its
// retry, which returns the ids the first call wrote and writes nothing).
import { keptValue, lastPlaces, openingValue, snapshotValue } from '../../durable/common/stored';
import type { Commit, Lease } from '../../durable/common/transport';
import { type PgClientLike, type PgPoolLike, bytes, idKey, idParts, millis, run, str, text } from './sql';
import { sqlFile } from './sql-file';
import { journalArrays } from './journal';

const COMMIT_4_SQL = sqlFile('commit-4.sql');
const COMMIT_8_SQL = sqlFile('commit-8.sql');
const COMMIT_9_SQL = sqlFile('commit-9.sql');

/** The function's text (`S`: the quoted schema): sql/commit-4.sql. */
export function COMMIT_4(S: string): string {
  return COMMIT_4_SQL(S)[0];
}

/**
 * Schema version 8's function `commit_8`: every commit but a replay-checked one (`check`) or one keeping a migrated
 * session's opening (`replaces`), in one statement: what `commit_4` does (the same locks in the same order, the
 * same outputs, marks, checkpoints, acks and group row), then the kept states, the ended sessions forgotten (their
 * digests, openings and version counts, marks, checkpoints, timers) and the new sessions' openings kept, in
 * commit.ts's order. `a_idle` (> 0) sets the transaction's idle_in_transaction_session_timeout once the locks are
 * held (in a commit with effects: from here to COMMIT only the effects run). `r_wrote`: false for the retry of a
 * commit applied before (nothing written; its ids are the first call's). Its text (`S`: the quoted schema):
 * sql/commit-8.sql.
 */
export function COMMIT_8(S: string): string {
  return COMMIT_8_SQL(S)[0];
}

/**
 * Schema version 9's function `commit_9`: `commit_8` with the commit's journal (its entries written and the fields
 * it forgets removed, after the checkpoints, as journal.ts's statement does). Its text (`S`: the quoted schema):
 * sql/commit-9.sql.
 */
export function COMMIT_9(S: string): string {
  return COMMIT_9_SQL(S)[0];
}

/** Whether `commit_9` can apply `commit` (else the fenced transaction of commit.ts does). */
export function inOne(commit: Commit): boolean {
  return commit.check !== true && !(commit.opened ?? []).some((o) => o.replaces !== undefined);
}

/** The last of each key's items (a batch upsert may touch a row once). */
function lastBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  return [...new Map(items.map((item) => [key(item), item])).values()];
}

/** What `commit_9` did: `wrote` false for the retry of a commit applied before; `ids` by output (null: skipped). */
export interface OneResult {
  readonly wrote: boolean;
  readonly ids: readonly (string | null)[];
}

/** The 28 arguments of `commit_9` for `commit` (one `inOne` accepts). */
function commitArgs(fn: string, lease: Lease, commit: Commit, ids: boolean, idle: number): unknown[] {
  const serial = commit.serial === undefined ? '' : str(commit.serial);
  const places = lastPlaces(commit.outputs);
  const outputs = commit.outputs;
  const checkpoints = lastBy(commit.checkpoints ?? [], (c) => c.sid);
  const kept = lastBy(commit.kept ?? [], (k) => k.key);
  // (New sessions' openings, the first of each sid: ON CONFLICT DO NOTHING counts a sid kept before not again.)
  const seen = new Set<string>();
  const opened = (commit.opened ?? []).filter((o) => !seen.has(o.sid) && seen.add(o.sid));
  const journal = journalArrays(commit);
  return [
    fn,
    lease.partition,
    lease.token,
    serial,
    ids,
    Math.trunc(idle),
    outputs.map((o) => text('A session id', o.sid)),
    outputs.map((o) => o.seq),
    outputs.map((o) => text('A key', o.key)),
    outputs.map((o) => (o.error !== undefined ? 'e' : 'v')),
    outputs.map((o) => bytes(o.error ?? o.payload ?? '')),
    outputs.map((o) => o.traceparent ?? null),
    outputs.map((o) => {
      const place = places.get(o.sid);
      return place !== undefined && place.startsWith(`${o.seq} `) ? place : null;
    }),
    checkpoints.map((c) => text('A session id', c.sid)),
    checkpoints.map((c) => bytes(snapshotValue(c))),
    commit.acks.map((id) => idKey(idParts(id))),
    kept.map((k) => text('A key', k.key)),
    kept.map((k) => bytes(keptValue(k))),
    str(kept.length === 0 ? 1n : millis('A retention', commit.retention ?? 1, 1)),
    [...new Set(commit.ended)].map((sid) => text('A session id', sid)),
    opened.map((o) => text('A session id', o.sid)),
    opened.map((o) => o.version),
    opened.map(openingValue),
    journal.sids,
    journal.ats,
    journal.values,
    journal.goneSids,
    journal.goneAts,
  ];
}

/** The casts of `commit_9`'s 28 arguments, in order (its argument types; the first six need none). */
const CASTS = (
  ',,,,,,text[],bigint[],text[],"char"[],bytea[],text[],text[],text[],bytea[],numeric[],text[],bytea[],bigint,' +
  'text[],text[],text[],text[],text[],text[],bytea[],text[],text[]'
)
  .split(',')
  .map((type) => (type === '' ? '' : `::${type}`));

/** A call of `commit_9` whose arguments start at `$first`. */
function commitCall(S: string, first: number): string {
  return `${S}.commit_9(${CASTS.map((cast, i) => `$${first + i}${cast}`).join(', ')})`;
}

function resultOf(row: Record<string, unknown> | undefined): OneResult | null {
  if (row?.r_ok !== true) return null;
  return {
    wrote: row.r_wrote === true,
    ids: (row.r_ids as (string | null)[]).map((id) => (id === null ? null : str(id))),
  };
}

/**
 * Applies `commit` (one `inOne` accepts) with `commit_9`, in one statement: on a pool its own transaction, on a
 * client the transaction it runs (`idle` > 0: its idle_in_transaction_session_timeout from the locks on, ms). `ids`:
 * whether to return the outputs' ids. Null when the fence refused it (the caller throws its FencedError).
 */
export async function commitInOne(
  db: PgPoolLike | PgClientLike,
  S: string,
  fn: string,
  lease: Lease,
  commit: Commit,
  ids: boolean,
  idle = 0,
): Promise<OneResult | null> {
  const { rows } = await run(db, `SELECT * FROM ${commitCall(S, 1)}`, commitArgs(fn, lease, commit, ids, idle));
  return resultOf(rows[0]);
}

/** One partition's commit among those `commitManyInOne` applies together. */
export interface OneAsk {
  readonly lease: Lease;
  readonly commit: Commit;
  readonly ids: boolean;
}

/**
 * Applies commits of distinct partitions (each one `inOne` accepts), in the order given, with one `commit_9` call
 * each in one statement: on a pool its own transaction, on a client the transaction it runs. Each call takes its
 * partition's locks as `commitInOne` does; callers give the partitions in ascending order, so that two such
 * statements never wait for each other's locks in a cycle. Each commit's result, in order (null: fenced).
 */
export async function commitManyInOne(
  db: PgPoolLike | PgClientLike,
  S: string,
  fn: string,
  asks: readonly OneAsk[],
  idle = 0,
): Promise<(OneResult | null)[]> {
  const values: unknown[] = [];
  const calls: string[] = [];
  asks.forEach((ask, i) => {
    calls.push(`SELECT ${i} AS r_i, * FROM ${commitCall(S, values.length + 1)}`);
    values.push(...commitArgs(fn, ask.lease, ask.commit, ask.ids, idle));
  });
  const { rows } = await run(db, calls.join(' UNION ALL '), values);
  const found = new Map(rows.map((row) => [Number(row.r_i), row]));
  return asks.map((_, i) => resultOf(found.get(i)));
}
