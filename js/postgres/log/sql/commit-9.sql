-- Schema version 9's function `commit_9` (log/commit-one.ts calls it): commit_8 (sql/commit-8.sql, kept for the
-- workers of version 8) with the commit's journal: its entries written (`j_*`: one per session that journaled, its
-- records of the commit as one value) and the fields it forgets removed (`u_*`: `<sid> <at>` split), after the
-- checkpoints, as commit.ts's transaction does it (journal.ts). Read as every file of sql/ is (log/sql-file.ts: `:S`
-- the schema, `:NOW` the server's clock in ms). Applied once by migration 9, and never edited.
CREATE FUNCTION :S.commit_9(a_fn text, a_p integer, a_token text, a_serial text, a_with_ids boolean,
       a_idle integer, o_sid text[], o_seq bigint[], o_key text[], o_field "char"[], o_data bytea[], o_tp text[],
       o_place text[], c_sid text[], c_value bytea[], a_acks numeric[], k_key text[], k_value bytea[],
       a_retention bigint, e_sid text[], n_sid text[], n_version text[], n_value text[], j_sid text[], j_at text[],
       j_value bytea[], u_sid text[], u_at text[])
     RETURNS TABLE (r_ok boolean, r_wrote boolean, r_ids text[])
     LANGUAGE plpgsql AS $f$
     DECLARE
       g record; found_g boolean; now_ms bigint; w_i integer[]; n integer; base_ms bigint; first_seq bigint;
     BEGIN
       SELECT l.token AS t, l.until_ms AS u, x.out_ms, x.out_seq, x.lc_token, x.lc_serial, x.lc_first_ms, x.lc_first_seq,
              x.lc_count INTO g
         FROM :S.leases l JOIN :S.groups x ON x.fn = l.fn AND x.p = l.p
        WHERE l.fn = a_fn AND l.p = a_p FOR KEY SHARE OF l FOR UPDATE OF x;
       found_g := FOUND;
       now_ms := :NOW;
       IF NOT found_g OR g.t IS DISTINCT FROM a_token OR g.u < now_ms THEN
         RETURN QUERY SELECT false, false, NULL::text[];
         RETURN;
       END IF;
       IF a_idle > 0 THEN
         PERFORM set_config('idle_in_transaction_session_timeout', a_idle::text, true);
       END IF;
       IF a_serial <> '' AND g.lc_token = a_token AND g.lc_serial = a_serial THEN
         IF NOT a_with_ids THEN
           RETURN QUERY SELECT true, false, '{}'::text[];
           RETURN;
         END IF;
         RETURN QUERY SELECT true, false, coalesce(array_agg(w.id ORDER BY u.i), '{}'::text[])
           FROM unnest(o_sid, o_seq) WITH ORDINALITY AS u(sid, seq, i)
           LEFT JOIN (SELECT o.sid, o.oseq, o.ms || '-' || o.seq AS id FROM :S.outputs o
                       WHERE g.lc_count > 0 AND o.fn = a_fn AND o.p = a_p AND (o.ms, o.seq) >= (g.lc_first_ms, g.lc_first_seq)
                       ORDER BY o.ms, o.seq LIMIT greatest(g.lc_count, 0)) w ON w.sid = u.sid AND w.oseq = u.seq;
         RETURN;
       END IF;
       SELECT coalesce(array_agg(w.i::integer ORDER BY w.i) FILTER (WHERE w.ok), '{}') INTO w_i
         FROM (SELECT u.i, u.seq > greatest(coalesce(m.seq, 0), coalesce(max(u.seq) OVER (PARTITION BY u.sid ORDER BY u.i
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)) AS ok
                 FROM unnest(o_sid, o_seq) WITH ORDINALITY AS u(sid, seq, i)
                 LEFT JOIN :S.marks m ON m.fn = a_fn AND m.p = a_p AND m.sid = u.sid) w;
       n := cardinality(w_i);
       IF now_ms > g.out_ms THEN
         base_ms := now_ms;
         first_seq := 0;
       ELSE
         base_ms := g.out_ms;
         first_seq := g.out_seq + 1;
       END IF;
       IF n > 0 THEN
         INSERT INTO :S.outputs (fn, p, ms, seq, sid, oseq, key, field, data, tp)
         SELECT a_fn, a_p, base_ms, first_seq + w.k - 1, u.sid, u.seq, u.key, u.field, u.data, u.tp
           FROM unnest(o_sid, o_seq, o_key, o_field, o_data, o_tp) WITH ORDINALITY AS u(sid, seq, key, field, data, tp, i)
           JOIN unnest(w_i) WITH ORDINALITY AS w(i, k) ON w.i = u.i;
         INSERT INTO :S.marks (fn, p, sid, seq, place)
         SELECT DISTINCT ON (u.sid) a_fn, a_p, u.sid, u.seq, u.place
           FROM unnest(o_sid, o_seq, o_place) WITH ORDINALITY AS u(sid, seq, place, i) JOIN unnest(w_i) AS w(i) ON w.i = u.i
          ORDER BY u.sid, u.i DESC
             ON CONFLICT (fn, p, sid) DO UPDATE SET seq = EXCLUDED.seq, place = EXCLUDED.place;
       END IF;
       IF coalesce(cardinality(c_sid), 0) > 0 THEN
         INSERT INTO :S.checkpoints (fn, p, sid, value) SELECT a_fn, a_p, u.sid, u.value FROM unnest(c_sid, c_value) AS u(sid, value)
             ON CONFLICT (fn, p, sid) DO UPDATE SET value = EXCLUDED.value;
       END IF;
       IF coalesce(cardinality(u_sid), 0) > 0 THEN
         -- The journal entries it forgets (a checkpoint's, an ended session's), then those it writes but forgets not
         -- (one written and forgotten in one commit is not kept); one there already stays (ON CONFLICT).
         DELETE FROM :S.journal j WHERE j.fn = a_fn AND j.p = a_p AND (j.sid, j.at) IN (SELECT * FROM unnest(u_sid, u_at));
       END IF;
       IF coalesce(cardinality(j_sid), 0) > 0 THEN
         INSERT INTO :S.journal (fn, p, sid, at, value)
         SELECT a_fn, a_p, u.sid, u.at, u.value FROM unnest(j_sid, j_at, j_value) AS u(sid, at, value)
          WHERE coalesce(cardinality(u_sid), 0) = 0 OR (u.sid, u.at) NOT IN (SELECT * FROM unnest(u_sid, u_at))
             ON CONFLICT DO NOTHING;
       END IF;
       IF coalesce(cardinality(a_acks), 0) > 0 THEN
         DELETE FROM :S.pending WHERE fn = a_fn AND p = a_p AND k = ANY (a_acks);
       END IF;
       IF coalesce(cardinality(k_key), 0) > 0 THEN
         INSERT INTO :S.kept (fn, p, key, value, until_ms)
         SELECT a_fn, a_p, u.key, u.value, now_ms + a_retention FROM unnest(k_key, k_value) AS u(key, value)
             ON CONFLICT (fn, p, key) DO UPDATE SET value = EXCLUDED.value, until_ms = EXCLUDED.until_ms;
       END IF;
       IF a_serial <> '' THEN
         UPDATE :S.groups SET out_ms = CASE WHEN n > 0 THEN base_ms ELSE out_ms END,
                out_seq = CASE WHEN n > 0 THEN first_seq + n - 1 ELSE out_seq END, lc_token = a_token,
                lc_serial = a_serial, lc_first_ms = CASE WHEN n > 0 THEN base_ms END,
                lc_first_seq = CASE WHEN n > 0 THEN first_seq END, lc_count = n
          WHERE fn = a_fn AND p = a_p;
       ELSIF n > 0 THEN
         UPDATE :S.groups SET out_ms = base_ms, out_seq = first_seq + n - 1 WHERE fn = a_fn AND p = a_p;
       END IF;
       IF coalesce(cardinality(e_sid), 0) > 0 THEN
         -- The ended sessions: their digests, openings (and version counts), marks, checkpoints and timers go.
         DELETE FROM :S.checks WHERE fn = a_fn AND p = a_p AND sid = ANY (e_sid);
         WITH d AS (DELETE FROM :S.openings WHERE fn = a_fn AND p = a_p AND sid = ANY (e_sid) RETURNING version),
              c AS (SELECT d.version, count(*) AS c FROM d GROUP BY d.version)
         UPDATE :S.versions v SET count = v.count - c.c FROM c WHERE v.fn = a_fn AND v.p = a_p AND v.version = c.version;
         DELETE FROM :S.versions WHERE fn = a_fn AND p = a_p AND count <= 0;
         DELETE FROM :S.marks WHERE fn = a_fn AND p = a_p AND sid = ANY (e_sid);
         DELETE FROM :S.checkpoints WHERE fn = a_fn AND p = a_p AND sid = ANY (e_sid);
         DELETE FROM :S.timers WHERE fn = a_fn AND p = a_p AND sid = ANY (e_sid);
       END IF;
       IF coalesce(cardinality(n_sid), 0) > 0 THEN
         -- The new sessions' openings, once each (a sid kept before is not counted again), counted per version in the
         -- order of their first appearance.
         WITH ins AS (INSERT INTO :S.openings (fn, p, sid, version, value)
                      SELECT a_fn, a_p, u.sid, u.version, u.value FROM unnest(n_sid, n_version, n_value) AS u(sid, version, value)
                          ON CONFLICT DO NOTHING RETURNING version, sid)
         INSERT INTO :S.versions (fn, p, version, count)
         SELECT a_fn, a_p, ins.version, count(*) FROM ins JOIN unnest(n_sid) WITH ORDINALITY AS o(sid, i) ON o.sid = ins.sid
          GROUP BY ins.version ORDER BY min(o.i)
             ON CONFLICT (fn, p, version) DO UPDATE SET count = :S.versions.count + EXCLUDED.count;
       END IF;
       IF NOT a_with_ids THEN
         RETURN QUERY SELECT true, true, '{}'::text[];
         RETURN;
       END IF;
       RETURN QUERY SELECT true, true, coalesce(array_agg(CASE WHEN w.k IS NOT NULL THEN base_ms || '-' || (first_seq + w.k - 1) END
                                                ORDER BY u.i), '{}'::text[])
         FROM unnest(o_sid) WITH ORDINALITY AS u(sid, i) LEFT JOIN unnest(w_i) WITH ORDINALITY AS w(i, k) ON w.i = u.i;
     END $f$;
