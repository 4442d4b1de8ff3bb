// The tables velo-stream keeps in Postgres, in a schema the user names, created and migrated by the library:
// `migrations` records each version applied (one transaction per version, under an advisory lock, so that workers
// starting together apply each once), and from version 4 on which workers may run beside it (`keeps`: the oldest
// schema version whose release stays correct on it). A later release adds a migration to MIGRATIONS; none is ever
// edited. The upgrade rule (docs/postgres.md#upgrading): a migration whose `keeps` is above the schema's version is
// refused while workers are registered (ERR_VELO_SCHEMA_VERSION: stop the older release first), and a worker takes
// no partition of a schema whose version it is not kept by (`acquire_4` checks at every grant).
//
// Every table is keyed by the function's name (`fn`) and, but for `workers`, the partition (`p`). Entry ids are
// `<ms>-<seq>` as Redis makes them, stored as two bigints.
//
//   leases       one row per partition: the lease (token "<worker>:<epoch>", expiry), the fencing epoch, and the
//                refusal mark (versions). Owner writes hold it FOR KEY SHARE; a grant takes it FOR UPDATE.
//   heads        one row per partition: the last input id given. An append locks it (UPDATE), so ids are given in
//                commit order: a reader of `id > cursor` never passes an entry still to commit.
//   groups       one row per partition: the output stream's last id, the last commit with a serial (retries), and
//                the last output trimmed away (version 4). Locked by the owner's commits. (Its delivered_* columns
//                are version 1's read position: unused since version 3.)
//   cursors      one row per partition: the owner's read position (last delivered). Locked by its reads of new
//                entries, apart from the commits' row: a read never waits for a commit in flight (version 3).
//   entries      the partition's input: events (key, payload, trace), close markers (close, reason), wake-ups.
//   pending      entries delivered to the owner and not acked (the inputs of live sessions), keyed by the id as one
//                number (`k` = ms * 2^64 + seq: an ack deletes by `k = ANY(...)`, exact index look-ups).
//   outputs      the output stream: (sid, seq) once each, its value or error.
//   marks        per session: the last output seq written (its high-water mark), and that output's place.
//   checks       checkReplay: per output of a live session, its entry id and digest.
//   checkpoints  per live session: its last checkpoint (stored.ts's bytes).
//   timers       per live session: the timer ids whose wake-ups were written.
//   ends         checkReplay: where ended sessions ended, with the ms of their first entry (trimmed with it).
//   openings     per live session that wrote anything: what it opened with (version, caps).
//   versions     per partition: live sessions of `openings` per version (in first-counted order).
//   kept         keyState: a key's state after its last session, with its expiry.
//   journal      per live session (version 7): its journal entries (ctx.run, ctx.stream), one per commit that
//                journaled, keyed by the place `at` of its first record; the value as stored.ts's journalValue makes
//                it (the entry's records in order, each a header line and its payload).
//   workers      live workers of a function: registration expiry and advert.
//   lim_*        the fleet limiters' (version 5, postgresLimiter), keyed by the limiter's name: see sql/limiter-5.sql.
//   dash_members the dashboard fleet view's members (version 6), keyed by the fleet's name: see clients/fleet-store.ts.
import { describe, invalidType, invalidValue, outOfRange, schemaVersionError } from '../../errors';
import { isWellFormed } from '../../text';
import { COMMIT_4, COMMIT_8, COMMIT_9 } from './commit-one';
import { USER_STATEMENT } from './gate';
import { NOW, type PgClientLike, type PgPoolLike, run, str, transaction } from './sql';
import { sqlFile } from './sql-file';

/** Version 5's statements: the fleet limiter's tables and functions. */
const LIMITER_5 = sqlFile('limiter-5.sql');

/** The schema's name as SQL: checked (a plain lower-case identifier) and quoted. */
export function schemaIdent(what: string, schema: unknown): string {
  if (typeof schema !== 'string') throw invalidType(`${what}: the "schema" option must be a string, not ${describe(schema)}`);
  // (Not a schema of the server's or everyone's: velo-stream's tables and functions need a schema of their own.)
  if (
    !/^[a-z_][a-z0-9_]{0,62}$/.test(schema) ||
    schema.startsWith('pg_') ||
    schema === 'public' ||
    schema === 'information_schema'
  ) {
    throw invalidValue(
      `${what}: the "schema" option must be a lower-case identifier of a schema of velo-stream's own (a-z, 0-9, _; at most 63; not pg_..., public or information_schema). Received ${describe(schema)}`,
    );
  }
  return `"${schema}"`;
}

/** Checks a function's name: 1-200 characters, no NUL, no whitespace. */
export function checkFunctionName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string') throw invalidType(`${what}: the "name" option must be a string, not ${describe(name)}`);
  if (!/^[^\s\0]{1,200}$/.test(name) || !isWellFormed(name)) {
    throw invalidValue(
      `${what}: the "name" option must be 1-200 characters without whitespace, NUL or lone surrogates (Postgres text holds no NUL), not ${describe(name)}`,
    );
  }
}

/** Checks a partition count (1-16384, as on Redis). */
export function checkPartitions(what: string, partitions: unknown): asserts partitions is number {
  if (!Number.isSafeInteger(partitions) || (partitions as number) < 1 || (partitions as number) > 16384) {
    throw outOfRange(`${what}: "partitions" must be an integer from 1 to 16384, not ${describe(partitions)}`);
  }
}

/** A migration: its statements (`S` is the quoted schema), and the oldest schema version whose workers may run beside it. */
interface Migration {
  readonly statements: (S: string) => string[];
  readonly keeps: number;
}

/** The migrations, in order: version i + 1 is MIGRATIONS[i]. */
const MIGRATIONS: readonly Migration[] = [
  {
    keeps: 1,
    statements: (S) => [
      `CREATE TABLE ${S}.leases (fn text NOT NULL, p integer NOT NULL, token text, epoch bigint NOT NULL DEFAULT 0,
       until_ms bigint NOT NULL DEFAULT 0, refused_until bigint NOT NULL DEFAULT 0, PRIMARY KEY (fn, p))`,
      `CREATE TABLE ${S}.heads (fn text NOT NULL, p integer NOT NULL, last_ms bigint NOT NULL DEFAULT 0,
       last_seq bigint NOT NULL DEFAULT 0, PRIMARY KEY (fn, p))`,
      `CREATE TABLE ${S}.groups (fn text NOT NULL, p integer NOT NULL, delivered_ms bigint NOT NULL DEFAULT 0,
       delivered_seq bigint NOT NULL DEFAULT 0, out_ms bigint NOT NULL DEFAULT 0, out_seq bigint NOT NULL DEFAULT 0,
       lc_token text, lc_serial text, lc_first_ms bigint, lc_first_seq bigint, lc_count integer NOT NULL DEFAULT 0,
       PRIMARY KEY (fn, p))`,
      `CREATE TABLE ${S}.entries (fn text NOT NULL, p integer NOT NULL, ms bigint NOT NULL, seq bigint NOT NULL,
       key text NOT NULL, payload bytea, close text, reason text, wake text, due bigint, tp text, ts text,
       PRIMARY KEY (fn, p, ms, seq))`,
      `CREATE TABLE ${S}.pending (fn text NOT NULL, p integer NOT NULL, k numeric NOT NULL, ms bigint NOT NULL,
       seq bigint NOT NULL, PRIMARY KEY (fn, p, k))`,
      `CREATE TABLE ${S}.outputs (fn text NOT NULL, p integer NOT NULL, ms bigint NOT NULL, seq bigint NOT NULL,
       sid text NOT NULL, oseq bigint NOT NULL, key text NOT NULL, field "char" NOT NULL, data bytea NOT NULL, tp text,
       PRIMARY KEY (fn, p, ms, seq))`,
      `CREATE TABLE ${S}.marks (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, seq bigint NOT NULL,
       PRIMARY KEY (fn, p, sid))`,
      `CREATE TABLE ${S}.checks (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, seq bigint NOT NULL,
       out_id text NOT NULL, digest text NOT NULL, PRIMARY KEY (fn, p, sid, seq))`,
      `CREATE TABLE ${S}.checkpoints (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, value bytea NOT NULL,
       PRIMARY KEY (fn, p, sid))`,
      `CREATE TABLE ${S}.timers (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, id bigint NOT NULL,
       PRIMARY KEY (fn, p, sid, id))`,
      `CREATE TABLE ${S}.ends (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, value text NOT NULL,
       ms bigint NOT NULL, PRIMARY KEY (fn, p, sid))`,
      `CREATE INDEX ends_by_ms ON ${S}.ends (fn, p, ms)`,
      `CREATE TABLE ${S}.openings (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, version text NOT NULL,
       value text NOT NULL, PRIMARY KEY (fn, p, sid))`,
      `CREATE TABLE ${S}.versions (fn text NOT NULL, p integer NOT NULL, version text NOT NULL, count bigint NOT NULL,
       pos bigserial, PRIMARY KEY (fn, p, version))`,
      `CREATE TABLE ${S}.kept (fn text NOT NULL, p integer NOT NULL, key text NOT NULL, value bytea NOT NULL,
       until_ms bigint NOT NULL, PRIMARY KEY (fn, p, key))`,
      `CREATE TABLE ${S}.workers (fn text NOT NULL, worker text NOT NULL, until_ms bigint NOT NULL, advert text NOT NULL,
       PRIMARY KEY (fn, worker))`,
    ],
  },
  // 2: the place of each session's last output written (`"<seq> <inputs> <position>"`), for migrated sessions.
  { keeps: 2, statements: (S) => [`ALTER TABLE ${S}.marks ADD COLUMN place text`] },
  // 3: the read position in a row of its own (cursors), so that reads and commits lock different rows. Workers of an
  // older release must be stopped first: they would go on moving the old position (groups.delivered_*).
  {
    keeps: 3,
    statements: (S) => [
      `CREATE TABLE ${S}.cursors (fn text NOT NULL, p integer NOT NULL, delivered_ms bigint NOT NULL DEFAULT 0,
       delivered_seq bigint NOT NULL DEFAULT 0, PRIMARY KEY (fn, p))`,
      `INSERT INTO ${S}.cursors (fn, p, delivered_ms, delivered_seq) SELECT fn, p, delivered_ms, delivered_seq FROM ${S}.groups`,
    ],
  },
  // 4: which workers a schema keeps (migrations.keeps), and a grant, a commit's fence and the most frequent commits
  // in one round trip each (functions: each statement in them sees the rows committed before it, after the locks
  // before it are held; commit-one.ts).
  // Version 3's workers stay correct beside it (they grant and fence as the functions do).
  {
    keeps: 3,
    statements: (S) => [
      `ALTER TABLE ${S}.migrations ADD COLUMN keeps integer`,
      // The last output a trim removed (0-0: none yet), by which a reader's position taken before a partition's first
      // output is judged (clients/key-outputs.ts, judgePg). Version 3's workers trim without it: see judgePg.
      `ALTER TABLE ${S}.groups ADD COLUMN trimmed_ms bigint NOT NULL DEFAULT 0, ADD COLUMN trimmed_seq bigint NOT NULL DEFAULT 0`,
      ...FUNCTIONS_4(S),
      COMMIT_4(S),
    ],
  },
  // 5: the fleet limiter's tables and functions (postgresLimiter: sql/limiter-5.sql). New tables only, which no older
  // release reads or writes: every worker version 4 keeps (from version 3 on) stays correct beside it.
  { keeps: 3, statements: (S) => LIMITER_5(S) },
  // 6: the dashboard fleet view's members (clients/fleet-store.ts). A new table only, which no older release reads or
  // writes: every worker version 5 keeps (from version 3 on) stays correct beside it. Its key is its only index, and
  // its pages keep room (fillfactor), so that a publish (an update of `until_ms` and `value`) is a HOT update.
  {
    keeps: 3,
    statements: (S) => [
      `CREATE TABLE ${S}.dash_members (fleet text NOT NULL, id text NOT NULL, until_ms bigint NOT NULL, value text NOT NULL,
       PRIMARY KEY (fleet, id)) WITH (fillfactor = 50)`,
    ],
  },
  // 7: the sessions' journal (ctx.run, ctx.stream: journal.ts). A new table only, which no older release reads or
  // writes: every worker version 6 keeps (from version 3 on) stays correct beside it. (An older worker neither
  // writes records nor forgets them: a session it takes over calls again, and the records of one it ends stay.)
  {
    keeps: 3,
    statements: (S) => [
      `CREATE TABLE ${S}.journal (fn text NOT NULL, p integer NOT NULL, sid text NOT NULL, at text NOT NULL,
       value bytea NOT NULL, PRIMARY KEY (fn, p, sid, at))`,
    ],
  },
  // 8: every commit but a replay-checked one in one statement (commit_8, commit-one.ts): in a commit with effects,
  // velo-stream's statements take one round trip before them. A new function only: every worker version 7 keeps
  // (from version 3 on) stays correct beside it.
  { keeps: 3, statements: (S) => [COMMIT_8(S)] },
  // 9: a commit that journals in one statement too (commit_9: commit_8 with the journal's entries and the fields it
  // forgets). A new function only: every worker version 8 keeps (from version 3 on) stays correct beside it.
  { keeps: 3, statements: (S) => [COMMIT_9(S)] },
];

/** The schema version this release writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Version 4's functions. `acquire_4`: a grant (pg-log.ts, `acquire`): refused (kind 'schema') unless the schema keeps
 * the caller's version; the lease row FOR UPDATE (it waits for every owner write in flight), then, with the row
 * held, the live sessions' versions. `fence_4`: a commit's fence: the lease row FOR KEY SHARE and the group row FOR
 * UPDATE, then, with both held, the marks of `a_sids` (read after the lock, so after the commit before it).
 */
function FUNCTIONS_4(S: string): string[] {
  return [
    `CREATE FUNCTION ${S}.acquire_4(a_fn text, a_p integer, a_worker text, a_ttl bigint, a_runs text[], a_rescue boolean,
       a_version integer) RETURNS TABLE (o_kind text, o_token text, o_left bigint, o_refused text[])
     LANGUAGE plpgsql AS $f$
     DECLARE
       m record; l record; found_l boolean; now_ms bigint; refused text[]; next_epoch bigint;
     BEGIN
       SELECT version, coalesce(keeps, version) AS keeps INTO m FROM ${S}.migrations ORDER BY version DESC LIMIT 1;
       IF a_version > m.version OR a_version < m.keeps THEN
         RETURN QUERY SELECT 'schema'::text, NULL::text, m.version::bigint, ARRAY[m.keeps::text];
         RETURN;
       END IF;
       SELECT token, epoch, until_ms, refused_until INTO l FROM ${S}.leases WHERE fn = a_fn AND p = a_p FOR UPDATE;
       found_l := FOUND;
       IF NOT found_l THEN
         RETURN QUERY SELECT 'missing'::text, NULL::text, NULL::bigint, NULL::text[];
         RETURN;
       END IF;
       now_ms := ${NOW};
       IF l.token IS NOT NULL AND l.until_ms >= now_ms THEN
         RETURN QUERY SELECT 'held'::text, l.token, l.until_ms - now_ms, NULL::text[];
         RETURN;
       END IF;
       IF a_rescue AND l.refused_until <= now_ms THEN
         RETURN QUERY SELECT 'refused'::text, NULL::text, NULL::bigint, ARRAY[]::text[];
         RETURN;
       END IF;
       SELECT coalesce(array_agg(v.version ORDER BY v.pos), ARRAY[]::text[]) INTO refused FROM ${S}.versions v
        WHERE v.fn = a_fn AND v.p = a_p AND v.count > 0 AND v.version <> '' AND NOT (v.version = ANY (a_runs))
          AND NOT ('*' = ANY (a_runs));
       IF cardinality(refused) > 0 THEN
         UPDATE ${S}.leases SET refused_until = now_ms + a_ttl WHERE fn = a_fn AND p = a_p;
         RETURN QUERY SELECT 'refused'::text, NULL::text, NULL::bigint, refused;
         RETURN;
       END IF;
       next_epoch := l.epoch + 1;
       UPDATE ${S}.leases SET token = a_worker || ':' || next_epoch, epoch = next_epoch, until_ms = now_ms + a_ttl,
              refused_until = 0 WHERE fn = a_fn AND p = a_p;
       RETURN QUERY SELECT 'granted'::text, a_worker || ':' || next_epoch, NULL::bigint, NULL::text[];
     END $f$`,
    `CREATE FUNCTION ${S}.fence_4(a_fn text, a_p integer, a_token text, a_sids text[])
       RETURNS TABLE (o_ok boolean, o_now bigint, out_ms bigint, out_seq bigint, lc_token text, lc_serial text,
                      lc_first_ms bigint, lc_first_seq bigint, lc_count integer, o_sids text[], o_seqs bigint[])
     LANGUAGE plpgsql AS $f$
     #variable_conflict use_column
     DECLARE
       r record; found_r boolean; now_ms bigint; sids text[]; seqs bigint[];
     BEGIN
       SELECT l.token AS t, l.until_ms AS u, g.out_ms, g.out_seq, g.lc_token, g.lc_serial, g.lc_first_ms, g.lc_first_seq,
              g.lc_count INTO r
         FROM ${S}.leases l JOIN ${S}.groups g ON g.fn = l.fn AND g.p = l.p
        WHERE l.fn = a_fn AND l.p = a_p FOR KEY SHARE OF l FOR UPDATE OF g;
       found_r := FOUND;
       now_ms := ${NOW};
       IF NOT found_r OR r.t IS DISTINCT FROM a_token OR r.u < now_ms THEN
         RETURN QUERY SELECT false, now_ms, NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::bigint,
                             NULL::bigint, NULL::integer, NULL::text[], NULL::bigint[];
         RETURN;
       END IF;
       SELECT coalesce(array_agg(m.sid), ARRAY[]::text[]), coalesce(array_agg(m.seq), ARRAY[]::bigint[]) INTO sids, seqs
         FROM ${S}.marks m WHERE m.fn = a_fn AND m.p = a_p AND m.sid = ANY (a_sids);
       RETURN QUERY SELECT true, now_ms, r.out_ms, r.out_seq, r.lc_token, r.lc_serial, r.lc_first_ms, r.lc_first_seq,
                           r.lc_count, sids, seqs;
     END $f$`,
  ];
}

/**
 * Creates the schema and applies the migrations it lacks, each in its transaction under an advisory lock on the
 * schema's name (workers starting together wait for each other: CREATE ... IF NOT EXISTS alone races); its version.
 * ERR_VELO_SCHEMA_VERSION for a schema migrated by a newer release that does not keep this one's workers (it would
 * misread it), and for a migration while workers of an older release it does not keep are registered.
 */
export async function migrate(pool: PgPoolLike, schema: string, target = SCHEMA_VERSION): Promise<number> {
  const S = schemaIdent('migrate', schema);
  // Most calls find the schema migrated: read its version without DDL first, so that a role with only DML and
  // EXECUTE rights runs once an admin has migrated it (CREATE ... IF NOT EXISTS needs CREATE rights even as a no-op).
  const current = await migratedVersion(pool, S, schema, target);
  if (current !== null) {
    await checkNotRenamed(pool, S, schema);
    return current;
  }
  for (let raced = 0; ;) {
    const applied = await transaction(pool, async (gated) => {
      const client = waitsForLocks(gated);
      await run(client, `SELECT pg_advisory_xact_lock(hashtext($1))`, [`velo-stream:${schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${S}.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await run(client, `SELECT to_jsonb(m) AS m FROM ${S}.migrations m ORDER BY version DESC LIMIT 1`);
      const last = (rows[0]?.m ?? { version: 0 }) as { version: number; keeps?: number | null };
      const version = Number(last.version);
      if (version > SCHEMA_VERSION) {
        // A newer release's schema: this one runs on it only if that release says it keeps this one's workers.
        const keeps = Number(last.keeps ?? version);
        if (keeps <= SCHEMA_VERSION) return version;
        throw schemaVersionError(
          `Postgres schema "${schema}" is at version ${version}, which keeps workers from version ${keeps} on: this release writes version ${SCHEMA_VERSION}. Upgrade this process to the release that migrated the schema (docs/postgres.md#upgrading).`,
          version,
          SCHEMA_VERSION,
        );
      }
      // (`target`: a version below this release's, to make an older release's schema in tests.)
      if (version >= target) return version;
      const migration = MIGRATIONS[version];
      if (version > 0 && migration.keeps > version) await refuseUnderWorkers(client, S, schema, version);
      for (const statement of migration.statements(S)) await client.query(statement);
      if (version + 1 >= 4) {
        await run(client, `INSERT INTO ${S}.migrations (version, keeps) VALUES ($1, $2)`, [version + 1, migration.keeps]);
      } else await run(client, `INSERT INTO ${S}.migrations (version) VALUES ($1)`, [version + 1]);
      return -1;
    }).catch((error: unknown) => {
      // A backend that looked the schema up (migratedVersion) before another made it may find its stale catalog
      // cache in the CREATE ... IF NOT EXISTS (a duplicate): the next transaction sees the schema.
      const code = (error as { code?: unknown }).code;
      if ((code === '23505' || code === '42P06' || code === '42P07') && ++raced < 5) return -1;
      throw error;
    });
    if (applied >= 0) {
      await checkNotRenamed(pool, S, schema);
      return applied;
    }
  }
}

/**
 * `client` (of a log's gate: gate.ts) with each statement run as the user's are: not cut by `callTimeout` while the
 * server works on it, only once its process is gone or waits for the client. A migration's statements wait for the
 * advisory lock while another process migrates, and its DDL for the locks of transactions running on the tables.
 */
function waitsForLocks(client: PgClientLike): PgClientLike {
  const marked = (config: { name?: string; text: string; values?: unknown[] } | string, values?: unknown[]) =>
    typeof config === 'string' ? { text: config, values, [USER_STATEMENT]: true } : { ...config, [USER_STATEMENT]: true };
  return {
    query: (config: never, values?: unknown[]) => client.query(marked(config, values)),
    release: (destroy) => client.release(destroy),
    on: (event: never, listener: never) => client.on(event, listener),
    removeListener: (event: never, listener: never) => client.removeListener(event, listener),
  };
}

/**
 * The schema's version when it needs no migration (read without DDL, no lock), else null (missing, or behind
 * `target`). ERR_VELO_SCHEMA_VERSION as `migrate` for a newer release's schema that does not keep this one.
 */
async function migratedVersion(pool: PgPoolLike, S: string, schema: string, target: number): Promise<number | null> {
  const { rows: found } = await run(pool, `SELECT to_regclass($1) IS NOT NULL AS t`, [`${S}.migrations`]);
  if (found[0]?.t !== true) return null;
  const { rows } = await run(pool, `SELECT to_jsonb(m) AS m FROM ${S}.migrations m ORDER BY version DESC LIMIT 1`);
  const last = (rows[0]?.m ?? { version: 0 }) as { version: number; keeps?: number | null };
  const version = Number(last.version);
  if (version > SCHEMA_VERSION) {
    const keeps = Number(last.keeps ?? version);
    if (keeps <= SCHEMA_VERSION) return version;
    throw schemaVersionError(
      `Postgres schema "${schema}" is at version ${version}, which keeps workers from version ${keeps} on: this release writes version ${SCHEMA_VERSION}. Upgrade this process to the release that migrated the schema (docs/postgres.md#upgrading).`,
      version,
      SCHEMA_VERSION,
    );
  }
  return version >= target ? version : null;
}

/** The pools and schemas whose functions were found to name their own schema (checked once per process). */
const checkedNames = new WeakMap<PgPoolLike, Set<string>>();

/**
 * Refuses a schema renamed after it was made (ALTER SCHEMA ... RENAME): its functions' bodies name the schema they
 * were made in, so a worker on the new name would write the old schema's rows (ERR_VELO_SCHEMA_VERSION, `found`:
 * the schema's version). Checked once per pool and schema in a process; functions missing (below version 4) pass.
 */
async function checkNotRenamed(pool: PgPoolLike, S: string, schema: string): Promise<void> {
  const checked = checkedNames.get(pool) ?? new Set<string>();
  checkedNames.set(pool, checked);
  if (checked.has(schema)) return;
  const { rows } = await run(
    pool,
    `SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname ~ '^(acquire|fence|commit)_[0-9]+$' ORDER BY p.proname`,
    [schema],
  );
  const other = rows.find((r) => !str(r.prosrc).includes(`${S}.`));
  if (other !== undefined) {
    const named = /"([a-z_][a-z0-9_]*)"\./.exec(str(other.prosrc))?.[1];
    const { rows: last } = await run(pool, `SELECT max(version) AS v FROM ${S}.migrations`);
    const version = Number(last[0]?.v ?? 0);
    const made = named === undefined ? 'under another name' : `as "${named}"`;
    throw schemaVersionError(
      `Postgres schema "${schema}" was renamed: found a schema at version ${version} made ${made} (its function ${str(other.proname)} writes schema "${named ?? '?'}"), where a worker would write the other schema's tables. Do not rename velo-stream's schema; to move, stop the workers, rename it back, and see docs/postgres.md#upgrading.`,
      version,
      SCHEMA_VERSION,
    );
  }
  checked.add(schema);
}

/**
 * Refuses to apply a migration that the workers registered on the schema (of any function: a release that has not
 * migrated it, so an older one) would not stay correct beside: ERR_VELO_SCHEMA_VERSION, naming them.
 */
async function refuseUnderWorkers(client: PgClientLike, S: string, schema: string, version: number): Promise<void> {
  const { rows } = await run(client, `SELECT fn, worker FROM ${S}.workers WHERE until_ms > ${NOW} ORDER BY fn, worker LIMIT 20`);
  if (rows.length === 0) return;
  const live = rows.map((r) => `${str(r.worker)} (${str(r.fn)})`);
  throw schemaVersionError(
    `Postgres schema "${schema}" is at version ${version} and workers of an older release run on it: ${live.join(', ')}. This release migrates it to version ${SCHEMA_VERSION}, which they would not stay correct beside: stop them first (a closed worker leaves at once, a killed one within its leaseTtl), then start this release (docs/postgres.md#upgrading).`,
    version,
    SCHEMA_VERSION,
    live,
  );
}

/**
 * The rows a function's partitions need from the start (leases, heads, groups, cursors), made if missing. Looked
 * for first with a plain SELECT (no lock): an INSERT ... ON CONFLICT on a row an owner's statement has locked or
 * updated would wait for that statement (a paused owner's, for as long as it is paused); it runs only for the rows
 * missing.
 */
export async function ensurePartitions(pool: PgPoolLike, S: string, fn: string, partitions: number): Promise<void> {
  const tables = ['leases', 'heads', 'groups', 'cursors'];
  const { rows } = await run(
    pool,
    `SELECT ${tables.map((t) => `(SELECT count(*) FROM ${S}.${t} WHERE fn = $1 AND p < $2)::int AS ${t}`).join(', ')}`,
    [fn, partitions],
  );
  for (const table of tables) {
    if (Number(rows[0][table]) === partitions) continue;
    await run(
      pool,
      `INSERT INTO ${S}.${table} (fn, p) SELECT $1, g FROM generate_series(0, $2::integer - 1) AS g
        WHERE NOT EXISTS (SELECT 1 FROM ${S}.${table} t WHERE t.fn = $1 AND t.p = g) ON CONFLICT DO NOTHING`,
      [fn, partitions],
    );
  }
}
