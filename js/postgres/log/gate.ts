// A log's door to the user's pool: every call of the log goes through it, counted while in flight (a statement until
// it settles, a checked-out connection until its release), and none starts once the log is closing (ERR_VELO_CLOSED,
// without touching the pool). `close()` resolves once nothing is in flight: the user may end the pool right after a
// worker's close() resolved, and no call of velo-stream meets the ended pool.
//
// Each statement of velo-stream's own gets an answer within `callTimeout`, or fails with ERR_VELO_POSTGRES_TIMEOUT
// and its connection is destroyed: a server that vanished without a word (a host gone, a network that drops
// packets) leaves a socket open that answers nothing until the system's TCP timeout, a quarter of an hour. The
// statements of the user's `effects` (marked `USER_STATEMENT` by the effects client) are not bounded: a long one of
// theirs is allowed, and its connection is destroyed only once the server says its process ended or waits for it.
// Waiting for a connection of the pool is the pool's own (`connectionTimeoutMillis`).
import { postgresTimeoutError, workerClosedError } from '../../errors';
import { IoDeadline } from '../../io-deadline';
import { RAW_CLIENT, USER_STATEMENT } from './begun';
import { type ConnectionErrors, type PgClientLike, type PgPoolLike, type PgResult, RAW_POOL, connectListening } from './sql';

export { USER_STATEMENT };

/** The default `callTimeout` of the log's statements, ms. */
export const CALL_TIMEOUT_MS = 10_000;

type Statement = { name?: string; text: string; values?: unknown[] };
/** A statement node-postgres runs by its callback (begun.ts's `Begun`). */
type Submittable = { submit: unknown; callback?: (error: Error | null, result: unknown) => void };

/** node-postgres' `Query`, as `Watched` extends it. */
type PgQueryClass = new (config: Statement) => { submit(connection: PgConnection): unknown };
/** The part of a node-postgres connection a timeout uses: its socket. */
type PgConnection = { stream?: { destroy?: unknown } };
/** A statement that calls `sent` with its connection as node-postgres sends it (for the pool's own `query()`). */
type WatchedClass = new (config: Statement, sent: (connection: PgConnection) => void) => Statement;

/** `Watched` per node-postgres `Query` class (one per copy of pg in the process), or null for a pool without one. */
const watched = new WeakMap<object, WatchedClass>();

/** The `Watched` of `pool`'s own node-postgres (pg.Pool's `Client.Query`), or null when it is not pg.Pool. */
function watchedOf(pool: PgPoolLike): WatchedClass | null {
  const Query = (pool as { Client?: { Query?: unknown } }).Client?.Query;
  if (typeof Query !== 'function' || typeof (Query.prototype as { submit?: unknown } | undefined)?.submit !== 'function') {
    return null;
  }
  let Watched = watched.get(Query);
  if (Watched === undefined) {
    Watched = class Watched extends (Query as PgQueryClass) {
      readonly #sent: (connection: PgConnection) => void;
      constructor(config: Statement, sent: (connection: PgConnection) => void) {
        super(config);
        this.#sent = sent;
      }
      override submit(connection: PgConnection): unknown {
        this.#sent(connection);
        return super.submit(connection);
      }
    } as unknown as WatchedClass;
    watched.set(Query, Watched);
  }
  return Watched;
}

/** Destroys a node-postgres connection's socket: its statements in flight fail at once. */
function destroy(connection: PgConnection | undefined): void {
  const stream = connection?.stream;
  if (typeof stream?.destroy === 'function') (stream.destroy as () => void)();
}

/** Destroys `client`'s socket (node-postgres' `connection.stream`): its statements in flight fail at once. */
function cut(client: PgClientLike): void {
  const raw = (client as { [RAW_CLIENT]?: object })[RAW_CLIENT] ?? client;
  destroy((raw as { connection?: PgConnection }).connection);
}

/** What a timeout names: the statement's first words (its prepared name only without a text). */
function statementOf(config: unknown): string {
  const c = config as Partial<Statement> | string;
  const text = (typeof c === 'string' ? c : (c.text ?? c.name ?? '')).replace(/\s+/g, ' ').trim();
  return `velo-stream's statement ${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text)}`;
}

/**
 * One statement's bound: armed when it is sent, with what destroys its connection. Past `ms` (judged after the
 * sockets' ready answers were read: `IoDeadline`), the connection is destroyed and the statement fails with ERR_VELO_POSTGRES_TIMEOUT instead of its own failure ("Connection
 * terminated", which the destruction caused).
 */
class Deadline {
  #timer: IoDeadline | undefined;
  #timedOut: Error | undefined;
  constructor(
    readonly ms: number,
    readonly statement: unknown,
  ) {}

  /** From now: past `ms`, `destroyConnection` (null: the connection cannot be reached) after `onTimeout`. */
  arm(destroyConnection: (() => void) | null, onTimeout?: (error: Error) => void): void {
    this.#timer = new IoDeadline(() => {
      const what = statementOf(this.statement);
      this.#timedOut = postgresTimeoutError(
        this.ms,
        destroyConnection === null ? what : `${what} (its connection was destroyed)`,
      );
      onTimeout?.(this.#timedOut);
      destroyConnection?.();
    }, this.ms);
  }

  /** The statement answered (`error`: its failure, if it failed): what its caller gets. */
  settled<E>(error: E): E | Error {
    this.#timer?.clear();
    return error === null || error === undefined ? error : (this.#timedOut ?? error);
  }

  settle<T>(call: Promise<T>): Promise<T> {
    return call.then(
      (result) => {
        this.#timer?.clear();
        return result;
      },
      (error: unknown) => {
        throw this.settled(error);
      },
    );
  }
}

/**
 * `config` on `client` (a checked-out connection) within `ms` (`Deadline`); `onTimeout` is told the timeout error
 * before the connection is destroyed. A submittable (begun.ts) answers through its callback, which gets the same.
 */
export function queryWithin(
  client: PgClientLike,
  config: unknown,
  values: unknown[] | undefined,
  ms: number,
  onTimeout?: (error: Error) => void,
): Promise<PgResult> {
  const deadline = new Deadline(ms, config);
  deadline.arm(() => cut(client), onTimeout);
  const submittable = config as Submittable;
  if (typeof submittable.submit !== 'function') return deadline.settle(client.query(config as never, values));
  const callback = submittable.callback;
  submittable.callback = (error, result) => {
    const failed = deadline.settled(error);
    callback?.(failed, result);
  };
  return client.query(config as never, values);
}

/**
 * Whether the asking connection sees its own process (`$3`: it is no pooler's), and server process `$1` lives
 * (`found`) and has waited for its client's next statement for `$2` ms or more (`waiting`: idle, or idle in a
 * transaction).
 */
const PROCESS_STATE = `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $3) AS seen,
  EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1) AS found,
  EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state LIKE 'idle%'
            AND clock_timestamp() - state_change >= $2::double precision * interval '1 millisecond') AS waiting`;

export class PoolGate {
  /** The pool the log calls: the user's, behind the door. */
  readonly pool: PgPoolLike;
  readonly #inflight = new Set<Promise<void>>();
  /** Per connection in use (checked out, or under a statement of the pool's own `query()`), what destroys it. */
  readonly #inUse = new Set<() => void>();
  readonly #ms: number;
  #closed = false;
  /** `abort()` destroyed the connections in use: what failed on them fails as closed (ERR_VELO_CLOSED). */
  #aborted = false;

  /** `callTimeout`: ms (Infinity: none). */
  constructor(raw: PgPoolLike, callTimeout = CALL_TIMEOUT_MS) {
    this.#ms = callTimeout;
    this.pool = {
      [RAW_POOL]: raw,
      query: (config: Statement | string, values?: unknown[]): Promise<PgResult> => {
        if (this.#closed) return Promise.reject(workerClosedError());
        const statement = typeof config === 'string' ? { text: config, values } : config;
        return this.#track(this.#closedOnAbort(this.#poolQuery(raw, statement)));
      },
      // (`onError` on the user's client as its pool hands it over: sql.ts, connectListening.)
      connect: async (onError?: ConnectionErrors): Promise<PgClientLike> => {
        if (this.#closed) throw workerClosedError();
        let done = () => {};
        const held = new Promise<void>((resolve) => (done = resolve));
        this.#add(held);
        let client: PgClientLike;
        try {
          client = onError === undefined ? await raw.connect() : await connectListening(raw, onError);
        } catch (error) {
          done();
          throw error;
        }
        if (this.#aborted) {
          // (Handed over after abort(): a checkout queued before it starts nothing.)
          done();
          client.release(true);
          throw workerClosedError();
        }
        const destroyIt = () => cut(client);
        this.#inUse.add(destroyIt);
        // (What velo-stream uses of a client: its release ends the checkout's count. The client itself, for begun.ts.)
        const gated: PgClientLike & { [RAW_CLIENT]: PgClientLike } = {
          [RAW_CLIENT]: client,
          query: (config: never, values?: unknown[]) =>
            this.#closedOnAbort(
              this.#ms === Infinity
                ? client.query(config, values)
                : (config as { [USER_STATEMENT]?: true })[USER_STATEMENT] === true
                  ? this.#userQuery(raw, client, config, values)
                  : queryWithin(client, config, values, this.#ms),
            ),
          release: (destroy?: boolean | Error) => {
            this.#inUse.delete(destroyIt);
            done();
            client.release(this.#aborted ? true : destroy);
          },
          on: (event: never, listener: never) => client.on(event, listener),
          removeListener: (event: never, listener: never) => client.removeListener(event, listener),
        };
        return gated;
      },
      get options() {
        return raw.options;
      },
      get totalCount() {
        return raw.totalCount;
      },
      get idleCount() {
        return raw.idleCount;
      },
      get waitingCount() {
        return raw.waitingCount;
      },
    } as PgPoolLike;
  }

  /**
   * A statement of the user's `effects` on `client`: not bounded, but once it has waited `callTimeout`, and then as
   * often, the server is asked (on another connection of `raw`, `#processState`) about the connection's process:
   * one that ended, or that has waited for this client's next statement for `callTimeout` while this client waits
   * for its answer, means the connection went silent; it is destroyed, and the statement fails with
   * ERR_VELO_POSTGRES_TIMEOUT. A process running the statement (or waiting on a lock, or sending its rows) is left
   * to it, and so is one the server cannot be asked about.
   */
  #userQuery(raw: PgPoolLike, client: PgClientLike, config: unknown, values?: unknown[]): Promise<PgResult> {
    const pid = (client as { processID?: unknown }).processID;
    const call = client.query(config as never, values);
    if (typeof pid !== 'number') return call;
    let timer: NodeJS.Timeout | undefined;
    let lost: Error | undefined;
    let settled = false;
    const look = () => {
      if (this.#aborted) return;
      this.#track(this.#processState(raw, pid)).then(
        (state) => {
          if (settled) return;
          if (state !== 'lost') return void (timer = setTimeout(look, this.#ms));
          lost = postgresTimeoutError(
            this.#ms,
            'A statement of effects: its connection went silent (its server process ended, or waits for it), and was destroyed',
          );
          cut(client);
        },
        // (The server not reached: asked again later.)
        () => {
          if (!settled) timer = setTimeout(look, this.#ms);
        },
      );
    };
    timer = setTimeout(look, this.#ms);
    return call.then(
      (result) => {
        settled = true;
        clearTimeout(timer);
        return result;
      },
      (error: unknown) => {
        settled = true;
        clearTimeout(timer);
        throw lost ?? error;
      },
    );
  }

  /**
   * Server process `pid` as seen from a connection of `raw`: 'lost' when it ended or has waited for its client for
   * `callTimeout`, 'running' otherwise; 'unknown' when the asking connection cannot see its own process (a pooler
   * such as PgBouncer gives a client an id of its own, which names no server process).
   */
  async #processState(raw: PgPoolLike, pid: number): Promise<'lost' | 'running' | 'unknown'> {
    let lost: Error | undefined;
    const onError = (error: Error) => (lost ??= error);
    const client = await connectListening(raw, onError);
    const destroyIt = () => cut(client);
    this.#inUse.add(destroyIt);
    let failed: Error | undefined;
    try {
      const self = (client as { processID?: unknown }).processID;
      const statement = { text: PROCESS_STATE, values: [pid, this.#ms, typeof self === 'number' ? self : -1] };
      const row = (await queryWithin(client, statement, undefined, this.#ms)).rows[0];
      if (row?.seen !== true) return 'unknown';
      return row.found !== true || row.waiting === true ? 'lost' : 'running';
    } catch (error) {
      failed = error as Error;
      throw error;
    } finally {
      this.#inUse.delete(destroyIt);
      client.removeListener('error', onError);
      client.release(failed ?? lost ?? this.#aborted);
    }
  }

  /**
   * A statement by `raw`'s own `query()`, bounded as `queryWithin`. On pg.Pool, from when it is sent (a wait for the
   * pool's connection is the pool's), through `Watched`: past the bound its connection is destroyed (the pool then
   * opens another). On another pool (a wrapper), from the call: past the bound it fails, and its connection is left
   * to the wrapper, which velo-stream cannot reach.
   */
  #poolQuery(raw: PgPoolLike, statement: Statement): Promise<PgResult> {
    const deadline = new Deadline(this.#ms, statement);
    const bounded = this.#ms !== Infinity;
    const Watched = watchedOf(raw);
    if (Watched === null) {
      if (!bounded) return raw.query(statement);
      deadline.arm(null);
      return deadline.settle(raw.query(statement));
    }
    // (Unbounded too, its connection is known while in use: `abort()` destroys it.)
    let destroyIt = () => {};
    const call = raw.query(
      new Watched(statement, (connection) => {
        destroyIt = () => destroy(connection);
        this.#inUse.add(destroyIt);
        if (bounded) deadline.arm(destroyIt);
        // (Sent after abort(): a statement queued for a connection before it fails at once.)
        if (this.#aborted) destroyIt();
      }),
    );
    const settled = () => this.#inUse.delete(destroyIt);
    call.then(settled, settled);
    return deadline.settle(call);
  }

  /**
   * `call`, whose failure after `abort()` is that of a closed log (ERR_VELO_CLOSED): the abort's, not reported. (A
   * submittable's `query()` gives the submittable itself, which answers through its callback: left as it is.)
   */
  #closedOnAbort<T>(call: Promise<T>): Promise<T> {
    if (typeof (call as Partial<Promise<T>> | undefined)?.catch !== 'function') return call;
    return call.catch((error: unknown) => {
      throw this.#aborted ? workerClosedError() : error;
    });
  }

  #add(settled: Promise<void>): void {
    this.#inflight.add(settled);
    void settled.then(() => this.#inflight.delete(settled));
  }

  #track<T>(call: Promise<T>): Promise<T> {
    this.#add(
      call.then(
        () => {},
        () => {},
      ),
    );
    return call;
  }

  /** No call starts from here on; resolves once none is in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
  }

  /**
   * No call starts from here on, and every connection in use is destroyed: what runs on them fails at once (a
   * transaction rolls back), as ERR_VELO_CLOSED. For a close that stopped waiting; `close()` then resolves soon after.
   * (A wrapper pool's own `query()` cannot be reached: it settles as the wrapper lets it.)
   */
  abort(): void {
    this.#closed = true;
    this.#aborted = true;
    for (const destroyIt of [...this.#inUse]) destroyIt();
  }
}
