// A commit in one statement (schema version 4's function `commit_4`): what commit.ts does in its fenced transaction
// of four round trips, for the commits that only write outputs, checkpoints and acks (no session ended, no opening
// to keep, no effects, no replay check): the most frequent ones, and every commit of a takeover's replay while its
// sessions live. The function takes the same locks in the same order as the transaction (the lease row FOR KEY
// SHARE, refused unless it holds the token unexpired; the group row FOR UPDATE), then, in statements of its own that
// see every commit before it, the marks, and writes: outputs above their session's mark (ids after the group row's
// last, in order), marks (with their places), checkpoints, acks, the group row (with a serial: this commit, for its
// retry, which returns the ids the first call wrote and writes nothing).
import { lastPlaces, snapshotValue } from '../../redis/common/stored';
import type { Commit, CommitResult, Lease } from '../../redis/common/transport';
import { NOW, type PgPoolLike, bytes, idKey, idParts, run, str, text } from './sql';

/** The function's text (`S`: the quoted schema). */
export function COMMIT_4(S: string): string {
  return `CREATE FUNCTION ${S}.commit_4(a_fn text, a_p integer, a_token text, a_serial text, a_with_ids boolean,
       o_sid text[], o_seq bigint[], o_key text[], o_field "char"[], o_data bytea[], o_tp text[], o_place text[],
       c_sid text[], c_value bytea[], a_acks numeric[])
     RETURNS TABLE (r_ok boolean, r_ids text[])
     LANGUAGE plpgsql AS $f$
     DECLARE
       g record; found_g boolean; now_ms bigint; marks jsonb; raised jsonb := '{}'; ids text[] := '{}';
       w_ms bigint[] := '{}'; w_seq bigint[] := '{}'; w_i integer[] := '{}'; cur_ms bigint; cur_seq bigint;
       mark bigint;
     BEGIN
       SELECT l.token AS t, l.until_ms AS u, x.out_ms, x.out_seq, x.lc_token, x.lc_serial, x.lc_first_ms, x.lc_first_seq,
              x.lc_count INTO g
         FROM ${S}.leases l JOIN ${S}.groups x ON x.fn = l.fn AND x.p = l.p
        WHERE l.fn = a_fn AND l.p = a_p FOR KEY SHARE OF l FOR UPDATE OF x;
       found_g := FOUND;
       now_ms := ${NOW};
       IF NOT found_g OR g.t IS DISTINCT FROM a_token OR g.u < now_ms THEN
         RETURN QUERY SELECT false, NULL::text[];
         RETURN;
       END IF;
       IF a_serial <> '' AND g.lc_token = a_token AND g.lc_serial = a_serial THEN
         -- The retry of a commit that was applied: the ids it wrote, found among the outputs it wrote (contiguous).
         IF NOT a_with_ids THEN
           RETURN QUERY SELECT true, '{}'::text[];
           RETURN;
         END IF;
         RETURN QUERY SELECT true, coalesce(array_agg(w.id ORDER BY u.i), '{}'::text[])
           FROM unnest(o_sid, o_seq) WITH ORDINALITY AS u(sid, seq, i)
           LEFT JOIN (SELECT o.sid, o.oseq, o.ms || '-' || o.seq AS id FROM ${S}.outputs o
                       WHERE g.lc_count > 0 AND o.fn = a_fn AND o.p = a_p AND (o.ms, o.seq) >= (g.lc_first_ms, g.lc_first_seq)
                       ORDER BY o.ms, o.seq LIMIT greatest(g.lc_count, 0)) w ON w.sid = u.sid AND w.oseq = u.seq;
         RETURN;
       END IF;
       SELECT coalesce(jsonb_object_agg(m.sid, m.seq), '{}') INTO marks FROM ${S}.marks m
        WHERE m.fn = a_fn AND m.p = a_p AND m.sid = ANY (o_sid);
       cur_ms := g.out_ms;
       cur_seq := g.out_seq;
       FOR i IN 1 .. coalesce(cardinality(o_sid), 0) LOOP
         mark := coalesce((marks ->> o_sid[i])::bigint, 0);
         IF o_seq[i] > mark THEN
           IF now_ms > cur_ms THEN
             cur_ms := now_ms;
             cur_seq := 0;
           ELSE
             cur_seq := cur_seq + 1;
           END IF;
           w_ms := w_ms || cur_ms;
           w_seq := w_seq || cur_seq;
           w_i := w_i || i;
           ids := ids || (cur_ms || '-' || cur_seq);
           marks := marks || jsonb_build_object(o_sid[i], o_seq[i]);
           raised := raised || jsonb_build_object(o_sid[i], jsonb_build_array(o_seq[i], o_place[i]));
         ELSE
           ids := ids || NULL::text;
         END IF;
       END LOOP;
       IF cardinality(w_i) > 0 THEN
         INSERT INTO ${S}.outputs (fn, p, ms, seq, sid, oseq, key, field, data, tp)
         SELECT a_fn, a_p, w.ms, w.seq, o_sid[w.i], o_seq[w.i], o_key[w.i], o_field[w.i], o_data[w.i], o_tp[w.i]
           FROM unnest(w_ms, w_seq, w_i) AS w(ms, seq, i);
         INSERT INTO ${S}.marks (fn, p, sid, seq, place)
         SELECT a_fn, a_p, r.key, (r.value ->> 0)::bigint, r.value ->> 1 FROM jsonb_each(raised) AS r
             ON CONFLICT (fn, p, sid) DO UPDATE SET seq = EXCLUDED.seq, place = EXCLUDED.place;
       END IF;
       IF coalesce(cardinality(c_sid), 0) > 0 THEN
         INSERT INTO ${S}.checkpoints (fn, p, sid, value) SELECT a_fn, a_p, u.sid, u.value FROM unnest(c_sid, c_value) AS u(sid, value)
             ON CONFLICT (fn, p, sid) DO UPDATE SET value = EXCLUDED.value;
       END IF;
       IF coalesce(cardinality(a_acks), 0) > 0 THEN
         DELETE FROM ${S}.pending WHERE fn = a_fn AND p = a_p AND k = ANY (a_acks);
       END IF;
       IF a_serial <> '' THEN
         UPDATE ${S}.groups SET out_ms = cur_ms, out_seq = cur_seq, lc_token = a_token, lc_serial = a_serial,
                lc_first_ms = w_ms[1], lc_first_seq = w_seq[1], lc_count = cardinality(w_i)
          WHERE fn = a_fn AND p = a_p;
       ELSIF cardinality(w_i) > 0 THEN
         UPDATE ${S}.groups SET out_ms = cur_ms, out_seq = cur_seq WHERE fn = a_fn AND p = a_p;
       END IF;
       RETURN QUERY SELECT true, CASE WHEN a_with_ids THEN ids ELSE '{}'::text[] END;
     END $f$`;
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
