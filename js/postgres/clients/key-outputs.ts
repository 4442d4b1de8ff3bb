// Reading the outputs of one key (or of a set of keys) of a distributed stream function on Postgres, from a cursor
// a client hands back: the common layer's key reader (redis/common/key-reader.ts) on a Postgres source. Each read
// is one statement (one snapshot) that reads every partition after its position and says whether that position is
// exact: an output's id, or a place after which no output can be missing. Output ids are given in commit order
// under the partition's group row (log/commit.ts), so a reader that follows `id > position` passes no output still
// to commit. Outputs send no NOTIFY: a reader that caught up polls.
import type { KeyOutputs } from '../../durable/common/clients';
import { describe, invalidType } from '../../errors';
import { integerOption } from '../../validate';
import { compareIds, formatCursor, idBefore } from '../../durable/common/cursor';
import {
  KEY_OPTIONS,
  type KeyPlan,
  type KeyReadOptions,
  KeyReader,
  type KeySource,
  type PartitionRead,
  type Verdict,
  keyOutputs,
  keyPlan,
} from '../../durable/common/key-reader';
import type { OutputItem } from '../../durable/common/outputs';
import { idOf, idParts, run, str, text } from '../log/sql';
import { PoolGate } from '../log/gate';
import { type PgResolved, type PoolKey, type PostgresOptions, resolvePgOptions } from './options';
import { retriedOnConnection } from './retry';
import { pause } from '../../watch-abort';
import { rowItem } from './worker';

export type { KeyOutput, SessionEndInfo } from '../../durable/common/key-reader';

/** Options of `postgresKeyOutputs` (and of `postgresSse`, `postgresNdjson`, which add their own). */
export interface PostgresKeyOutputsOptions<O = unknown> extends PostgresOptions<O>, KeyReadOptions<O>, PostgresKeyOutputsOnly {}

/** A key reader's options on Postgres only (outputs send no notification: a reader that caught up polls). */
export interface PostgresKeyOutputsOnly {
  /** How often a reader that caught up looks for new outputs, ms. Default 100. */
  pollInterval?: number;
}

/** What `postgresKeyOutputs` returns: the outputs as an async iterable, and a disposer for `await using`. */
export interface PostgresKeyOutputs<O = unknown> extends KeyOutputs<O> {
  /** Ends every loop over these outputs (its reading stopped), and resolves once they have ended. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The options of a Postgres key reader, checked. */
export interface PgKeySettings<O> extends KeyPlan<O> {
  o: PgResolved<O>;
  pollInterval: number;
}

/** The option names of `postgresKeyOutputs`. */
export const PG_KEY_OPTIONS = [...KEY_OPTIONS, 'pollInterval'];

/** Refuses a key Postgres cannot store (text holds no NUL): no output can be of it, and a read would fail on it. */
function checkStorable(keys: Iterable<string>): void {
  for (const key of keys) text('The key', key);
}

/**
 * Checks a key reader's options (`own`: the entry point's others), `from` included: it throws `ResumeCursorError`.
 * `storable`: refuse a key with a NUL here (else at the reader's open, as a request's key: 400). `poolKey`: the
 * option that holds the pool.
 */
export function pgKeySettings<O>(
  options: PostgresKeyOutputsOptions<O>,
  what: string,
  own: readonly string[] = PG_KEY_OPTIONS,
  storable = true,
  poolKey: PoolKey = 'pool',
): PgKeySettings<O> {
  const o = resolvePgOptions(options, what, own, poolKey);
  const plan = keyPlan(options, what, o.partitions);
  if (storable) checkStorable(plan.keys);
  const { pollInterval = 100 } = options;
  integerOption(what, 'pollInterval', pollInterval, 1, 60_000, 'from 1 to 60000 (ms)');
  // (Each read answered within the default callTimeout, else its connection destroyed and the read retried: gate.ts.)
  return { ...plan, o: { ...o, pool: new PoolGate(o.pool).pool }, pollInterval };
}

/**
 * Whether reading after `position`, which is not an output's id, is exact (`last`: the newest id the partition
 * gave, `first`: the oldest output kept, `''` if none, `firstSeq`: that output's `seq`, `trimmed`: the newest output
 * a trim removed, `0-0` if none). Trims remove the oldest outputs only, so every output removed is before the first
 * kept. A position before the trim mark had an output after it removed (`trimmed`). Otherwise a position before the
 * first kept is a removed output's id or the place before a removed first output (`trimmed`), but for `0-0`, a
 * position taken when the partition had no output yet, exact when the first kept is its session's first: the trim
 * mark says whether whole sessions were removed; this rule covers trims by version 3's workers, which keep no mark.
 */
export function judgePg(
  position: string,
  last: string,
  first: string,
  firstSeq: number,
  trimmed = '0-0',
): Exclude<Verdict, 'entry'> {
  const c = compareIds(position, last);
  if (c > 0) return 'future';
  // At the partition's newest id: nothing after it was ever written.
  if (c === 0) return 'ok';
  if (compareIds(position, trimmed) < 0) return 'trimmed';
  if (first !== '' && idBefore(first) === position) return 'ok';
  if (first !== '' && compareIds(position, first) > 0) return 'unknown';
  if (position === '0-0' && first !== '' && firstSeq === 1) return 'ok';
  return 'trimmed';
}

/** A key reader's reads on Postgres, on the user's pool (no connection held between reads). */
export class PgKeySource<O> implements KeySource<O> {
  readonly server = 'Postgres';
  readonly #s: PgKeySettings<O>;
  readonly #closed = new AbortController();

  constructor(settings: PgKeySettings<O>) {
    this.#s = settings;
  }

  close(): void {
    this.#closed.abort();
  }

  async open(): Promise<void> {
    // A key from a request (postgresSse, postgresNdjson) no key on Postgres can be: the client's mistake, 400,
    // before any statement (the other readers refused it at the call).
    try {
      checkStorable(this.#s.keys);
    } catch (error) {
      throw Object.assign(error as Error, { status: 400 });
    }
    await retriedOnConnection(() => this.#s.o.prepare(), this.#closed.signal);
  }

  read(positions: readonly string[], count: number): Promise<PartitionRead<O>[]> {
    return retriedOnConnection(() => readAfter(this.#s, positions, count), this.#closed.signal);
  }

  async at(position: string): Promise<OutputItem<O> | null> {
    const s = this.#s;
    const [ms, seq] = idParts(position);
    const { rows } = await retriedOnConnection(
      () =>
        run(
          s.o.pool,
          `SELECT ms, seq, sid, oseq, key, field, data, tp FROM ${s.o.space.S}.outputs
            WHERE fn = $1 AND p = $2 AND ms = $3 AND seq = $4`,
          [s.o.space.fn, s.partitions[0], ms, seq],
        ),
      this.#closed.signal,
    );
    return rows.length === 0 ? null : rowItem(s.o.codec, s.partitions[0], rows[0]);
  }

  wait(): Promise<void> {
    return pause(this.#s.pollInterval, this.#closed.signal);
  }
}

/**
 * One read of every partition of `s` after its position: per partition a row of its state (its newest id, its
 * oldest kept output, whether the position is an output's id), and up to `count` outputs after the position,
 * the data of the keys' only. One statement: one snapshot for the verdict and the outputs.
 */
async function readAfter<O>(s: PgKeySettings<O>, positions: readonly string[], count: number): Promise<PartitionRead<O>[]> {
  const { S, fn } = s.o.space;
  const at = positions.map(idParts);
  const { rows } = await run(
    s.o.pool,
    `WITH c AS (SELECT * FROM unnest($2::integer[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS c(p, ms, seq, i))
     SELECT c.i, 0 AS kind, g.out_ms AS ms, g.out_seq AS seq, f.ms AS first_ms, f.seq AS first_seq, f.oseq AS first_oseq,
            g.trimmed_ms, g.trimmed_seq,
            EXISTS (SELECT 1 FROM ${S}.outputs e WHERE e.fn = $1 AND e.p = c.p AND e.ms = c.ms AND e.seq = c.seq) AS here,
            NULL::text AS sid, NULL::bigint AS oseq, NULL::text AS key, NULL::text AS field, NULL::bytea AS data,
            NULL::text AS tp
       FROM c JOIN ${S}.groups g ON g.fn = $1 AND g.p = c.p
       LEFT JOIN LATERAL (SELECT ms, seq, oseq FROM ${S}.outputs o WHERE o.fn = $1 AND o.p = c.p
                           ORDER BY o.ms, o.seq LIMIT 1) f ON true
     UNION ALL
     SELECT c.i, 1, x.ms, x.seq, NULL, NULL, NULL, NULL, NULL, NULL, x.sid, x.oseq, x.key, x.field::text,
            CASE WHEN x.key = ANY($6::text[]) THEN x.data END, x.tp
       FROM c CROSS JOIN LATERAL (SELECT ms, seq, sid, oseq, key, field, data, tp FROM ${S}.outputs o
                                   WHERE o.fn = $1 AND o.p = c.p AND (o.ms, o.seq) > (c.ms, c.seq)
                                   ORDER BY o.ms, o.seq LIMIT $5) x
     ORDER BY 1, 2, 3, 4`,
    [fn, s.partitions, at.map((x) => x[0]), at.map((x) => x[1]), count, [...s.keys]],
  );
  const reads: PartitionRead<O>[] = s.partitions.map(() => ({ verdict: 'trimmed', last: '0-0', first: '', entries: [] }));
  for (const r of rows) {
    const i = Number(r.i) - 1;
    const read = reads[i];
    if (Number(r.kind) === 0) {
      read.last = idOf(r.ms, r.seq);
      read.first = r.first_ms === null ? '' : idOf(r.first_ms, r.first_seq);
      const trimmed = idOf(r.trimmed_ms, r.trimmed_seq);
      read.verdict = r.here === true ? 'entry' : judgePg(positions[i], read.last, read.first, Number(r.first_oseq), trimmed);
      continue;
    }
    const key = str(r.key);
    const id = idOf(r.ms, r.seq);
    read.entries.push({ id, item: s.keys.has(key) ? rowItem(s.o.codec, s.partitions[i], r) : null });
  }
  return reads;
}

/**
 * The outputs of `options.key` (or of the set `options.keys`) of the function `options.name` on Postgres, as an
 * async iterable: each with its `cursor`, to read on exactly after it later (`from`), as `redisKeyOutputs` gives
 * them. Reads on the pool (one statement per read, no connection held); a reader that caught up looks again every
 * `pollInterval`. A lost connection (the server restarting) is retried and the reading goes on from the same
 * positions: nothing skipped or read twice. The options are checked at the call (a `from` that is no cursor of
 * these keys throws `ResumeCursorError`).
 */
export function postgresKeyOutputs<O = unknown>(options: PostgresKeyOutputsOptions<O>): PostgresKeyOutputs<O> {
  return readPgKeyOutputs(options, 'postgresKeyOutputs()', 'pool');
}

/** `postgresKeyOutputs` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export function readPgKeyOutputs<O>(
  options: PostgresKeyOutputsOptions<O>,
  what: string,
  poolKey: PoolKey,
): PostgresKeyOutputs<O> {
  const settings = pgKeySettings(options, what, PG_KEY_OPTIONS, true, poolKey);
  return keyOutputs(settings, () => new KeyReader(settings, new PgKeySource(settings)));
}

/** Options of `postgresCursor`. */
export interface PostgresCursorOptions extends PostgresOptions<unknown> {
  /** The key (or `keys`) whose readers will take the cursor. */
  key?: string;
  /** The set of keys, instead of `key`. */
  keys?: readonly string[];
}

/**
 * A cursor at the end of the outputs of `options.key` (or `options.keys`) now: a reader given it as `from` reads
 * what is committed after this call. Take it before you send the events whose outputs a client will follow.
 */
export function postgresCursor(options: PostgresCursorOptions): Promise<string> {
  return pgCursorOf(options, 'postgresCursor()', 'pool');
}

/** `postgresCursor` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export async function pgCursorOf(options: PostgresCursorOptions, what: string, poolKey: PoolKey): Promise<string> {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  const s = pgKeySettings(options as PostgresKeyOutputsOptions<unknown>, what, ['key', 'keys'], true, poolKey);
  await s.o.prepare();
  const reads = await readAfter(
    s,
    s.partitions.map(() => '0-0'),
    0,
  );
  return formatCursor(
    s.partitions,
    reads.map(({ last }) => last),
  );
}
