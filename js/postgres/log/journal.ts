// A commit's journal part on Postgres (schema version 7's `journal` table): what commit.lua does with the partition's
// journal hash. One row per journal entry (a session's records of one commit, `at` its first record's place, the
// value as stored.ts's journalValue makes it). The one-statement commit (commit_9, commit-one.ts) takes the same
// arrays; the fenced transaction of commit.ts (a replay-checked commit, one replacing an opening) runs this
// statement, after its checkpoints: entries are written, then the fields it forgets removed.
import { journalValue } from '../../durable/common/stored';
import type { Commit } from '../../durable/common/transport';
import { type PgClientLike, bytes, run, text } from './sql';

/** A commit's journal as the statements take it: the entries' sids, places and values, then those forgotten. */
export interface JournalArrays {
  readonly sids: string[];
  readonly ats: string[];
  readonly values: Buffer[];
  readonly goneSids: string[];
  readonly goneAts: string[];
}

/** `commit`'s journal entries and forgotten fields (`<sid> <at>`, split at the last space: `at` has none) as arrays. */
export function journalArrays(commit: Pick<Commit, 'journal' | 'unjournal'>): JournalArrays {
  const entries = commit.journal ?? [];
  const arrays: JournalArrays = { sids: [], ats: [], values: [], goneSids: [], goneAts: [] };
  for (const e of entries) {
    arrays.sids.push(text('A session id', e.sid));
    arrays.ats.push(text('A journal place', e.records[0].at));
    arrays.values.push(bytes(journalValue(e)));
  }
  for (const field of commit.unjournal ?? []) {
    const space = field.lastIndexOf(' ');
    if (space <= 0) continue; // (No entry has such a field.)
    arrays.goneSids.push(field.slice(0, space));
    arrays.goneAts.push(field.slice(space + 1));
  }
  return arrays;
}

/**
 * Writes `commit`'s journal entries and removes the fields it forgets, in one statement. An entry already there is
 * kept (a commit's entries are written once: a retry by serial returns before this). Both parts see the rows as
 * they were before the statement, so an entry written and forgotten in one commit is not inserted rather than
 * deleted after.
 */
export async function journalStatements(
  client: PgClientLike,
  S: string,
  fn: string,
  p: number,
  commit: Pick<Commit, 'journal' | 'unjournal'>,
): Promise<void> {
  if ((commit.journal?.length ?? 0) === 0 && (commit.unjournal?.length ?? 0) === 0) return;
  const a = journalArrays(commit);
  await run(
    client,
    `WITH gone AS (
       DELETE FROM ${S}.journal j WHERE j.fn = $1 AND j.p = $2 AND (j.sid, j.at) IN (SELECT * FROM unnest($3::text[], $4::text[])))
     INSERT INTO ${S}.journal (fn, p, sid, at, value)
     SELECT $1, $2, u.sid, u.at, u.value FROM unnest($5::text[], $6::text[], $7::bytea[]) AS u(sid, at, value)
      WHERE (u.sid, u.at) NOT IN (SELECT * FROM unnest($3::text[], $4::text[]))
     ON CONFLICT DO NOTHING`,
    [fn, p, a.goneSids, a.goneAts, a.sids, a.ats, a.values],
  );
}
