// The partitioned log on Postgres: the `PartitionLog` the engine runs on, over the user's pg.Pool, with the
// semantics of the Redis log (redis-log.ts and its Lua scripts) and the in-memory one (memory-store.ts); the log
// contract test holds all three to the same answers. Tables: schema.ts. Fencing: every owner write reads its
// partition's lease row FOR KEY SHARE in its own transaction and is refused (FencedError) unless the row still holds
// its token unexpired; a grant takes the row FOR UPDATE, so it waits for an owner's write in flight, and a paused
// ex-owner's late write finds the new token. Renewals update the row without a key change, which FOR KEY SHARE lets
// through: a renewal never waits behind a commit.
import { NO_VERSION, type WorkerAdvert } from '../../durable/rules/versions';
import type {
  Commit,
  CommitResult,
  Heartbeat,
  Held,
  InputEntry,
  Lease,
  OutputMark,
  PartitionLog,
  ReadResult,
  Refused,
  SessionOpening,
  Snapshot,
  JournalEntry,
  StoredKeyState,
} from '../../durable/common/transport';
import {
  advertValue,
  journalField,
  markedSnapshot,
  parseAdvert,
  parseJournal,
  parseKept,
  parseMark,
  parseOpening,
  parseSnapshot,
} from '../../durable/common/stored';
import { FencedError, describe, invalidType, outOfRange, schemaVersionError, workerClosedError } from '../../errors';
import { keepOpening } from './openings';
import { ENTRY_COLUMNS, addEntries, addEntriesMany, entryOf } from './input';
import { type CommitEffects, applyCommit } from './commit';
import { inOne } from './commit-one';
import { CommitTurn } from './commit-turn';
import { Upkeep } from './upkeep';
import { SCHEMA_VERSION, checkFunctionName, checkPartitions, ensurePartitions, migrate, schemaIdent } from './schema';
import {
  IDLE_IN_TRANSACTION_MS,
  NOW,
  type PgClientLike,
  type PgPoolLike,
  checkPool,
  idKey,
  idOf,
  idParts,
  millis,
  reportPoolWaits,
  run,
  str,
  transaction,
} from './sql';
import { Waiter, channelOf } from './waiter';
import { Renewals } from './renewals';
import { CALL_TIMEOUT_MS, PoolGate } from './gate';
import { type Fenced, type ReadAsk, readNew, readNewMany, readPending } from './read';

export const READ_FENCED = 'the lease is gone: another worker owns the partition, or it expired';
export const WRITE_FENCED = 'the lease is gone: another worker owns the partition';

/** What a fence found: the server's now, and the lease row (with the group row's columns when it locked that too). */
interface Fence {
  readonly now: bigint;
  readonly group: Record<string, unknown>;
  /** With the group row: the marks (last output seq written) of the sessions asked for, read after its lock. */
  readonly marks?: Map<string, number>;
}

/** What a PgLog needs: the user's pool, the schema (created and migrated), the function's name and partitions. */
export interface PgLogOptions {
  readonly pool: PgPoolLike;
  /** The Postgres schema velo-stream's tables live in (a lower-case identifier); made if missing. */
  readonly schema: string;
  /** The function's name (1-200 characters, no whitespace). */
  readonly name: string;
  readonly partitions: number;
  /**
   * Errors of the log's own LISTEN connection (its waits poll meanwhile), from the log's making to its `close()` the
   * waits of velo-stream for a connection of the pool (ERR_VELO_POOL_EXHAUSTED: sql.ts), and the failures of a
   * transaction shared by several partitions' commits (each is then applied alone: commit-turn.ts).
   */
  readonly onError?: (error: Error) => void;
  /** How often a wait looks for input besides notifications, ms (default 200). */
  readonly pollInterval?: number;
  /**
   * Default true: waits LISTEN on a connection of the pool, held from the first wait to `close()` (the pool needs
   * one more connection than the log's calls). false: waits only poll (behind PgBouncer in transaction mode, where
   * LISTEN does not work).
   */
  readonly listen?: boolean;
  /** Run in each commit's transaction with the outputs it writes (commit.ts): the user's own writes, once each. */
  readonly effects?: CommitEffects;
  /**
   * The longest one of the log's transactions may wait between its statements, ms (sql.ts, `transaction`): a
   * worker sets it to half its lease, so that a paused owner never holds a takeover back. Default 5000.
   */
  readonly idleInTransaction?: number;
  /**
   * The longest one of the log's own statements waits for its answer, ms (Infinity: no bound): past it, its
   * connection is destroyed and it fails with ERR_VELO_POSTGRES_TIMEOUT (gate.ts). Default 10000.
   */
  readonly callTimeout?: number;
}

/** A function's place in Postgres: its quoted schema, its name, its NOTIFY channel. */
export interface PgSpace {
  readonly S: string;
  readonly fn: string;
  readonly channel: string;
}

/** Whether `promise` settled within `ms`. */
async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([
    promise.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms)))),
  ]);
  clearTimeout(timer);
  return done;
}

/** A function's space, checked, without a round trip (`preparePg` also makes its tables and rows). */
export function spaceOf(what: string, schema: string, name: string): PgSpace {
  const S = schemaIdent(what, schema);
  checkFunctionName(what, name);
  return { S, fn: name, channel: channelOf(schema, name) };
}

/** Makes the schema (migrations) and the function's partition rows; its space. */
export async function preparePg(pool: PgPoolLike, schema: string, name: string, partitions: number): Promise<PgSpace> {
  checkPool('PgLog', pool);
  const S = schemaIdent('PgLog', schema);
  checkFunctionName('PgLog', name);
  checkPartitions('PgLog', partitions);
  await migrate(pool, schema);
  await ensurePartitions(pool, S, name, partitions);
  return { S, fn: name, channel: channelOf(schema, name) };
}

/**
 * Appends events to a partition's input in one statement (so one transaction), in order (the producer's append on Postgres): their
 * entry ids. `trace`: the producer's `[traceparent, tracestate]`, kept with each entry.
 */
export async function appendEventsPg(
  pool: PgPoolLike,
  space: PgSpace,
  partition: number,
  events: ReadonlyArray<readonly [string, Buffer | string]>,
  trace?: readonly [string, string],
): Promise<string[]> {
  const rows = events.map(([key, payload]) =>
    trace === undefined ? { key, payload } : { key, payload, traceparent: trace[0], tracestate: trace[1] },
  );
  // (One statement: its own transaction.)
  return addEntries(pool, space.S, space.fn, partition, rows, space.channel);
}

/**
 * Appends events to their partitions' inputs in one statement (so one transaction, whatever the partitions):
 * `partitions[i]` is event i's; each partition's in the order given. Their entry ids, in the order of `events`.
 */
export async function appendEventsManyPg(
  pool: PgPoolLike,
  space: PgSpace,
  partitions: readonly number[],
  events: ReadonlyArray<readonly [string, Buffer | string]>,
  trace?: readonly [string, string],
): Promise<string[]> {
  const rows = events.map(([key, payload]) =>
    trace === undefined ? { key, payload } : { key, payload, traceparent: trace[0], tracestate: trace[1] },
  );
  if (partitions.every((p) => p === partitions[0]))
    return addEntries(pool, space.S, space.fn, partitions[0], rows, space.channel);
  return addEntriesMany(pool, space.S, space.fn, partitions, rows, space.channel);
}

/** A partition's output stream, as XRANGE gives one with Buffer replies: `[id, [field, value, ...]]` (tests). */
export async function outputEntriesPg(pool: PgPoolLike, space: PgSpace, partition: number): Promise<[Buffer, Buffer[]][]> {
  const { rows } = await run(
    pool,
    `SELECT ms, seq, sid, oseq, key, field, data, tp FROM ${space.S}.outputs WHERE fn = $1 AND p = $2 ORDER BY ms, seq`,
    [space.fn, partition],
  );
  return rows.map((r) => {
    const list = ['sid', r.sid, 'seq', r.oseq, 'k', r.key, str(r.field), r.data].map((v) =>
      Buffer.isBuffer(v) ? v : Buffer.from(str(v)),
    );
    if (r.tp !== null) list.push(Buffer.from('t'), Buffer.from(str(r.tp)));
    return [Buffer.from(idOf(r.ms, r.seq)), list];
  });
}

/** The ends a partition keeps for checkReplay: `[sid, "<reason> <last input>"]`, by sid (tests). */
export async function endsPg(pool: PgPoolLike, space: PgSpace, partition: number): Promise<[string, string][]> {
  const { rows } = await run(pool, `SELECT sid, value FROM ${space.S}.ends WHERE fn = $1 AND p = $2 ORDER BY sid`, [
    space.fn,
    partition,
  ]);
  return rows.map((r) => [str(r.sid), str(r.value)]);
}

export class PgLog implements PartitionLog {
  readonly partitions: number;
  readonly #pool: PgPoolLike;
  readonly #S: string;
  readonly #fn: string;
  readonly #channel: string;
  readonly #waiter: Waiter;
  readonly #renewals: Renewals;
  /** The commits in one statement (commit_9), those of one turn together. */
  readonly #commits: CommitTurn;
  /** Lags and trims, those of one turn together. */
  readonly #upkeep: Upkeep;
  /** Per partition, the waiter's mark taken before its last read of new entries (`Waiter.quiet`). */
  readonly #readMarks = new Map<number, string | null>();
  readonly #pollInterval: number;
  readonly #effects: CommitEffects | undefined;
  readonly #idle: number;
  /** Every call of the log goes through it: none after `close()` began, and `close()` waits for those in flight. */
  readonly #gate: PoolGate;
  /** Ends the log's hearing of the pool's waits (`onError` given), at `close()`. */
  readonly #unwatch: () => void;
  #closed = false;

  /** A log on a prepared space (`preparePg`); `PgLog.open` does both. */
  constructor(
    pool: PgPoolLike,
    space: PgSpace,
    partitions: number,
    options: Pick<PgLogOptions, 'onError' | 'pollInterval' | 'listen' | 'effects' | 'idleInTransaction' | 'callTimeout'> = {},
  ) {
    checkPool('PgLog', pool);
    checkPartitions('PgLog', partitions);
    const poll = options.pollInterval ?? 200;
    if (!Number.isSafeInteger(poll) || poll < 1 || poll > 60_000) {
      throw outOfRange(`PgLog: "pollInterval" must be an integer from 1 to 60000 ms, not ${describe(poll)}`);
    }
    const onError = options.onError ?? (() => {});
    if (typeof onError !== 'function') throw invalidType(`PgLog: "onError" must be a function, not ${describe(onError)}`);
    this.#gate = new PoolGate(pool, options.callTimeout);
    this.#pool = this.#gate.pool;
    this.#S = space.S;
    this.#fn = space.fn;
    this.#channel = space.channel;
    this.partitions = partitions;
    this.#pollInterval = poll;
    const listen = options.listen ?? true;
    if (typeof listen !== 'boolean') throw invalidType(`PgLog: "listen" must be a boolean, not ${describe(listen)}`);
    this.#waiter = new Waiter(pool, listen ? space.channel : null, onError, options.callTimeout ?? CALL_TIMEOUT_MS);
    this.#renewals = new Renewals(this.#pool, space.S, space.fn);
    if (options.effects !== undefined && typeof options.effects !== 'function') {
      throw invalidType(`PgLog: "effects" must be a function, not ${describe(options.effects)}`);
    }
    this.#effects = options.effects;
    const idle = options.idleInTransaction ?? IDLE_IN_TRANSACTION_MS;
    if (!Number.isSafeInteger(idle) || idle < 0 || idle > 2 ** 31 - 1) {
      throw outOfRange(`PgLog: "idleInTransaction" must be an integer from 0 to 2^31-1 ms, not ${describe(idle)}`);
    }
    this.#idle = idle;
    this.#upkeep = new Upkeep(this.#pool, space.S, space.fn, WRITE_FENCED);
    this.#commits = new CommitTurn(this.#pool, space.S, space.fn, options.effects, idle, WRITE_FENCED, onError);
    this.#unwatch = options.onError === undefined ? () => {} : reportPoolWaits(pool, onError);
  }

  /** The user's pool behind the log's gate: each statement bounded by `callTimeout`, none once `close()` began. */
  get gated(): PgPoolLike {
    return this.#pool;
  }

  /** Migrates the schema, makes the function's partition rows, and opens a log on them. */
  static async open(options: PgLogOptions): Promise<PgLog> {
    const space = await preparePg(options.pool, options.schema, options.name, options.partitions);
    return new PgLog(options.pool, space, options.partitions, options);
  }

  #part(partition: number): number {
    if (!Number.isSafeInteger(partition) || partition < 0 || partition >= this.partitions) {
      throw outOfRange(`No partition ${describe(partition)} (of ${this.partitions})`);
    }
    return partition;
  }

  /**
   * An owner write's fence: the lease row FOR KEY SHARE, refused unless it holds `lease` unexpired; the server's now.
   * `group`: the partition's group row too, FOR UPDATE, in the same statement (commits).
   */
  async #fence(
    client: PgClientLike,
    lease: Lease,
    message: string,
    group: boolean,
    sids: readonly string[] = [],
  ): Promise<Fence> {
    const p = this.#part(lease.partition);
    const S = this.#S;
    if (group) {
      // One round trip (schema version 4's function): the fence, the group row, and then the marks of `sids`.
      const { rows } = await run(client, `SELECT * FROM ${S}.fence_4($1, $2, $3, $4::text[])`, [this.#fn, p, lease.token, sids]);
      const row = rows[0];
      const now = BigInt(str(row?.o_now ?? 0));
      if (row === undefined || row.o_ok !== true) throw new FencedError(p, message);
      const found = row.o_sids as string[];
      const seqs = row.o_seqs as unknown[];
      return { now, group: row, marks: new Map(found.map((sid, i) => [sid, Number(seqs[i])])) };
    }
    const { rows } = await run(
      client,
      `SELECT token, until_ms, ${NOW} AS now FROM ${S}.leases WHERE fn = $1 AND p = $2 FOR KEY SHARE`,
      [this.#fn, p],
    );
    const row = rows[0];
    const now = BigInt(str(row?.now ?? 0));
    if (row === undefined || row.token !== lease.token || BigInt(str(row.until_ms)) < now) throw new FencedError(p, message);
    return { now, group: row };
  }

  /** An owner's write: its transaction, fenced first (`group`: with the group row locked, see #fence). */
  #owned<T>(
    lease: Lease,
    body: (client: PgClientLike, now: bigint, group: Record<string, unknown>, marks?: Map<string, number>) => Promise<T>,
    message = WRITE_FENCED,
    group = false,
    sids: readonly string[] = [],
  ): Promise<T> {
    if (this.#closed) return Promise.reject(workerClosedError());
    return transaction(
      this.#pool,
      async (client) => {
        const fence = await this.#fence(client, lease, message, group, sids);
        return body(client, fence.now, fence.group, fence.marks);
      },
      this.#idle,
    );
  }

  async heartbeat(worker: string, ttl: number, extend = true, advert: WorkerAdvert = NO_VERSION): Promise<Heartbeat> {
    const S = this.#S;
    const fn = this.#fn;
    const life = str(millis('A registration ttl', ttl, 1));
    // One statement (its own transaction): the expired registrations of others removed, this worker's made or
    // updated (its expiry moved only with `extend`, or when it had run out), and the live ones, soonest expiry first.
    // (Its parts see one snapshot: the list is the others' rows still live and this worker's row as written.)
    // Its expiry is `ttl` from now, but never past the last of its leases': the worker renews its registration with
    // its leases, and a worker that dies must be seen gone once they run out (the others then take its partitions
    // at once), not when a registration renewed a little after them does (statements on separate connections).
    const { rows } = await run(
      this.#pool,
      `WITH c AS (SELECT now, CASE WHEN held > now THEN least(now + $3::bigint, held) ELSE now + $3::bigint END AS until
                    FROM (SELECT ${NOW} AS now, (SELECT max(until_ms) FROM ${S}.leases
                                                  WHERE fn = $1 AND left(token, length($2) + 1) = $2 || ':') AS held) t),
            del AS (DELETE FROM ${S}.workers w USING c WHERE w.fn = $1 AND w.worker <> $2 AND w.until_ms <= c.now),
            mine AS (INSERT INTO ${S}.workers AS w (fn, worker, until_ms, advert) SELECT $1, $2, c.until, $4 FROM c
                     ON CONFLICT (fn, worker) DO UPDATE SET advert = EXCLUDED.advert,
                        until_ms = CASE WHEN $5::boolean OR w.until_ms <= ${NOW} THEN EXCLUDED.until_ms ELSE w.until_ms END
                     RETURNING w.worker, w.until_ms, w.advert)
       SELECT w.worker, w.until_ms, w.advert, c.now FROM ${S}.workers w, c
        WHERE w.fn = $1 AND w.worker <> $2 AND w.until_ms > c.now
       UNION ALL SELECT mine.worker, mine.until_ms, mine.advert, c.now FROM mine, c
       ORDER BY until_ms, worker`,
      [fn, worker, life, advertValue(advert), extend],
    );
    const now = BigInt(str(rows[0].now));
    const adverts = new Map<string, WorkerAdvert>(rows.map((r) => [str(r.worker), parseAdvert(str(r.advert))]));
    const first = rows.slice(0, 2).find((r) => r.worker !== worker);
    const live = rows.length;
    return first === undefined
      ? { live, adverts }
      : { live, next: { worker: str(first.worker), left: Number(BigInt(str(first.until_ms)) - now) }, adverts };
  }

  async leave(worker: string): Promise<void> {
    await run(this.#pool, `DELETE FROM ${this.#S}.workers WHERE fn = $1 AND worker = $2`, [this.#fn, worker]);
  }

  async acquire(
    partition: number,
    worker: string,
    ttl: number,
    runs: readonly string[] = [],
    rescue = false,
  ): Promise<Lease | Held | Refused> {
    const p = this.#part(partition);
    // One statement (schema version 4's function, its own transaction): the lease row FOR UPDATE (it waits for every
    // owner write in flight: they hold the row FOR KEY SHARE), then with it held the live sessions' versions, then
    // the grant (the epoch one up), a refusal, or the holder and the time its lease has left.
    const { rows } = await run(this.#pool, `SELECT * FROM ${this.#S}.acquire_4($1, $2, $3, $4, $5::text[], $6, $7)`, [
      this.#fn,
      p,
      worker,
      str(millis('A lease ttl', ttl, 1)),
      [...runs],
      rescue,
      SCHEMA_VERSION,
    ]);
    const row = rows[0];
    switch (row?.o_kind) {
      case 'granted':
        return { partition: p, token: str(row.o_token) };
      case 'held': {
        const token = str(row.o_token);
        return { holder: token.slice(0, Math.max(0, token.lastIndexOf(':'))), left: Number(row.o_left) };
      }
      case 'refused':
        return { refused: (row.o_refused as string[]).map(str) };
      case 'schema': {
        const found = Number(row.o_left);
        const keeps = Number((row.o_refused as string[])[0]);
        throw schemaVersionError(
          `Postgres schema ${this.#S} is at version ${found}, which keeps workers from version ${keeps} on; this worker's release is at version ${SCHEMA_VERSION}: it takes no partition. Upgrade it to the release that migrated the schema (docs/postgres.md#upgrading).`,
          found,
          SCHEMA_VERSION,
        );
      }
      default:
        throw outOfRange(`No partition ${p} of function ${this.#fn} in Postgres`);
    }
  }

  /** Renews a lease, with the others asked for in the same turn of the event loop in one statement (renewals.ts). */
  renew(lease: Lease, ttl: number): Promise<boolean> {
    try {
      return this.#renewals.renew(this.#part(lease.partition), lease.token, millis('A lease ttl', ttl, 1));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async release(lease: Lease): Promise<void> {
    const p = this.#part(lease.partition);
    await run(
      this.#pool,
      `UPDATE ${this.#S}.leases SET token = NULL, until_ms = 0 WHERE fn = $1 AND p = $2 AND token = $3 AND until_ms >= ${NOW}`,
      [this.#fn, p, lease.token],
    );
  }

  async read(lease: Lease, from: string, count: number): Promise<ReadResult> {
    const S = this.#S;
    const fn = this.#fn;
    const p = this.#part(lease.partition);
    if (!Number.isSafeInteger(count) || count < 1)
      throw outOfRange(`A read's count must be a positive integer, not ${describe(count)}`);
    // (At most READ_ROWS entries a read, and the statement that locks returns a bounded result: read.ts.)
    if (this.#closed) throw workerClosedError();
    const mark = from === '>' ? this.#waiter.mark(p) : null;
    this.#readMarks.delete(p);
    const found =
      from === '>'
        ? await this.#readNew({ p, token: lease.token, limit: count })
        : await readPending(this.#pool, S, fn, p, lease.token, idKey(idParts(from)), count);
    if (!found.ok) throw new FencedError(p, READ_FENCED);
    this.#readMarks.set(p, mark);
    return { entries: found.entries, tail: found.tail };
  }

  /** The reads of new entries asked for in this turn of the event loop, by partition (null: none). */
  #reads: Map<number, { ask: ReadAsk; done: Array<(found: Fenced | Error) => void> }> | null = null;

  /** A read of new entries, with the others asked for in the same turn of the event loop in one statement (`readNewMany`). */
  #readNew(ask: ReadAsk): Promise<Fenced> {
    return new Promise<Fenced>((resolve, reject) => {
      const settle = (found: Fenced | Error) => (found instanceof Error ? reject(found) : resolve(found));
      if (this.#reads === null) {
        this.#reads = new Map();
        setImmediate(() => this.#flushReads());
      }
      const same = this.#reads.get(ask.p);
      // (The same partition twice in a turn: never from one pump; read on its own then.)
      if (same !== undefined) readNew(this.#pool, this.#S, this.#fn, ask.p, ask.token, ask.limit).then(resolve, reject);
      else this.#reads.set(ask.p, { ask, done: [settle] });
    });
  }

  #flushReads(): void {
    const reads = this.#reads;
    this.#reads = null;
    if (reads === null || reads.size === 0) return;
    const list = [...reads.values()];
    const failed = (error: unknown) => {
      for (const r of list) for (const done of r.done) done(error as Error);
    };
    if (list.length === 1) {
      const { ask, done } = list[0];
      readNew(this.#pool, this.#S, this.#fn, ask.p, ask.token, ask.limit).then((found) => done.forEach((d) => d(found)), failed);
      return;
    }
    readNewMany(
      this.#pool,
      this.#S,
      this.#fn,
      list.map((r) => r.ask).sort((a, b) => a.p - b.p),
    ).then((found) => {
      for (const r of list) for (const done of r.done) done(found.get(r.ask.p) ?? { ok: false });
    }, failed);
  }

  async entries(lease: Lease, ids: readonly string[]): Promise<InputEntry[]> {
    const p = this.#part(lease.partition);
    if (ids.length === 0) return [];
    const parts = ids.map(idParts);
    const { rows } = await run(
      this.#pool,
      `SELECT e.ms, e.seq, ${ENTRY_COLUMNS.replace(/(\w+)/g, 'e.$1')}
         FROM ${this.#S}.entries e JOIN unnest($3::bigint[], $4::bigint[]) AS w(ms, seq) ON e.ms = w.ms AND e.seq = w.seq
        WHERE e.fn = $1 AND e.p = $2`,
      [this.#fn, p, parts.map((x) => x[0]), parts.map((x) => x[1])],
    );
    const found = new Map(rows.map((r) => [idOf(r.ms, r.seq), r]));
    return ids.map((id, i) => {
      const row = found.get(`${parts[i][0]}-${parts[i][1]}`);
      return row === undefined ? { id, key: '' } : entryOf(id, row);
    });
  }

  async markClose(lease: Lease, key: string, sid: string, reason?: string): Promise<string> {
    return this.#owned(lease, async (client) => {
      const entry = reason === undefined ? { key, close: sid } : { key, close: sid, reason };
      return (await addEntries(client, this.#S, this.#fn, lease.partition, [entry], this.#channel))[0];
    });
  }

  async trim(lease: Lease): Promise<number> {
    if (this.#closed) throw workerClosedError();
    // (With the other partitions' trims of this turn: upkeep.ts.)
    return this.#upkeep.trim(this.#part(lease.partition), lease.token);
  }

  /**
   * No consumer group reads the outputs on Postgres (readers keep their own cursors), so `acked` removes nothing, as
   * on a Redis stream without groups; `maxLen` > 0 keeps exactly the newest `maxLen` (Redis' `~` keeps at least).
   */
  async trimOutputs(lease: Lease, _acked: boolean, maxLen: number): Promise<number> {
    const S = this.#S;
    return this.#owned(lease, async (client) => {
      if (!(maxLen > 0)) return 0;
      // The newest output removed is kept as the partition's trim mark (groups.trimmed_*): readers judge a position
      // before the oldest kept by it (judgePg).
      const { rows } = await run(
        client,
        `WITH c AS (SELECT ms, seq FROM ${S}.outputs WHERE fn = $1 AND p = $2 ORDER BY ms DESC, seq DESC OFFSET $3 LIMIT 1),
              d AS (DELETE FROM ${S}.outputs o USING c WHERE o.fn = $1 AND o.p = $2 AND (o.ms, o.seq) <= (c.ms, c.seq)
                    RETURNING o.ms),
              m AS (UPDATE ${S}.groups g SET trimmed_ms = c.ms, trimmed_seq = c.seq FROM c
                     WHERE g.fn = $1 AND g.p = $2 AND EXISTS (SELECT 1 FROM d) AND (c.ms, c.seq) > (g.trimmed_ms, g.trimmed_seq))
         SELECT count(*)::int AS n FROM d`,
        [this.#fn, lease.partition, Math.trunc(maxLen)],
      );
      return Number(rows[0].n);
    });
  }

  async wake(
    lease: Lease,
    key: string,
    sid: string,
    id: number,
    time: number,
    payload: Buffer | string,
    opening?: SessionOpening,
  ): Promise<string | number> {
    const S = this.#S;
    const fn = this.#fn;
    const p = lease.partition;
    this.#openingsRead.delete(p);
    return this.#owned(
      lease,
      async (client, now) => {
        const due = millis("A wake-up's time", time, 0);
        if (now < due) return Number(due - now);
        const fired = await run(
          client,
          `INSERT INTO ${S}.timers (fn, p, sid, id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
          [fn, p, sid, id],
        );
        if (fired.rowCount === 0) return '';
        if (opening !== undefined) await keepOpening(client, S, fn, p, opening);
        const entry = { key, wake: `${sid} ${id}`, due: time, payload };
        return (await addEntries(client, S, fn, p, [entry], this.#channel))[0];
        // With an opening to keep, the group row first (FOR UPDATE), as a commit's fence takes it: the openings and
        // version counts of the partition are then written by one transaction at a time (in their own orders, a
        // wake-up's and a commit's would deadlock).
      },
      WRITE_FENCED,
      opening !== undefined,
    );
  }

  async keyState(partition: number, key: string): Promise<StoredKeyState | null> {
    const p = this.#part(partition);
    const { rows } = await run(
      this.#pool,
      `SELECT value FROM ${this.#S}.kept WHERE fn = $1 AND p = $2 AND key = $3 AND until_ms >= ${NOW}`,
      [this.#fn, p, key],
    );
    return rows.length === 0 ? null : parseKept(rows[0].value as Buffer);
  }

  async journal(lease: Lease): Promise<JournalEntry[]> {
    const p = this.#part(lease.partition);
    const { rows } = await run(this.#pool, `SELECT sid, at, value FROM ${this.#S}.journal WHERE fn = $1 AND p = $2`, [
      this.#fn,
      p,
    ]);
    const found: JournalEntry[] = [];
    for (const r of rows) {
      const entry = parseJournal(journalField(str(r.sid), str(r.at)), r.value as Buffer);
      if (entry !== undefined) found.push(entry);
    }
    return found;
  }

  async snapshots(lease: Lease): Promise<Snapshot[]> {
    const p = this.#part(lease.partition);
    // With the partition's openings, in one statement: a takeover reads its openings right after its snapshots
    // (`openings`, which takes these), and nobody but the lease's holder writes either.
    const { rows } = await run(
      this.#pool,
      `SELECT 0 AS kind, c.sid, c.value, coalesce(m.seq, 0) AS written, m.place FROM ${this.#S}.checkpoints c
         LEFT JOIN ${this.#S}.marks m ON m.fn = c.fn AND m.p = c.p AND m.sid = c.sid
        WHERE c.fn = $1 AND c.p = $2
       UNION ALL
       SELECT 1, o.sid, convert_to(o.value, 'UTF8'), NULL, NULL FROM ${this.#S}.openings o WHERE o.fn = $1 AND o.p = $2`,
      [this.#fn, p],
    );
    this.#openingsRead.set(p, {
      token: lease.token,
      at: performance.now(),
      rows: rows.filter((r) => Number(r.kind) === 1).map((r) => ({ sid: r.sid, value: (r.value as Buffer).toString() })),
    });
    return rows
      .filter((r) => Number(r.kind) === 0)
      .map((r) =>
        markedSnapshot(
          parseSnapshot(str(r.sid), r.value as Buffer),
          parseMark(Number(r.written), r.place === null ? null : str(r.place)),
        ),
      );
  }

  /**
   * The openings each partition's last `snapshots` read, for the `openings` of the same lease right after it (a
   * commit or a wake-up of the partition, which may keep an opening, drops them).
   */
  readonly #openingsRead = new Map<number, { token: string; at: number; rows: Record<string, unknown>[] }>();

  async marks(lease: Lease, sids: readonly string[]): Promise<Map<string, OutputMark>> {
    const p = this.#part(lease.partition);
    const { rows } = await run(
      this.#pool,
      `SELECT sid, seq, place FROM ${this.#S}.marks WHERE fn = $1 AND p = $2 AND sid = ANY($3::text[])`,
      [this.#fn, p, [...sids]],
    );
    const found = new Map<string, OutputMark>();
    for (const r of rows) found.set(str(r.sid), parseMark(Number(r.seq), r.place === null ? null : str(r.place)));
    return found;
  }

  async openings(lease: Lease): Promise<Map<string, SessionOpening>> {
    const p = this.#part(lease.partition);
    const read = this.#openingsRead.get(p);
    this.#openingsRead.delete(p);
    const { rows } =
      read !== undefined && read.token === lease.token && performance.now() - read.at < 1000
        ? read
        : await run(this.#pool, `SELECT sid, value FROM ${this.#S}.openings WHERE fn = $1 AND p = $2`, [this.#fn, p]);
    const found = new Map<string, SessionOpening>();
    for (const r of rows) {
      const opening = parseOpening(str(r.sid), str(r.value));
      if (opening !== undefined) found.set(str(r.sid), opening);
    }
    return found;
  }

  async commit(lease: Lease, commit: Commit): Promise<CommitResult> {
    this.#openingsRead.delete(lease.partition);
    // (A commit that journals too: commit_9 takes its entries.)
    if (inOne(commit)) {
      if (this.#closed) throw workerClosedError();
      return this.#commits.commit({ ...lease, partition: this.#part(lease.partition) }, commit);
    }
    // The marks the commit needs (its outputs' sessions and the ended ones) come with the fence: one round trip.
    const sids = [...new Set([...commit.outputs.map((o) => o.sid), ...commit.ended])];
    return this.#owned(
      lease,
      (client, now, group, marks) => applyCommit(client, this.#S, this.#fn, lease, commit, now, group, this.#effects, marks),
      WRITE_FENCED,
      true,
      sids,
    );
  }

  async pinned(partition: number): Promise<number> {
    // The worker measures a partition's lag and then its pinned age: `lag` read both, just now (upkeep.ts).
    return this.#upkeep.pinned(this.#part(partition));
  }

  async lag(partition: number): Promise<number> {
    // (With the other partitions' lags of this turn, and their pinned ages: upkeep.ts.)
    return this.#upkeep.lag(this.#part(partition));
  }

  async wait(positions: ReadonlyMap<number, string>, ms: number): Promise<number[]> {
    if (positions.size === 0 || this.#closed) return [];
    const ps = [...positions.keys()].map((p) => this.#part(p));
    const ids = [...positions.values()].map(idParts);
    const check = async () => {
      const { rows } = await run(
        this.#pool,
        `SELECT w.p FROM unnest($2::integer[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS w(p, ms, seq, i)
          WHERE EXISTS (SELECT 1 FROM ${this.#S}.entries e WHERE e.fn = $1 AND e.p = w.p AND (e.ms, e.seq) > (w.ms, w.seq))
          ORDER BY w.i`,
        [this.#fn, ps, ids.map((x) => x[0]), ids.map((x) => x[1])],
      );
      return rows.map((r) => Number(r.p));
    };
    // A wait right after a read that found all there was (the engine's idle partitions) need not look at once, and
    // ends at once with those a notification since named an entry after the position of.
    const quiet = ps.filter((p) => this.#waiter.quiet(p, this.#readMarks.get(p)));
    const at = new Map([...positions].map(([p, id]) => [this.#part(p), id]));
    const ready = quiet.filter((p) => this.#waiter.heardAfter(p, at.get(p) as string));
    if (ready.length > 0) return ready;
    const now = quiet.length < ps.length;
    return this.#waiter.wait(at, ms, this.#pollInterval, now, check);
  }

  interrupt(): Promise<void> {
    this.#waiter.interrupt();
    return Promise.resolve();
  }

  /**
   * Refuses calls from here on (ERR_VELO_CLOSED); resolves once its waits ended and none of its calls is in flight.
   * Past `wait` ms, the connections its calls still use are destroyed (their transactions roll back; an `effects`
   * statement still running is cut) and it resolves once those calls failed, so that nothing of the log is left on
   * the pool (but a wrapper pool's own statement, which it cannot reach: waited for as long again at most).
   */
  async close(wait = Infinity): Promise<void> {
    this.#closed = true;
    this.#unwatch();
    if (wait === Infinity) {
      await this.#waiter.close();
      return this.#gate.close();
    }
    const until = performance.now() + Math.max(0, wait);
    const left = () => Math.max(0, until - performance.now());
    // (Its LISTEN connection may still be opening: that is the pool's to bound, not waited for past the deadline.)
    await within(this.#waiter.close(), left());
    const closed = this.#gate.close();
    if (await within(closed, left())) return;
    this.#gate.abort();
    await within(closed, wait);
  }
}
