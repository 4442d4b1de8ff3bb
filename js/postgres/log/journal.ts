// A commit's journal part on Postgres (schema version 7's `journal` table): what commit.lua does with the partition's
// journal hash. Kept apart from the commit's other statements so that whichever commit runs it calls it, in the
// commit's fenced transaction, after its checkpoints: its records are written, then the fields it forgets removed.
import { journalValue } from '../../durable/common/stored';
import type { Commit } from '../../durable/common/transport';
import { type PgClientLike, bytes, run, text } from './sql';

/** Whether a commit journals anything (records to write or to forget): one the one-statement commit cannot apply. */
export function journals(commit: Commit): boolean {
  return (commit.journal?.length ?? 0) > 0 || (commit.unjournal?.length ?? 0) > 0;
}

/**
 * Writes `commit`'s journal records and removes the fields it forgets (`<sid> <at>`, split at the last space: `at`
 * has none), in one statement. A record already there is kept (a commit's records are written once: a retry by
 * serial returns before this). Both parts see the rows as they were before the statement, so a record written and
 * forgotten in one commit is not inserted rather than deleted after.
 */
export async function journalStatements(
  client: PgClientLike,
  S: string,
  fn: string,
  p: number,
  commit: Pick<Commit, 'journal' | 'unjournal'>,
): Promise<void> {
  const records = commit.journal ?? [];
  const forgotten = commit.unjournal ?? [];
  if (records.length === 0 && forgotten.length === 0) return;
  const fSids: string[] = [];
  const fAts: string[] = [];
  for (const field of forgotten) {
    const space = field.lastIndexOf(' ');
    if (space <= 0) continue; // (No record has such a field.)
    fSids.push(field.slice(0, space));
    fAts.push(field.slice(space + 1));
  }
  await run(
    client,
    `WITH gone AS (
       DELETE FROM ${S}.journal j WHERE j.fn = $1 AND j.p = $2 AND (j.sid, j.at) IN (SELECT * FROM unnest($3::text[], $4::text[])))
     INSERT INTO ${S}.journal (fn, p, sid, at, value)
     SELECT $1, $2, u.sid, u.at, u.value FROM unnest($5::text[], $6::text[], $7::bytea[]) AS u(sid, at, value)
      WHERE (u.sid, u.at) NOT IN (SELECT * FROM unnest($3::text[], $4::text[]))
     ON CONFLICT DO NOTHING`,
    [
      fn,
      p,
      fSids,
      fAts,
      records.map((r) => text('A session id', r.sid)),
      records.map((r) => text('A journal place', r.at)),
      records.map((r) => bytes(journalValue(r))),
    ],
  );
}
