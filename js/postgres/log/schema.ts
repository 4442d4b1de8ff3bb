// The tables velo-stream keeps in Postgres, in a schema the user names, created and migrated by the library:
// `migrations` records each version applied (one transaction per version, under an advisory lock, so that workers
// starting together apply each once). A later release adds a migration to MIGRATIONS; none is ever edited.
//
// Every table is keyed by the function's name (`fn`) and, but for `workers`, the partition (`p`). Entry ids are
// `<ms>-<seq>` as Redis makes them, stored as two bigints.
//
//   leases       one row per partition: the lease (token "<worker>:<epoch>", expiry), the fencing epoch, and the
//                refusal mark (versions). Owner writes hold it FOR KEY SHARE; a grant takes it FOR UPDATE.
//   heads        one row per partition: the last input id given. An append locks it (UPDATE), so ids are given in
//                commit order: a reader of `id > cursor` never passes an entry still to commit.
//   groups       one row per partition: the output stream's last id and the last commit with a serial (retries).
//                Locked by the owner's commits. (Its delivered_* columns are version 1's read position: unused since
//                version 3.)
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
//   workers      live workers of a function: registration expiry and advert.
import { describe, invalidType, invalidValue, outOfRange } from '../../errors';
import { type PgPoolLike, run, transaction } from './sql';

/** The schema's name as SQL: checked (a plain lower-case identifier) and quoted. */
export function schemaIdent(what: string, schema: unknown): string {
  if (typeof schema !== 'string') throw invalidType(`${what}: the "schema" option must be a string, not ${describe(schema)}`);
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema) || schema.startsWith('pg_')) {
    throw invalidValue(
      `${what}: the "schema" option must be a lower-case identifier (a-z, 0-9, _; at most 63; not pg_...), not ${describe(schema)}`,
    );
  }
  return `"${schema}"`;
}

/** Checks a function's name: 1-200 characters, no NUL, no whitespace. */
export function checkFunctionName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string') throw invalidType(`${what}: the "name" option must be a string, not ${describe(name)}`);
  if (!/^[^\s\0]{1,200}$/.test(name)) {
    throw invalidValue(`${what}: the "name" option must be 1-200 characters without whitespace, not ${describe(name)}`);
  }
}

/** Checks a partition count (1-16384, as on Redis). */
export function checkPartitions(what: string, partitions: unknown): asserts partitions is number {
  if (!Number.isSafeInteger(partitions) || (partitions as number) < 1 || (partitions as number) > 16384) {
    throw outOfRange(`${what}: "partitions" must be an integer from 1 to 16384, not ${describe(partitions)}`);
  }
}

/** The migrations, in order: version i + 1 is MIGRATIONS[i] (`S` is the quoted schema). */
const MIGRATIONS: ReadonlyArray<(S: string) => string[]> = [
  (S) => [
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
  // 2: the place of each session's last output written (`"<seq> <inputs> <position>"`), for migrated sessions.
  (S) => [`ALTER TABLE ${S}.marks ADD COLUMN place text`],
  // 3: the read position in a row of its own (cursors), so that reads and commits lock different rows. Workers of an
  // older release must be stopped before one of this release starts (they would move the old position).
  (S) => [
    `CREATE TABLE ${S}.cursors (fn text NOT NULL, p integer NOT NULL, delivered_ms bigint NOT NULL DEFAULT 0,
       delivered_seq bigint NOT NULL DEFAULT 0, PRIMARY KEY (fn, p))`,
    `INSERT INTO ${S}.cursors (fn, p, delivered_ms, delivered_seq) SELECT fn, p, delivered_ms, delivered_seq FROM ${S}.groups`,
  ],
];

/** The schema version this release writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Creates the schema and applies the migrations it lacks, each in its transaction under an advisory lock on the
 * schema's name (workers starting together wait for each other: CREATE ... IF NOT EXISTS alone races). Refuses a
 * schema migrated by a newer release (ERR_INVALID_ARG_VALUE: it would misread it).
 */
export async function migrate(pool: PgPoolLike, schema: string): Promise<number> {
  const S = schemaIdent('migrate', schema);
  for (;;) {
    const applied = await transaction(pool, async (client) => {
      await run(client, `SELECT pg_advisory_xact_lock(hashtext($1))`, [`velo-stream:${schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${S}.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await run(client, `SELECT coalesce(max(version), 0) AS v FROM ${S}.migrations`);
      const version = Number(rows[0].v);
      if (version > MIGRATIONS.length) {
        throw invalidValue(
          `Postgres schema "${schema}" is at version ${version}, newer than this release's ${MIGRATIONS.length}: upgrade velo-stream`,
        );
      }
      if (version === MIGRATIONS.length) return version;
      for (const statement of MIGRATIONS[version](S)) await client.query(statement);
      await run(client, `INSERT INTO ${S}.migrations (version) VALUES ($1)`, [version + 1]);
      return -1;
    });
    if (applied >= 0) return applied;
  }
}

/** The rows a function's partitions need from the start (leases, heads, groups, cursors), made if missing. */
export async function ensurePartitions(pool: PgPoolLike, S: string, fn: string, partitions: number): Promise<void> {
  for (const table of ['leases', 'heads', 'groups', 'cursors']) {
    await run(
      pool,
      `INSERT INTO ${S}.${table} (fn, p) SELECT $1, g FROM generate_series(0, $2::integer - 1) AS g ON CONFLICT DO NOTHING`,
      [fn, partitions],
    );
  }
}
