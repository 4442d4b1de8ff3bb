// The plumbing every Postgres call of velo-stream goes through: the user's pool as a structural type (no import of
// `pg` at run time: the user brings it), transactions, named (prepared) statements, the server's clock, and entry
// ids. Every statement is parameterized; the only text spliced into SQL is the schema's name, checked to be a plain
// identifier (schema.ts) and quoted.
import { createHash } from 'node:crypto';
import { type NamedStatement, RAW_CLIENT, USER_STATEMENT, begunOf, runBegun } from './begun';
import {
  describe,
  effectsClientError,
  invalidType,
  invalidValue,
  notAPoolError,
  outOfRange,
  poolExhaustedErrorOf,
  poolTooSmallError,
  transactionIdleError,
} from '../../errors';

/** A query's result, as node-postgres gives it. */
export interface PgResult {
  /** The rows, as objects by column name. */
  readonly rows: Record<string, unknown>[];
  /** The rows the statement returned or changed (null for some commands). */
  readonly rowCount: number | null;
  /** The command's tag (`COMMIT`, `ROLLBACK`, `INSERT`, ...). */
  readonly command?: string;
}

/** The part of a node-postgres `PoolClient` velo-stream uses. */
export interface PgClientLike {
  /** Runs a statement given as a config (velo-stream names its statements: prepared once per connection). */
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<PgResult>;
  /** Runs a statement with its parameters (`$1`, `$2`, ...). */
  query(text: string, values?: unknown[]): Promise<PgResult>;
  /** Back to the pool; with an error (or true), the connection is destroyed instead. */
  release(destroy?: boolean | Error): void;
  /** A NOTIFY on a channel this connection LISTENs on. */
  on(event: 'notification', listener: (message: { channel: string; payload?: string | undefined }) => void): unknown;
  /** The connection failed (the server ended the session, the socket closed). */
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** Removes a listener of notifications added with `on`. */
  removeListener(event: 'notification', listener: (message: { channel: string; payload?: string | undefined }) => void): unknown;
  /** Removes a listener of errors added with `on`. (One signature per event, as `on`: pg's own takes any listener.) */
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}

/** The part of a node-postgres `Pool` velo-stream uses (the user's: velo-stream never ends it). */
export interface PgPoolLike {
  /** Runs one statement on a connection of the pool. */
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<PgResult>;
  /** Checks a connection out (for a transaction, or a LISTEN); given back with its `release()`. */
  connect(): Promise<PgClientLike>;
  /** pg.Pool's options; optional. */
  readonly options?: {
    /** The most connections the pool opens: a worker that listens needs 2 or more. */
    readonly max?: unknown;
  };
  /** pg.Pool's count of connections open; optional (reports only). */
  readonly totalCount?: unknown;
  /** pg.Pool's count of connections idle; optional (reports only). */
  readonly idleCount?: unknown;
  /** pg.Pool's count of calls waiting for a connection; optional (reports only). */
  readonly waitingCount?: unknown;
}

/** On a log's gated pool (gate.ts): the user's pool behind it, whose waits are watched (`watchOf`). */
export const RAW_POOL = Symbol('velo.rawPool');

/** The most connections `pool` opens, when it says (pg.Pool's `options.max`). */
export function poolMax(pool: PgPoolLike): number | undefined {
  const max = pool.options?.max;
  return typeof max === 'number' && Number.isFinite(max) ? max : undefined;
}

/**
 * Refuses a pool too small for a worker or limiter that LISTENs (ERR_VELO_POOL_TOO_SMALL): its waits hold one
 * connection of the pool (shared by every worker and limiter on it in the process) and its calls need at least one more.
 */
export function checkPoolSize(what: string, pool: PgPoolLike, listen: boolean): void {
  const max = poolMax(pool);
  if (listen && max !== undefined && max < 2) {
    throw poolTooSmallError(
      `${what}: the pool opens at most ${max} connection${max === 1 ? '' : 's'}: a worker or limiter that listens needs 2 or more (one LISTEN connection per pool in the process, shared by its workers and limiters, and one for its calls). Give the pool a larger "max", or set options.listen to false.`,
    );
  }
}

/** The pool gave no connection within `ms` (ERR_VELO_POOL_EXHAUSTED), with its counts when it says. */
export function poolExhaustedError(pool: PgPoolLike, ms: number): Error {
  const counts = [
    `max ${poolMax(pool) ?? '?'}`,
    `${str(pool.totalCount ?? '?')} open`,
    `${str(pool.idleCount ?? '?')} idle`,
    `${str(pool.waitingCount ?? '?')} waiting`,
  ];
  return poolExhaustedErrorOf(
    `The pool has given velo-stream no connection for ${ms} ms (${counts.join(', ')}): every connection is checked out, or still opening. Give the pool a larger "max" (docs/postgres.md: pool sizing), and a "connectionTimeoutMillis" so that a connection the server does not answer stops opening; velo-stream goes on waiting.`,
  );
}

/**
 * Checks that `pool` looks like a node-postgres Pool: `query()` and `connect()`, and not one connection (a
 * `pg.Client`, or a client checked out of a pool: both carry `connectionParameters`, and the latter `release()`),
 * on which velo-stream's concurrent transactions would interleave (ERR_VELO_NOT_A_POOL). A pool's `connect()`
 * resolves to a client with `release()`: `connectWatched` holds it to that at each checkout. A pool that was ended is
 * refused (ERR_INVALID_ARG_VALUE).
 */
export function checkPool(what: string, pool: unknown): asserts pool is PgPoolLike {
  const p = pool as (Partial<PgPoolLike> & { release?: unknown; connectionParameters?: unknown }) | null;
  if (p === null || typeof p !== 'object' || typeof p.query !== 'function' || typeof p.connect !== 'function') {
    throw invalidType(`${what}: the pool must be a node-postgres Pool (pg.Pool), not ${describe(pool)}`);
  }
  if (typeof p.release === 'function' || (typeof p.connectionParameters === 'object' && p.connectionParameters !== null)) {
    throw notAPoolError(
      `${what}: the pool is a single connection (a pg.Client, or a client checked out of a pool), not a pool: velo-stream runs transactions concurrently, each on a connection of its own, and on one connection they would interleave. Pass a pg.Pool.`,
    );
  } // pg.Pool's end() sets `ending` at once (and `ended` once its connections closed): every later call would fail.
  const ended = pool as { ending?: unknown; ended?: unknown };
  if (ended.ending === true || ended.ended === true) {
    throw invalidValue(`${what}: the pool was ended (pool.end()): pass a pool that is open`);
  }
}

/** How long velo-stream's calls may wait for the pool with none given a connection before it is reported, ms. */
export const POOL_WAIT_MS = 10_000;
/** How often a pool's watch looks at its waits while some are pending, ms. */
const WATCH_TICK_MS = 1000;

/**
 * A pool's waits for a connection, watched by one timer per pool while any is pending (not one per call): the calls
 * of velo-stream that might wait (`mayWait`) count themselves in and out; a tick that finds some pending and none
 * given a connection for POOL_WAIT_MS, while the pool still has calls queued, reports the pool exhausted.
 */
class PoolWatch {
  /** The report paths of the workers on this pool that have an `onError` (`reportPoolWaits`), while they run. */
  readonly reporters = new Set<(error: Error) => void>();
  /** Calls that might wait, pending. */
  waiting = 0;
  /** Of those, the ones that got their connection (or their answer), ever. */
  done = 0;
  /** This episode's report is made: none more until `waiting` is back to 0. */
  reported = false;
  #timer: NodeJS.Timeout | null = null;
  /** `done` at the last tick, and when it last moved (as seen by a tick: never before it did). */
  #seen = 0;
  #movedAt = 0;

  constructor(
    readonly pool: PgPoolLike,
    readonly ms: number,
  ) {}

  /** A call that might wait: counted in, and the ticks started if they are not. */
  enter(): void {
    this.waiting++;
    if (this.#timer !== null) return;
    this.#seen = this.done;
    this.#movedAt = performance.now();
    this.#timer = setInterval(() => this.#tick(), WATCH_TICK_MS);
    // (A wait alone does not keep the process alive for its report.)
    this.#timer.unref();
  }

  /** The call got its connection (or failed): counted out. */
  leave(): void {
    this.done++;
    if (--this.waiting === 0) this.reported = false;
  }

  #tick(): void {
    const now = performance.now();
    if (this.waiting === 0) {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
      return;
    }
    if (this.done !== this.#seen) {
      this.#seen = this.done;
      this.#movedAt = now;
      return;
    }
    // (A pool that says its counts has calls queued for a connection: what is pending waits for the pool, not for
    // a statement of its own.)
    const queued = this.pool.waitingCount;
    if (this.reported || now - this.#movedAt < this.ms || (typeof queued === 'number' && queued === 0)) return;
    this.reported = true;
    const error = poolExhaustedError(this.pool, this.ms);
    if (this.reporters.size === 0) process.emitWarning(error);
    for (const report of [...this.reporters]) report(error);
  }
}

const watches = new WeakMap<PgPoolLike, PoolWatch>();

function watchOf(gated: PgPoolLike): PoolWatch {
  const pool = (gated as { [RAW_POOL]?: PgPoolLike })[RAW_POOL] ?? gated;
  let watch = watches.get(pool);
  if (watch === undefined) {
    watch = new PoolWatch(pool, POOL_WAIT_MS);
    watches.set(pool, watch);
  }
  return watch;
}

/**
 * Reports the waits of velo-stream for a connection of `pool` (ERR_VELO_POOL_EXHAUSTED, once per episode) to
 * `report`, until the function returned is called. Every reporter on the pool hears of every wait (the pool's
 * exhaustion holds every call on it back); with none, a wait is reported as a process warning.
 */
export function reportPoolWaits(pool: PgPoolLike, report: (error: Error) => void): () => void {
  const watch = watchOf(pool);
  // (A function of its own per call: one report path added twice is removed once per call.)
  const reporter = (error: Error) => report(error);
  watch.reporters.add(reporter);
  return () => watch.reporters.delete(reporter);
}

/**
 * Whether a connection asked of `pool` now might wait: false when the pool gives one at once (pg.Pool's counts: an
 * idle connection or room for a new one, for each call queued before it). A pool that does not give its counts
 * (a wrapper) might always. A few property reads: the calls that find a connection pay nothing more.
 */
function mayWait(pool: PgPoolLike): boolean {
  const { waitingCount, idleCount, totalCount } = pool;
  const max = pool.options?.max;
  if (typeof waitingCount !== 'number' || typeof idleCount !== 'number' || typeof totalCount !== 'number') return true;
  return typeof max !== 'number' || waitingCount >= idleCount + max - totalCount;
}

/** The 'error' listener of a checked-out connection. */
export type ConnectionErrors = (error: Error) => void;

/**
 * `pool.connect()`, its wait watched (ERR_VELO_POOL_EXHAUSTED: `PoolWatch`, `reportPoolWaits`), with `onError`
 * listening on the connection from the moment the pool hands it over (`connectListening`); refuses
 * (ERR_VELO_NOT_A_POOL) a `connect()` that gives no client with `release()`. The caller takes `onError` off.
 */
export async function connectWatched(pool: PgPoolLike, onError: ConnectionErrors): Promise<PgClientLike> {
  if (!mayWait(pool)) return connectListening(pool, onError);
  const watch = watchOf(pool);
  watch.enter();
  try {
    return await connectListening(pool, onError);
  } finally {
    watch.leave();
  }
}

/** pg.Pool's `connect` with a callback: the client handed over within the pool's own call. */
type ConnectCallback = (callback: (error: Error | undefined | null, client?: PgClientLike) => void) => unknown;

/**
 * `pool.connect()` with `onError` on the client as the pool hands it over. A connection the server ends as it opens
 * can report that in the same read as its readiness: a listener added in a promise's continuation would come after
 * the 'error' event, and one no listener hears ends the process. pg.Pool's connect takes a callback, which it calls
 * within that read: the listener is on before the rest of it is handled. A log's gated pool passes `onError` on to
 * the user's; another pool (a wrapper's connect()) is listened to when its promise resolves.
 */
export function connectListening(pool: PgPoolLike, onError: ConnectionErrors): Promise<PgClientLike> {
  const gated = pool as PgPoolLike & { [RAW_POOL]?: PgPoolLike };
  if (gated[RAW_POOL] !== undefined) return (gated.connect as (onError: ConnectionErrors) => Promise<PgClientLike>)(onError);
  if (!takesCallback(pool)) return pool.connect().then((client) => listened(client, onError));
  return new Promise((resolve, reject) => {
    (pool.connect as unknown as ConnectCallback).call(pool, (error, client) => {
      if (error !== undefined && error !== null) reject(error);
      else {
        try {
          resolve(listened(client as PgClientLike, onError));
        } catch (refused) {
          reject(refused);
        }
      }
    });
  });
}

/**
 * Whether `pool.connect` is pg.Pool's, which takes a callback: its class's own method (not one set on the pool, as a
 * wrapper or a test's spy sets it), taking an argument.
 */
function takesCallback(pool: PgPoolLike): boolean {
  return !Object.prototype.hasOwnProperty.call(pool, 'connect') && pool.connect.length >= 1;
}

/** A checked-out client (`checkedOut`), with `onError` on it. */
function listened(client: PgClientLike, onError: ConnectionErrors): PgClientLike {
  checkedOut(client).on('error', onError);
  return client;
}

function checkedOut(client: PgClientLike): PgClientLike {
  if (typeof (client as Partial<PgClientLike> | null | undefined)?.release !== 'function') {
    throw notAPoolError(
      `The pool's connect() gave ${describe(client)}, not a client with release(): the pool is a single connection (a pg.Client), not a pool. Pass a pg.Pool.`,
    );
  }
  if (isNativeClient(client)) {
    // Given back unused: nothing of velo-stream is sent on it.
    client.release();
    throw invalidValue(
      "The pool's connections are pg.native's (libpq), which velo-stream does not support: a connection the server ends (an idle limit, pg_terminate_backend, a restart) can crash the process or leave a statement unanswered. Pass a pool of node-postgres' own client (new pg.Pool()).",
    );
  }
  return client;
}

/** Whether `client` is pg.native's: it talks to the server through libpq (`client.native`), not a socket of its own. */
function isNativeClient(client: object): boolean {
  const raw = (client as { [RAW_CLIENT]?: object })[RAW_CLIENT] ?? client;
  const native = (raw as { native?: unknown }).native;
  return native !== null && typeof native === 'object' && typeof (native as { query?: unknown }).query === 'function';
}

/** The server's clock, ms since the epoch (floored, as Redis' TIME is read): every expiry and entry id uses it. */
export const NOW = `floor(extract(epoch from clock_timestamp()) * 1000)::bigint`;

const names = new Map<string, string>();
/** A statement's name, from its text: node-postgres prepares it once per connection. */
function nameOf(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `velo_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

/** A parameterized statement, prepared (named) on its connection; on a pool, its wait watched when it might wait. */
export function run(db: PgClientLike | PgPoolLike, text: string, values: unknown[] = []): Promise<PgResult> {
  const config = { name: nameOf(text), text, values };
  // (A client has release(); a pool, connect() and no release(): checkPool.)
  const pool = db as Partial<PgClientLike> & Partial<PgPoolLike>;
  if (typeof pool.release === 'function' || typeof pool.connect !== 'function' || !mayWait(db as PgPoolLike)) {
    return db.query(config);
  }
  const watch = watchOf(db as PgPoolLike);
  watch.enter();
  const done = () => watch.leave();
  const result = db.query(config);
  result.then(done, done);
  return result;
}

/** The default `idleMs` of `transaction`: the longest a transaction of velo-stream waits between its statements, ms. */
export const IDLE_IN_TRANSACTION_MS = 5000;

/** A transaction's mark, set as it begins: gone once it ended (a setting made with SET LOCAL is the transaction's). */
const MARK = 'SET LOCAL velo.transaction = 1';

/** The failure `MARK_CHECK` says, in its message (22P02: its text made an integer). */
const NO_MARK = 'velo-stream: the transaction was ended';

/**
 * A statement that fails (`markCheckFailed`) unless it runs in a transaction that set MARK. (Only its ELSE
 * makes the text an integer: the settings it reads are not constants the planner would fold.)
 */
export const MARK_CHECK = `SELECT CASE WHEN current_setting('velo.transaction', true) = '1' THEN 1 ELSE ('${NO_MARK}' || coalesce(current_setting('velo.transaction', true), ''))::int END`;

/** Whether `error` is `MARK_CHECK`'s failure. */
export function markCheckFailed(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return e?.code === '22P02' && typeof e.message === 'string' && e.message.includes(NO_MARK);
}

/** The COMMIT of the transaction that set MARK, in one round trip: in another transaction or none, MARK_CHECK fails and the COMMIT is not run. */
const COMMIT_MARKED = `${MARK_CHECK}; COMMIT`;

/** Why a transaction's COMMIT was not run. */
const ENDED_UNDER =
  "the commit's transaction was ended before its COMMIT, by a statement of the effects callback (a COMMIT or " +
  'ROLLBACK in a text whose failure the callback did not wait for): what the commit wrote before that end was ' +
  'committed or rolled back with it, nothing after it was committed, and the commit is retried (it writes nothing ' +
  'twice). Never end the transaction in effects (savepoints are allowed)';

/** Why a transaction was rolled back at its COMMIT. */
const ROLLED_BACK =
  'the commit was rolled back: a statement in its transaction failed and the effects callback went on (it caught ' +
  'the error or did not await the statement); nothing of the commit was written, and it is retried. Let a failed ' +
  "statement's error propagate, or recover with a savepoint (SAVEPOINT, then ROLLBACK TO SAVEPOINT)";

/**
 * Runs `body` in one transaction on a connection of its own (READ COMMITTED: every owner write locks its lease
 * row first, so the ordering is the row locks'). A refusal (a FencedError, a server error) rolls back and gives the
 * connection back; a connection whose BEGIN (or the first statement sent with it) or ROLLBACK failed is destroyed,
 * not given back. On node-postgres the BEGIN goes with `body`'s first statement, in its round trip (begun.ts).
 *
 * `idleMs` (0: none) bounds the time the transaction may wait between statements (`SET LOCAL
 * idle_in_transaction_session_timeout`): a process paused in the middle of one (SIGSTOP, a VM frozen) holds its row
 * locks, and a takeover's `FOR UPDATE` of the lease row, or the next append under the head row, would wait for it
 * to wake; past `idleMs` the server ends its session instead, and nothing of the transaction is committed.
 * `beginIdleMs` (0: none) is the limit set at BEGIN, when `body`'s first statement sets `idleMs` itself once it
 * holds its locks (a commit with effects: commit_9).
 */
export async function transaction<T>(
  pool: PgPoolLike,
  body: (client: PgClientLike) => Promise<T>,
  idleMs = IDLE_IN_TRANSACTION_MS,
  beginIdleMs = idleMs,
): Promise<T> {
  // A checked-out client's connection errors (the server ending the session: `idleMs` past, a restart) come as an
  // 'error' event, which the pool does not listen to while the client is out: unheard, it ends the process. The
  // statement in flight, or the next, fails with it too; then the connection is destroyed (release below). (The
  // first with a code kept: it says why, as 25P03 for the idle timeout or 57P01, which a statement may fail with
  // before a "Connection terminated" without one.)
  let lost: Error | undefined;
  const onError = (error: Error) => {
    if (lost === undefined || (codeOf(lost) === undefined && codeOf(error) !== undefined)) lost = error;
  };
  const client = await connectWatched(pool, onError);
  // (The value is an integer checked by the callers.)
  const lead =
    idleMs > 0 ? ['BEGIN', MARK, `SET LOCAL idle_in_transaction_session_timeout = ${Math.trunc(beginIdleMs)}`] : ['BEGIN', MARK];
  let broken: Error | undefined;
  const Begun = begunOf(client);
  const tx = transactionClient(
    client,
    Begun,
    lead,
    (error) => (broken = error),
    () => lost,
    onError,
  );
  if (Begun === null) {
    try {
      // (One round trip: a simple query may hold two statements.)
      await client.query(lead.join('; '));
    } catch (error) {
      client.removeListener('error', onError);
      client.release(error as Error);
      throw error;
    }
  }
  try {
    const value = await body(tx);
    // A connection that reported an error (the server ended its session) gets no statement more: its transaction
    // is gone, and a client may fail badly on one (pg.native has crashed).
    if (lost !== undefined) throw lost;
    // COMMIT only the transaction this one began: a statement of the body may have ended it (a COMMIT or ROLLBACK
    // the effects client did not see as one), and maybe begun another (AND CHAIN), which the COMMIT would commit
    // in its place. Its mark (MARK) is its own: in another, or in none, the check fails and the COMMIT after it in
    // the same round trip is not run. In a transaction a failed statement aborted (only a failure the body went on
    // after leaves it so: an effects callback that caught it, or did not await it), the check fails with 25P02.
    try {
      await client.query(COMMIT_MARKED);
    } catch (error) {
      if (codeOf(error) === '25P02') throw effectsClientError(ROLLED_BACK);
      throw markCheckFailed(error) ? effectsClientError(ENDED_UNDER) : error;
    }
    return value;
  } catch (error) {
    // (After a failed COMMIT the server has ended the transaction: the ROLLBACK only warns. A connection to be
    // destroyed needs none: the server rolls back what its session leaves.)
    if (broken === undefined && lost === undefined) {
      try {
        await client.query('ROLLBACK');
      } catch (rollback) {
        broken = rollback as Error;
      }
    }
    throw idleEnded(lost, error, idleMs) ?? coded(error, lost);
  } finally {
    client.removeListener('error', onError);
    client.release(broken ?? lost);
  }
}

/**
 * `client` for a transaction's body: its first statement sent after `lead` (BEGIN) in one round trip when it is
 * named (velo-stream's) on node-postgres (`Begun`), else after `lead` on its own (`Begun` null: `lead` was sent
 * already); `failed` is told when that round trip fails (the connection is then destroyed: begun.ts). Once the
 * connection reported an error (`lost`: the server ended its session, by an 'error' event or a statement's FATAL
 * error, told to `onError`), no statement is sent on it: each fails with that error.
 */
function transactionClient(
  client: PgClientLike,
  Begun: ReturnType<typeof begunOf>,
  lead: readonly string[],
  failed: (error: Error) => void,
  lost: () => Error | undefined,
  onError: ConnectionErrors,
): PgClientLike {
  let begun = Begun === null;
  /**
   * A statement's failure that is the server ending the session (57P01 ...) is the connection's too; one without a
   * code once the connection reported why it ended (a "Connection terminated") is that.
   */
  const fatal = (error: unknown): never => {
    if (endsSession(error)) onError(error as Error);
    const gone = lost();
    throw gone !== undefined && codeOf(error) === undefined && codeOf(gone) !== undefined ? gone : error;
  };
  const query = (config: unknown, values?: unknown[]): Promise<PgResult> => {
    const gone = lost();
    if (gone !== undefined) return Promise.reject(gone);
    if (begun) return client.query(config as never, values).catch(fatal);
    begun = true;
    const named = config as (Partial<NamedStatement> & { [USER_STATEMENT]?: true }) | null;
    if (
      Begun !== null &&
      typeof named?.name === 'string' &&
      typeof named.text === 'string' &&
      values === undefined &&
      named[USER_STATEMENT] !== true
    ) {
      return runBegun<PgResult>(client, Begun, lead, named as NamedStatement).catch((error: unknown) => {
        failed(error as Error);
        return fatal(error);
      });
    }
    return client.query(lead.join('; ')).then(
      () => client.query(config as never, values).catch(fatal),
      (error: unknown) => {
        failed(error as Error);
        return fatal(error);
      },
    );
  };
  return {
    query,
    release: (destroy?: boolean | Error) => client.release(destroy),
    on: (event: never, listener: never) => client.on(event, listener),
    removeListener: (event: never, listener: never) => client.removeListener(event, listener),
  };
}

/** An error's code (a SQLSTATE, a Node or velo-stream code), if it has one. */
function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Whether a statement's error is the server ending the session (a FATAL or PANIC): the connection is gone. */
function endsSession(error: unknown): boolean {
  const severity = (error as { severity?: unknown } | null | undefined)?.severity;
  return severity === 'FATAL' || severity === 'PANIC';
}

/**
 * The error a transaction fails with: `error`, or, when it has no code and the connection reported one of its own
 * (`lost`: the server ended the session, 57P01 for one terminated), that one, which says why.
 */
function coded(error: unknown, lost: Error | undefined): unknown {
  if (lost === undefined || typeof (error as { code?: unknown } | null)?.code === 'string') return error;
  return typeof (lost as { code?: unknown }).code === 'string' ? lost : error;
}

/**
 * The server ended the transaction's session for waiting past `idle_in_transaction_session_timeout` (25P03): the
 * failure the transaction's statement met (often node-postgres' "not queryable") said as that, with it as the cause.
 */
function idleEnded(lost: Error | undefined, error: unknown, idleMs: number): Error | undefined {
  const code = (lost as { code?: unknown } | undefined)?.code ?? (error as { code?: unknown } | null)?.code;
  if (code !== '25P03') return undefined;
  return transactionIdleError(
    `The server ended velo-stream's transaction: it waited between two statements longer than its idle_in_transaction_session_timeout (${idleMs} ms; a worker sets half its lease): the effects callback, or the process, was paused that long. Nothing of it was committed; it is retried.`,
    lost ?? error,
  );
}

/** The most a bigint column holds: a seq above it (`idBefore` makes one) reads as it. */
const MAX_INT8 = 9223372036854775807n;

/**
 * An entry id as `[ms, seq]` decimal strings, as Redis reads one (`'0'`, `'<ms>'`, `'<ms>-<seq>'`); past the
 * largest bigint, a part reads as that (only the order matters). Anything else: ERR_INVALID_ARG_VALUE.
 */
export function idParts(id: string): [string, string] {
  const m = typeof id === 'string' ? /^(\d{1,20})(?:-(\d{1,20}))?$/.exec(id) : null;
  if (m === null) throw invalidValue(`An entry id must be "<ms>-<seq>" (decimal), not ${describe(id)}`);
  const clamp = (s: string) => (BigInt(s) > MAX_INT8 ? String(MAX_INT8) : String(BigInt(s)));
  return [clamp(m[1]), clamp(m[2] ?? '0')];
}

/** 2^64: an id as one number is `ms * ID_BASE + seq` (pending's key). */
export const ID_BASE = '18446744073709551616';

/** An id's `[ms, seq]` as one number (decimal), as pending's key `k`. */
export function idKey([ms, seq]: readonly [string, string]): string {
  return String((BigInt(ms) << 64n) + BigInt(seq));
}

/** `<ms>-<seq>` from a row's bigint columns (strings, as node-postgres gives bigints). */
export function idOf(ms: unknown, seq: unknown): string {
  return `${str(ms)}-${str(seq)}`;
}

/** Bytes to store in a bytea column. */
export function bytes(value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value) : value;
}

/** Text for a text column: Postgres text holds no NUL (ERR_INVALID_ARG_VALUE). */
export function text(what: string, value: string): string {
  if (value.includes('\0'))
    throw invalidValue(
      `${what} must not hold a NUL character on Postgres (its text holds none). Received ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value)}`,
    );
  return value;
}

/** A column's value as text (node-postgres gives bigints as strings; bytea as Buffers). */
export function str(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `${value}`;
  if (Buffer.isBuffer(value)) return value.toString();
  return value === null || value === undefined ? '' : JSON.stringify(value);
}

/** A time or a duration, ms, as a bigint parameter: a finite number from `min` on (truncated), else ERR_OUT_OF_RANGE. */
export function millis(what: string, value: number, min: number): bigint {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || Math.abs(value) > Number.MAX_SAFE_INTEGER) {
    throw outOfRange(`${what} must be a number of ms from ${min}, not ${describe(value)}`);
  }
  return BigInt(Math.trunc(value));
}
