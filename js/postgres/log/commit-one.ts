// A commit in one statement (schema version 4's function `commit_4`): what commit.ts does in its fenced transaction
// of four round trips, for the commits that only write outputs, checkpoints and acks (no session ended, no opening
// to keep, no effects, no replay check): the most frequent ones, and every commit of a takeover's replay while its
// sessions live. The function takes the same locks in the same order as the transaction (the lease row FOR KEY
// SHARE, refused unless it holds the token unexpired; the group row FOR UPDATE), then, in statements of its own that
// see every commit before it, the marks, and writes: outputs above their session's mark (ids after the group row's
// last, in order), marks (with their places), checkpoints, acks, the group row (with a serial: this commit, for its
// retry, which returns the ids the first call wrote and writes nothing).
import { lastPlaces, snapshotValue } from '../../durable/common/stored';
import type { Commit, CommitResult, Lease } from '../../durable/common/transport';
import { type PgPoolLike, bytes, idKey, idParts, run, str, text } from './sql';
import { sqlFile } from './sql-file';

const COMMIT_4_SQL = sqlFile('commit-4.sql');

/** The function's text (`S`: the quoted schema): sql/commit-4.sql. */
export function COMMIT_4(S: string): string {
  return COMMIT_4_SQL(S)[0];
}

/** Whether `commit_4` can apply `commit` (else the fenced transaction of commit.ts does). */
export function inOne(commit: Commit): boolean {
  return (
    commit.ended.length === 0 && commit.check !== true && (commit.opened?.length ?? 0) === 0 && (commit.kept?.length ?? 0) === 0
  );
}

/** The last of each key's items (a batch upsert may touch a row once). */
function lastBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  return [...new Map(items.map((item) => [key(item), item])).values()];
}

/**
 * Applies `commit` (one `inOne` accepts) with `commit_4`, in one statement (its own transaction); null when the
 * fence refused it (the caller throws its FencedError).
 */
export async function commitInOne(
  pool: PgPoolLike,
  S: string,
  fn: string,
  lease: Lease,
  commit: Commit,
): Promise<CommitResult | null> {
  const serial = commit.serial === undefined ? '' : str(commit.serial);
  const withIds = serial !== '' && commit.ids !== false;
  const places = lastPlaces(commit.outputs);
  const outputs = commit.outputs;
  const checkpoints = lastBy(commit.checkpoints ?? [], (c) => c.sid);
  const { rows } = await run(
    pool,
    `SELECT * FROM ${S}.commit_4($1, $2, $3, $4, $5, $6::text[], $7::bigint[], $8::text[], $9::"char"[], $10::bytea[],
       $11::text[], $12::text[], $13::text[], $14::bytea[], $15::numeric[])`,
    [
      fn,
      lease.partition,
      lease.token,
      serial,
      withIds,
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
    ],
  );
  if (rows[0]?.r_ok !== true) return null;
  const ids = (rows[0].r_ids as (string | null)[]).map((id) => (id === null ? null : str(id)));
  return { ids: withIds ? ids : [], diverged: [] };
}
