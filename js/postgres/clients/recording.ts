// `postgresRecording`: a function's recorded sessions read from Postgres, in the format `exportRecording` writes
// from Redis (redis/common/recording.ts), so the testing kit's `replayRecording` and `velo-replay run --recording`
// take either. Per partition, the same reads as on Redis, from the tables (log/schema.ts): the input the worker had
// read (`entries` up to `cursors`), the outputs, where sessions ended (`ends`, kept with `checkReplay`), and the
// live sessions (`marks`, `checkpoints`, `timers`). All of them in one READ ONLY, REPEATABLE READ transaction: one
// snapshot, so an output, its session's end and the acks of its commit are seen together or not at all, and
// nothing a worker commits meanwhile is half in it. Nothing is written, and the schema is not made or migrated.
import { schemaVersionError } from '../../errors';
import {
  type EntryFields,
  type PartitionRead,
  type RecordedPartition,
  type Recording,
  type RecordingChoice,
  checkChoice,
  compareIds,
  recordedEntry,
  recordedOutput,
  recordedPartition,
  recordingOf,
  tooManyError,
} from '../../durable/common/recording';
import { SCHEMA_VERSION } from '../log/schema';
import { type PgClientLike, type PgPoolLike, connectWatched, idOf, idParts, run, str, text } from '../log/sql';
import { type PoolKey, type PostgresOptions, resolvePgOptions } from './options';

/**
 * Options of `postgresRecording`: the shared options (`pool`, `schema`, `name`, `partitions`; a codec is not used:
 * bytes are recorded as written) and what to record, as `exportRecording` takes it.
 */
export interface PostgresRecordingOptions extends PostgresOptions, RecordingChoice {}

/** Rows per read of entries or outputs (their bytes come whole in each reply). */
const PAGE = 1000;
/** The first schema version with every table read here (`cursors`). */
const FIRST_VERSION = 3;
/** A sid's key, in SQL: the sid (`<key>@<entry id>`) up to its last `@`. */
const SID_KEY = `regexp_replace(sid, '@[^@]*$', '')`;
/** The largest bigint: the end of a range read to the last row. */
const MAX_INT8 = '9223372036854775807';

interface Read {
  /** The entry point, as errors name it. */
  readonly what: string;
  readonly client: PgClientLike;
  readonly S: string;
  readonly fn: string;
  readonly keys: readonly string[] | null;
  readonly since: number;
  readonly maxEntries: number;
  readonly maxOutputs: number;
}

/** A column's value as a field's bytes (none for NULL). */
function put(fields: Map<string, Buffer>, name: string, value: unknown): void {
  if (value !== null && value !== undefined) fields.set(name, Buffer.isBuffer(value) ? value : Buffer.from(str(value)));
}

/** An `entries` row as the stream fields the Redis log keeps (input.ts's `entryOf`). */
function entryFields(r: Record<string, unknown>): EntryFields {
  const f = new Map<string, Buffer>();
  put(f, 'k', r.key);
  put(f, 'c', r.close);
  put(f, 'r', r.reason);
  put(f, 'w', r.wake);
  put(f, 'd', r.due);
  put(f, 'v', r.payload);
  return f;
}

/** An `outputs` row as the stream fields of a Redis output entry. */
function outputFields(r: Record<string, unknown>): EntryFields {
  const f = new Map<string, Buffer>();
  put(f, 'sid', r.sid);
  put(f, 'seq', r.oseq);
  put(f, 'k', r.key);
  put(f, str(r.field) === 'e' ? 'e' : 'v', r.data);
  return f;
}

/**
 * The rows of `sql` (with `$1` fn, `$2` partition, `$3` `$4` the last id read, `$5` the page size, `$6` the keys
 * or null, `$7` `$8` the last id to read), in pages by `(ms, seq)`, from `start` to `end` (both inclusive); more
 * than `max` is refused (`tooManyError` of `items`).
 */
async function pages(
  r: Read,
  sql: string,
  p: number,
  start: readonly [string, string],
  end: readonly [string, string],
  max: number,
  items: 'input entries' | 'outputs',
): Promise<Record<string, unknown>[]> {
  const found: Record<string, unknown>[] = [];
  // (The first page from the id before `start`: `(ms, seq) > (ms, seq - 1)`; seq -1 is below every seq.)
  let after: [string, string] = [start[0], String(BigInt(start[1]) - 1n)];
  for (;;) {
    const { rows } = await run(r.client, sql, [r.fn, p, after[0], after[1], PAGE, r.keys, end[0], end[1]]);
    found.push(...rows);
    if (found.length > max) throw tooManyError(r.what, `partition ${p}`, max, items);
    if (rows.length < PAGE) return found;
    const last = rows[rows.length - 1];
    after = [str(last.ms), str(last.seq)];
  }
}

async function readPartition(r: Read, p: number): Promise<RecordedPartition> {
  const { client, S, fn } = r;
  // Where the retained input starts: entries before it were trimmed (or are before `since`).
  const first = await run(
    client,
    `SELECT ms, seq FROM ${S}.entries WHERE fn = $1 AND p = $2 AND ms >= $3::bigint ORDER BY ms, seq LIMIT 1`,
    [fn, p, String(r.since)],
  );
  const from = first.rows.length > 0 ? idOf(first.rows[0].ms, first.rows[0].seq) : `${r.since}-0`;
  const kept = await run(
    client,
    `SELECT EXISTS (SELECT 1 FROM ${S}.ends WHERE fn = $1 AND p = $2)
            OR EXISTS (SELECT 1 FROM ${S}.checks WHERE fn = $1 AND p = $2) AS kept`,
    [fn, p],
  );
  // (With keys, only their sessions' ends and live sids: a sid is `<key>@<entry id>`. Only the ends of sessions whose
  // first entry is at `from`'s time or later, `ms`: recordedPartition leaves the others out, and the bound counts
  // what is kept.)
  const ends = await run(
    client,
    `SELECT sid, value FROM ${S}.ends WHERE fn = $1 AND p = $2 AND ($4::text[] IS NULL OR ${SID_KEY} = ANY ($4::text[]))
        AND ms >= $5::bigint
      ORDER BY sid LIMIT $3`,
    [fn, p, r.maxEntries + 1, r.keys, idParts(from)[0]],
  );
  if (ends.rows.length > r.maxEntries) throw tooManyError(r.what, `partition ${p}`, r.maxEntries, 'session ends');
  const live = await run(
    client,
    `SELECT sid FROM (SELECT sid FROM ${S}.marks WHERE fn = $1 AND p = $2
                      UNION SELECT sid FROM ${S}.checkpoints WHERE fn = $1 AND p = $2
                      UNION SELECT sid FROM ${S}.timers WHERE fn = $1 AND p = $2) l
      WHERE $4::text[] IS NULL OR ${SID_KEY} = ANY ($4::text[])
      LIMIT $3`,
    [fn, p, r.maxEntries + 1, r.keys],
  );
  if (live.rows.length > r.maxEntries) throw tooManyError(r.what, `partition ${p}`, r.maxEntries, 'live sessions');
  // The outputs from the first entry's time: a session that began there wrote none before it. (With keys, only
  // theirs are read, as only their entries, ends and live sessions are: the bounds count what is recorded.)
  const outputs = await pages(
    r,
    `SELECT ms, seq, sid, oseq, key, field, data FROM ${S}.outputs
      WHERE fn = $1 AND p = $2 AND (ms, seq) > ($3::bigint, $4::bigint) AND (ms, seq) <= ($7::bigint, $8::bigint)
        AND ($6::text[] IS NULL OR key = ANY ($6::text[]))
      ORDER BY ms, seq LIMIT $5`,
    p,
    [idParts(from)[0], '0'],
    [MAX_INT8, MAX_INT8],
    r.maxOutputs,
    'outputs',
  );
  // How far the worker had read: later entries no session had seen.
  const cursor = await run(client, `SELECT delivered_ms, delivered_seq FROM ${S}.cursors WHERE fn = $1 AND p = $2`, [fn, p]);
  const delivered = cursor.rows.length === 0 ? '0-0' : idOf(cursor.rows[0].delivered_ms, cursor.rows[0].delivered_seq);
  const entries =
    compareIds(delivered, from) < 0
      ? []
      : await pages(
          r,
          `SELECT ms, seq, key, payload, close, reason, wake, due FROM ${S}.entries
            WHERE fn = $1 AND p = $2 AND (ms, seq) > ($3::bigint, $4::bigint) AND (ms, seq) <= ($7::bigint, $8::bigint)
              AND ($6::text[] IS NULL OR key = ANY ($6::text[]))
            ORDER BY ms, seq LIMIT $5`,
          p,
          idParts(from),
          idParts(delivered),
          r.maxEntries,
          'input entries',
        );
  const read: PartitionRead = {
    partition: p,
    from,
    delivered,
    endsKept: kept.rows[0].kept === true,
    input: entries.map((e) => recordedEntry(idOf(e.ms, e.seq), entryFields(e))),
    outputs: outputs.map((o) => recordedOutput(idOf(o.ms, o.seq), outputFields(o))),
    ends: ends.rows.map((e) => [str(e.sid), str(e.value)] as const),
    live: live.rows.map((l) => str(l.sid)),
  };
  return recordedPartition(read, r.keys === null ? null : new Set(r.keys));
}

/**
 * Whether the schema holds the function's tables: false when it was never made (nothing recorded); throws
 * `ERR_VELO_SCHEMA_VERSION` for a schema this release cannot read (older than version 3: start a worker of this
 * release to migrate it; or a newer release's that does not keep this one).
 */
async function readable(what: string, client: PgClientLike, S: string, schema: string): Promise<boolean> {
  const made = await run(client, `SELECT to_regclass($1) IS NOT NULL AS made`, [`${S}.migrations`]);
  if (made.rows[0].made !== true) return false;
  const { rows } = await run(client, `SELECT to_jsonb(m) AS m FROM ${S}.migrations m ORDER BY version DESC LIMIT 1`);
  const last = (rows[0]?.m ?? { version: 0 }) as { version: number; keeps?: number | null };
  const version = Number(last.version);
  if (version === 0) return false;
  const keeps = Number(last.keeps ?? version);
  if (version < FIRST_VERSION || keeps > SCHEMA_VERSION) {
    throw schemaVersionError(
      version < FIRST_VERSION
        ? `${what}: Postgres schema "${schema}" is at version ${version}, older than this release reads (${FIRST_VERSION} on): start a worker, producer or reader of this release on it first, which migrates it (docs/postgres.md#upgrading).`
        : `${what}: Postgres schema "${schema}" is at version ${version}, which keeps readers from version ${keeps} on: this release writes version ${SCHEMA_VERSION}. Record it with the release that migrated it.`,
      version,
      SCHEMA_VERSION,
    );
  }
  return true;
}

/** Runs `body` in a READ ONLY, REPEATABLE READ transaction (one snapshot) on a connection of its own. */
async function snapshot<T>(pool: PgPoolLike, body: (client: PgClientLike) => Promise<T>): Promise<T> {
  // (A connection error while the client is out comes as an 'error' event: heard from its checkout on, then the
  // connection is destroyed rather than given back.)
  let lost: Error | undefined;
  const onError = (error: Error) => (lost = error);
  const client = await connectWatched(pool, onError);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      return await body(client);
    } finally {
      // (Read only: nothing to commit. A failed ROLLBACK breaks the connection: not given back.)
      await client.query('ROLLBACK').catch((error: unknown) => (lost ??= error as Error));
    }
  } finally {
    client.removeListener('error', onError);
    client.release(lost);
  }
}

/**
 * Reads a function's recorded sessions from Postgres, as `exportRecording` reads them from Redis and in the same
 * format: per partition, the input its worker had read (events with their ids and bytes, and the markers, ticks
 * and wake-ups among them), the outputs, where sessions ended (kept by workers with `checkReplay: true`) and which
 * sessions were live. Replay a new handler over it with `replayRecording` (`velo-stream/testing`), or write it to
 * a file (`JSON.stringify`) for `velo-replay run --recording`. Read in one snapshot (a READ ONLY, REPEATABLE READ
 * transaction); nothing is written. It holds what the tables retain: workers trim the input every `trimInterval`
 * (set it long, or `0`, on a function you record).
 * @throws {RangeError} `ERR_VELO_RECORDING_TOO_LARGE` when a partition holds more than `maxEntries` input entries,
 * session ends or live sessions, or more than `maxOutputs` outputs, of the keys recorded.
 * @throws {Error} `ERR_VELO_SCHEMA_VERSION` for a schema this release cannot read.
 */
export function postgresRecording(options: PostgresRecordingOptions): Promise<Recording> {
  return pgRecordingOf(options, 'postgresRecording()', 'pool');
}

/** `postgresRecording` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export async function pgRecordingOf(options: PostgresRecordingOptions, what: string, poolKey: PoolKey): Promise<Recording> {
  const o = resolvePgOptions(options, what, ['only', 'keys', 'since', 'maxEntries', 'maxOutputs'], poolKey);
  const choice = checkChoice(what, options, o.partitions);
  // Postgres text holds no NUL: no row can be of such a key, and the reads would fail on it.
  for (const key of choice.keys ?? []) text('The key', key);
  const { S, fn } = o.space;
  const parts = await snapshot(o.pool, async (client) => {
    if (!(await readable(what, client, S, o.schema))) return null;
    const r: Read = { ...choice, what, client, S, fn, keys: choice.keys ?? null };
    const found: RecordedPartition[] = [];
    for (const p of choice.chosen) found.push(await readPartition(r, p));
    return found;
  });
  // A schema never made holds nothing: every partition empty, as a function Redis has never seen.
  const empty = (p: number): RecordedPartition => {
    const from = `${choice.since}-0`;
    return { partition: p, from, delivered: '0-0', endsKept: false, input: [], outputs: [], ends: [], live: [] };
  };
  return recordingOf(fn, o.partitions, choice, parts ?? choice.chosen.map(empty));
}
