-- The Postgres limiter's tables and functions (schema version 5: log/schema.ts applies them). Every decision is one
-- call of one plpgsql function, on the server's clock (NOW, as the log's), under the limiter's row lock
-- (`lim_limiters`, FOR UPDATE): the decisions of one limiter are serial, as a Redis limiter's scripts are; other
-- limiters' go on. The rules are the Redis scripts' (js/redis/log/lua/limiter-*.lua), row for key:
--
--   lim_limiters  one row per limiter name: the limits setLimits stored (`set`; else each caller's own), and the
--                 fleet's counters (admitted, rejected). Locked first by every decision.
--   lim_held      a permit held: (name, key, token) -> lease expiry. Every permit, a rate-only one too (held from its
--                 grant to its release or its lease's end whatever the limits: a concurrency set later counts it).
--   lim_rate      GCRA state of a key: its theoretical arrival time exactly, `w` ms and `r` units of 1/rl ms (rl: the
--                 rate limit it was written under; read under another limit, rounded up: never a burst). Deleted
--                 once past.
--   lim_line      the line of a key: ticket (a sequence: never reused) -> cost, the token its permit gets, expiry
--                 (a waiter that stops renewing leaves), state 'w' waiting, 'g' granted (until its waiter claims it;
--                 the permit is in lim_held already), 'x' refused (its cost is above the burst since setLimits).
--   lim_undone    tokens whose acquire its process gave up on (no answer in time): that acquire, if it runs later,
--                 is refused; expires after a lease.
--   lim_procs     processes that renewed within a lease (the divisor of the 'local' fallback).
--
-- A grant or refusal of a waiting ticket is hinted with NOTIFY on the limiter's channel (payload: the ticket, or
-- "<ticket> <ms>" for a head that must wait for the rate); waiters also poll, so a hint lost (no LISTEN, a pooler
-- in transaction mode) only delays them.
--
-- Read when log/sql-file.ts loads (as the Redis scripts are): `:S` stands for the schema (quoted), `:NOW` for the
-- server's clock in ms (sql.ts's NOW, the log's); a statement ends with `;` at the end of a line outside a $f$ body,
-- and `--` lines between statements are not sent. Applied once, in order, by migration 5, and never edited: a later
-- change is a new migration, with functions of a new version.

CREATE TABLE :S.lim_limiters (name text PRIMARY KEY, set boolean NOT NULL DEFAULT false, c bigint, l bigint,
       per bigint, b bigint, admitted bigint NOT NULL DEFAULT 0, rejected bigint NOT NULL DEFAULT 0);

CREATE TABLE :S.lim_held (name text NOT NULL, key text NOT NULL, token text NOT NULL, until_ms bigint NOT NULL,
       PRIMARY KEY (name, key, token));

CREATE TABLE :S.lim_rate (name text NOT NULL, key text NOT NULL, w bigint NOT NULL, r bigint NOT NULL,
       rl bigint NOT NULL, PRIMARY KEY (name, key));

CREATE TABLE :S.lim_line (name text NOT NULL, key text NOT NULL, ticket bigint NOT NULL, cost bigint NOT NULL,
       token text NOT NULL, until_ms bigint NOT NULL, state "char" NOT NULL DEFAULT 'w', granted_at bigint,
       PRIMARY KEY (name, key, ticket));

CREATE TABLE :S.lim_undone (name text NOT NULL, token text NOT NULL, until_ms bigint NOT NULL,
       PRIMARY KEY (name, token));

CREATE TABLE :S.lim_procs (name text NOT NULL, pid text NOT NULL, until_ms bigint NOT NULL, PRIMARY KEY (name, pid));

CREATE SEQUENCE :S.lim_tickets;

-- The limiter's row, locked (made at its first use), and the limits in force: stored ones, else the caller's.
CREATE FUNCTION :S.lim_lock_5(a_name text, a_c bigint, a_l bigint, a_p bigint, a_b bigint,
       OUT c bigint, OUT l bigint, OUT per bigint, OUT b bigint)
     LANGUAGE plpgsql AS $f$
     DECLARE r record;
     BEGIN
       SELECT * INTO r FROM :S.lim_limiters WHERE name = a_name FOR UPDATE;
       IF NOT FOUND THEN
         INSERT INTO :S.lim_limiters (name) VALUES (a_name) ON CONFLICT DO NOTHING;
         SELECT * INTO r FROM :S.lim_limiters WHERE name = a_name FOR UPDATE;
       END IF;
       IF r.set THEN c := r.c; l := r.l; per := r.per; b := r.b;
       ELSE c := a_c; l := a_l; per := a_p; b := a_b; END IF;
     END $f$;

-- Permits whose lease ran out, and tickets no one renewed, are gone from now on (never before their expiry).
CREATE FUNCTION :S.lim_clean_5(a_name text, a_key text, now_ms bigint) RETURNS void
     LANGUAGE plpgsql AS $f$
     BEGIN
       DELETE FROM :S.lim_held WHERE name = a_name AND key = a_key AND until_ms <= now_ms;
       DELETE FROM :S.lim_line WHERE name = a_name AND key = a_key AND until_ms <= now_ms;
     END $f$;

-- GCRA, exactly (numeric): wait 0 and the new state (nw ms, nr units of 1/l ms) if a_cost units conform now,
-- else the ms to wait until they do. Conforms when new - now <= b * per / l.
CREATE FUNCTION :S.lim_rate_5(a_name text, a_key text, a_cost bigint, now_ms bigint, l bigint, per bigint,
       b bigint, OUT wait bigint, OUT nw bigint, OUT nr bigint)
     LANGUAGE plpgsql AS $f$
     DECLARE s record; tat numeric; nxt numeric; over numeric;
     BEGIN
       wait := 0;
       IF l IS NULL THEN RETURN; END IF;
       SELECT w, r, rl INTO s FROM :S.lim_rate WHERE name = a_name AND key = a_key;
       IF FOUND THEN tat := s.w::numeric * l + ceil(s.r::numeric * l / s.rl); ELSE tat := 0; END IF;
       tat := greatest(tat, now_ms::numeric * l);
       nxt := tat + a_cost::numeric * per;
       over := nxt - now_ms::numeric * l - b::numeric * per;
       IF over > 0 THEN wait := ceil(over / l)::bigint; RETURN; END IF;
       nw := div(nxt, l)::bigint;
       nr := mod(nxt, l)::bigint;
     END $f$;

-- Whether a permit fits key a_key's concurrency now.
CREATE FUNCTION :S.lim_room_5(a_name text, a_key text, c bigint) RETURNS boolean
     LANGUAGE sql AS $f$
       SELECT c IS NULL OR (SELECT count(*) FROM :S.lim_held WHERE name = a_name AND key = a_key) < c
     $f$;

-- A new permit under a_token, held until now + ttl whatever the limits; the rate state moved.
CREATE FUNCTION :S.lim_grant_5(a_name text, a_key text, nw bigint, nr bigint, l bigint, a_ttl bigint,
       a_token text, now_ms bigint) RETURNS void
     LANGUAGE plpgsql AS $f$
     BEGIN
       INSERT INTO :S.lim_held (name, key, token, until_ms) VALUES (a_name, a_key, a_token, now_ms + a_ttl)
         ON CONFLICT (name, key, token) DO UPDATE SET until_ms = EXCLUDED.until_ms;
       IF nw IS NOT NULL THEN
         INSERT INTO :S.lim_rate (name, key, w, r, rl) VALUES (a_name, a_key, nw, nr, l)
           ON CONFLICT (name, key) DO UPDATE SET w = EXCLUDED.w, r = EXCLUDED.r, rl = EXCLUDED.rl;
       END IF;
       UPDATE :S.lim_limiters SET admitted = admitted + 1 WHERE name = a_name;
     END $f$;

-- Serves key a_key's line from its head while permits fit: a granted ticket gets its permit (state 'g') and a
-- hint. A head that must wait for the rate is told when to ask again. Returns the head's wait (0: none).
CREATE FUNCTION :S.lim_serve_5(a_name text, a_key text, a_ttl bigint, now_ms bigint, c bigint, l bigint,
       per bigint, b bigint, a_channel text) RETURNS bigint
     LANGUAGE plpgsql AS $f$
     DECLARE h record; rw record;
     BEGIN
       LOOP
         SELECT ticket, cost, token INTO h FROM :S.lim_line WHERE name = a_name AND key = a_key AND state = 'w'
          ORDER BY ticket LIMIT 1;
         IF NOT FOUND OR NOT :S.lim_room_5(a_name, a_key, c) THEN RETURN 0; END IF;
         IF EXISTS (SELECT 1 FROM :S.lim_undone WHERE name = a_name AND token = h.token AND until_ms > now_ms) THEN
           DELETE FROM :S.lim_line WHERE name = a_name AND key = a_key AND ticket = h.ticket;
         ELSIF l IS NOT NULL AND h.cost > b THEN
           UPDATE :S.lim_line SET state = 'x' WHERE name = a_name AND key = a_key AND ticket = h.ticket;
           PERFORM pg_notify(a_channel, h.ticket::text);
         ELSE
           SELECT * INTO rw FROM :S.lim_rate_5(a_name, a_key, h.cost, now_ms, l, per, b);
           IF rw.wait > 0 THEN
             PERFORM pg_notify(a_channel, h.ticket::text || ' ' || rw.wait::text);
             RETURN rw.wait;
           END IF;
           PERFORM :S.lim_grant_5(a_name, a_key, rw.nw, rw.nr, l, a_ttl, h.token, now_ms);
           UPDATE :S.lim_line SET state = 'g', granted_at = now_ms, until_ms = now_ms + a_ttl
            WHERE name = a_name AND key = a_key AND ticket = h.ticket;
           PERFORM pg_notify(a_channel, h.ticket::text);
         END IF;
       END LOOP;
     END $f$;

-- An acquire (a_ticket NULL) or a waiting ticket's claim. Replies (o_kind, o_a, o_n): ('g', token, time granted);
-- ('w', ticket, retry ms or 0) in line; ('r', NULL, retry ms) refused (reject mode); ('f') line full; ('l') the
-- ticket had left the line (expired); ('x') the cost can never conform; ('c') its caller gave up on it (undone).
CREATE FUNCTION :S.lim_acquire_5(a_name text, a_key text, a_ticket bigint, a_cost bigint, a_reject boolean,
       a_ttl bigint, a_max bigint, a_c bigint, a_l bigint, a_p bigint, a_b bigint, a_token text, a_channel text)
       RETURNS TABLE (o_kind text, o_a text, o_n bigint)
     LANGUAGE plpgsql AS $f$
     DECLARE m record; now_ms bigint; t record; wait bigint; rw record; head bigint; v_ticket bigint;
     BEGIN
       SELECT * INTO m FROM :S.lim_lock_5(a_name, a_c, a_l, a_p, a_b);
       now_ms := :NOW;
       PERFORM :S.lim_clean_5(a_name, a_key, now_ms);
       IF a_ticket IS NULL AND EXISTS (SELECT 1 FROM :S.lim_undone u WHERE u.name = a_name AND u.token = a_token
                                        AND u.until_ms > now_ms) THEN
         RETURN QUERY SELECT 'c'::text, NULL::text, now_ms; RETURN;
       END IF;
       IF m.l IS NOT NULL AND a_cost > m.b THEN
         -- (A ticket's cost put above the burst by setLimits: out of line, and a permit handed to it goes back.)
         DELETE FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.ticket = a_ticket RETURNING q.state, q.token INTO t;
         IF FOUND AND t.state = 'g' THEN
           DELETE FROM :S.lim_held h WHERE h.name = a_name AND h.key = a_key AND h.token = t.token;
         END IF;
         RETURN QUERY SELECT 'x'::text, NULL::text, now_ms; RETURN;
       END IF;
       IF a_ticket IS NOT NULL THEN
         FOR i IN 1..2 LOOP
           SELECT q.state, q.token, q.granted_at INTO t FROM :S.lim_line q
            WHERE q.name = a_name AND q.key = a_key AND q.ticket = a_ticket;
           IF NOT FOUND THEN RETURN QUERY SELECT 'l'::text, NULL::text, now_ms; RETURN; END IF;
           IF t.state <> 'w' THEN
             DELETE FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.ticket = a_ticket;
             IF t.state = 'g' THEN RETURN QUERY SELECT 'g'::text, t.token, t.granted_at;
             ELSE RETURN QUERY SELECT 'x'::text, NULL::text, now_ms; END IF;
             RETURN;
           END IF;
           IF i = 1 THEN wait := :S.lim_serve_5(a_name, a_key, a_ttl, now_ms, m.c, m.l, m.per, m.b, a_channel); END IF;
         END LOOP;
         UPDATE :S.lim_line q SET until_ms = now_ms + a_ttl WHERE q.name = a_name AND q.key = a_key AND q.ticket = a_ticket;
         SELECT q.ticket INTO head FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.state = 'w'
          ORDER BY q.ticket LIMIT 1;
         RETURN QUERY SELECT 'w'::text, a_ticket::text, CASE WHEN head = a_ticket THEN wait ELSE 0 END; RETURN;
       END IF;
       IF NOT EXISTS (SELECT 1 FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.state = 'w')
          AND :S.lim_room_5(a_name, a_key, m.c) THEN
         SELECT * INTO rw FROM :S.lim_rate_5(a_name, a_key, a_cost, now_ms, m.l, m.per, m.b);
         IF rw.wait = 0 THEN
           PERFORM :S.lim_grant_5(a_name, a_key, rw.nw, rw.nr, m.l, a_ttl, a_token, now_ms);
           RETURN QUERY SELECT 'g'::text, a_token, now_ms; RETURN;
         END IF;
         IF a_reject THEN
           UPDATE :S.lim_limiters SET rejected = rejected + 1 WHERE name = a_name;
           RETURN QUERY SELECT 'r'::text, NULL::text, rw.wait; RETURN;
         END IF;
       ELSIF a_reject THEN
         UPDATE :S.lim_limiters SET rejected = rejected + 1 WHERE name = a_name;
         RETURN QUERY SELECT 'r'::text, NULL::text, 0::bigint; RETURN;
       END IF;
       IF (SELECT count(*) FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.state = 'w') >= a_max THEN
         UPDATE :S.lim_limiters SET rejected = rejected + 1 WHERE name = a_name;
         RETURN QUERY SELECT 'f'::text, NULL::text, now_ms; RETURN;
       END IF;
       v_ticket := nextval(':S.lim_tickets');
       INSERT INTO :S.lim_line (name, key, ticket, cost, token, until_ms) VALUES (a_name, a_key, v_ticket, a_cost, a_token,
         now_ms + a_ttl);
       wait := :S.lim_serve_5(a_name, a_key, a_ttl, now_ms, m.c, m.l, m.per, m.b, a_channel);
       SELECT q.state, q.token, q.granted_at INTO t FROM :S.lim_line q
        WHERE q.name = a_name AND q.key = a_key AND q.ticket = v_ticket;
       IF t.state = 'g' THEN
         DELETE FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.ticket = v_ticket;
         RETURN QUERY SELECT 'g'::text, t.token, t.granted_at; RETURN;
       END IF;
       SELECT q.ticket INTO head FROM :S.lim_line q WHERE q.name = a_name AND q.key = a_key AND q.state = 'w'
        ORDER BY q.ticket LIMIT 1;
       RETURN QUERY SELECT 'w'::text, v_ticket::text, CASE WHEN head = v_ticket THEN wait ELSE 0 END;
     END $f$;

-- Gives a permit back if its lease still holds (true); false when it was already gone (a stale token frees
-- nothing). Then serves the key's line.
CREATE FUNCTION :S.lim_release_5(a_name text, a_key text, a_token text, a_ttl bigint, a_c bigint, a_l bigint,
       a_p bigint, a_b bigint, a_channel text) RETURNS boolean
     LANGUAGE plpgsql AS $f$
     DECLARE m record; now_ms bigint; expiry bigint;
     BEGIN
       SELECT * INTO m FROM :S.lim_lock_5(a_name, a_c, a_l, a_p, a_b);
       now_ms := :NOW;
       DELETE FROM :S.lim_held WHERE name = a_name AND key = a_key AND token = a_token RETURNING until_ms INTO expiry;
       PERFORM :S.lim_clean_5(a_name, a_key, now_ms);
       PERFORM :S.lim_serve_5(a_name, a_key, a_ttl, now_ms, m.c, m.l, m.per, m.b, a_channel);
       RETURN coalesce(expiry > now_ms, false);
     END $f$;

-- A waiter that stops waiting: its ticket leaves the line, a permit handed to it goes back; with a token, that
-- token's permit goes back too; with a_undo, the token is marked for a lease so that its acquire, if it runs
-- later, is refused (exact in either order). Then serves the key's line.
CREATE FUNCTION :S.lim_cancel_5(a_name text, a_key text, a_ticket bigint, a_token text, a_ttl bigint,
       a_undo boolean, a_c bigint, a_l bigint, a_p bigint, a_b bigint, a_channel text) RETURNS void
     LANGUAGE plpgsql AS $f$
     DECLARE m record; now_ms bigint; t record;
     BEGIN
       SELECT * INTO m FROM :S.lim_lock_5(a_name, a_c, a_l, a_p, a_b);
       now_ms := :NOW;
       IF a_ticket IS NOT NULL THEN
         DELETE FROM :S.lim_line WHERE name = a_name AND key = a_key AND ticket = a_ticket RETURNING state, token INTO t;
         IF FOUND AND t.state = 'g' THEN
           DELETE FROM :S.lim_held WHERE name = a_name AND key = a_key AND token = t.token;
         END IF;
       END IF;
       IF a_token IS NOT NULL THEN
         DELETE FROM :S.lim_held WHERE name = a_name AND key = a_key AND token = a_token;
         IF a_undo THEN
           INSERT INTO :S.lim_undone (name, token, until_ms) VALUES (a_name, a_token, now_ms + a_ttl)
             ON CONFLICT (name, token) DO UPDATE SET until_ms = EXCLUDED.until_ms;
         END IF;
       END IF;
       PERFORM :S.lim_clean_5(a_name, a_key, now_ms);
       PERFORM :S.lim_serve_5(a_name, a_key, a_ttl, now_ms, m.c, m.l, m.per, m.b, a_channel);
     END $f$;

-- One call per process per interval for everything it holds and waits for: a permit or ticket within its lease
-- is extended to now + ttl; one past it is lost (removed, never revived). The lines of the keys waited for are
-- served (a lost hint is made up for here), and what expired anywhere in the limiter is deleted.
CREATE FUNCTION :S.lim_renew_5(a_name text, a_pid text, a_ttl bigint, a_c bigint, a_l bigint, a_p bigint,
       a_b bigint, p_keys text[], p_tokens text[], t_keys text[], t_tickets bigint[], a_channel text)
       RETURNS TABLE (o_lost text[], o_lost_tickets bigint[], o_ready bigint[], o_procs bigint, o_admitted bigint,
                      o_rejected bigint, o_c bigint, o_l bigint, o_p bigint, o_b bigint)
     LANGUAGE plpgsql AS $f$
     DECLARE m record; now_ms bigint; lost text[] := '{}'; lost_t bigint[] := '{}'; ready bigint[] := '{}';
       k text; st "char"; procs bigint; cnt record;
     BEGIN
       SELECT * INTO m FROM :S.lim_lock_5(a_name, a_c, a_l, a_p, a_b);
       now_ms := :NOW;
       FOR i IN 1..coalesce(cardinality(p_tokens), 0) LOOP
         UPDATE :S.lim_held SET until_ms = now_ms + a_ttl
          WHERE name = a_name AND key = p_keys[i] AND token = p_tokens[i] AND until_ms > now_ms;
         IF NOT FOUND THEN lost := lost || p_tokens[i]; END IF;
       END LOOP;
       FOR k IN SELECT DISTINCT u FROM unnest(t_keys) AS u LOOP
         PERFORM :S.lim_clean_5(a_name, k, now_ms);
         PERFORM :S.lim_serve_5(a_name, k, a_ttl, now_ms, m.c, m.l, m.per, m.b, a_channel);
       END LOOP;
       FOR i IN 1..coalesce(cardinality(t_tickets), 0) LOOP
         SELECT state INTO st FROM :S.lim_line WHERE name = a_name AND key = t_keys[i] AND ticket = t_tickets[i];
         IF NOT FOUND THEN lost_t := lost_t || t_tickets[i];
         ELSIF st <> 'w' THEN ready := ready || t_tickets[i];
         ELSE
           UPDATE :S.lim_line SET until_ms = now_ms + a_ttl WHERE name = a_name AND key = t_keys[i] AND ticket = t_tickets[i];
         END IF;
       END LOOP;
       DELETE FROM :S.lim_held WHERE name = a_name AND until_ms <= now_ms;
       DELETE FROM :S.lim_line WHERE name = a_name AND until_ms <= now_ms;
       DELETE FROM :S.lim_undone WHERE name = a_name AND until_ms <= now_ms;
       DELETE FROM :S.lim_rate WHERE name = a_name AND w < now_ms;
       INSERT INTO :S.lim_procs (name, pid, until_ms) VALUES (a_name, a_pid, now_ms + a_ttl)
         ON CONFLICT (name, pid) DO UPDATE SET until_ms = EXCLUDED.until_ms;
       DELETE FROM :S.lim_procs WHERE name = a_name AND until_ms <= now_ms;
       SELECT count(*) INTO procs FROM :S.lim_procs WHERE name = a_name;
       SELECT admitted, rejected INTO cnt FROM :S.lim_limiters WHERE name = a_name;
       RETURN QUERY SELECT lost, lost_t, ready, procs, cnt.admitted, cnt.rejected, m.c, m.l, m.per, m.b;
     END $f$;

-- Stores the fleet's limits (every process decides by them from its next call on) and re-decides every line.
CREATE FUNCTION :S.lim_set_5(a_name text, a_c bigint, a_l bigint, a_p bigint, a_b bigint, a_ttl bigint,
       a_channel text) RETURNS void
     LANGUAGE plpgsql AS $f$
     DECLARE m record; now_ms bigint; k text;
     BEGIN
       PERFORM :S.lim_lock_5(a_name, a_c, a_l, a_p, a_b);
       UPDATE :S.lim_limiters SET set = true, c = a_c, l = a_l, per = a_p, b = a_b WHERE name = a_name;
       SELECT * INTO m FROM :S.lim_lock_5(a_name, a_c, a_l, a_p, a_b);
       now_ms := :NOW;
       FOR k IN SELECT DISTINCT key FROM :S.lim_line WHERE name = a_name AND state = 'w' LOOP
         PERFORM :S.lim_clean_5(a_name, k, now_ms);
         PERFORM :S.lim_serve_5(a_name, k, a_ttl, now_ms, m.c, m.l, m.per, m.b, a_channel);
       END LOOP;
     END $f$;

-- A closed limiter stops counting in the fleet's processes.
CREATE FUNCTION :S.lim_leave_5(a_name text, a_pid text) RETURNS void
     LANGUAGE sql AS $f$ DELETE FROM :S.lim_procs WHERE name = a_name AND pid = a_pid $f$;
