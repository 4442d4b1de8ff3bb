// `postgresProducer`: events appended to their key's partition in Postgres, as `redisProducer` does on Redis. A call's
// events go in one statement (so one transaction) per 1,000, whatever their partitions, each partition's in order
// (so per key too); ids are given in commit order under the partitions' head rows (log/input.ts).
import { eachPair } from '../../durable/common/send-pairs';
import type { Producer as AnyProducer } from '../../durable/common/clients';
import { SendError, poolEndedError } from '../../errors';
import { callTimeoutOption, integerArgument } from '../../validate';
import { encodeChecked } from '../../durable/common/codec';
import { activeTraceFields } from '../../durable/common/trace-context';
import { checkKey, fnv1a } from '../../durable/common/keys';
import { CALL_TIMEOUT_MS, PoolGate } from '../log/gate';
import { PgLog, appendEventsManyPg } from '../log/pg-log';
import { type PgPoolLike, text } from '../log/sql';
import { type PgResolved, type PoolKey, type PostgresOptions, resolvePgOptions } from './options';
import { isPoolEnded } from './retry';

/** A producer's options on Postgres only. */
export interface PostgresProducerOnly {
  /**
   * The longest a send waits for Postgres' answer, ms (Infinity: no bound). Past it, its connection is destroyed and
   * the send rejects with a `SendError` whose ids are unknown (the commit may have happened), its cause
   * `ERR_VELO_POSTGRES_TIMEOUT`. Default 10000.
   */
  callTimeout?: number;
}

/** Options of `postgresProducer`. */
export type PostgresProducerOptions<I = unknown> = PostgresOptions<I> & PostgresProducerOnly;

/** Appends events for a distributed stream function on Postgres; see `postgresProducer`. */
export interface PostgresProducer<I> extends AnyProducer<I> {
  /** The function's partition count. */
  readonly partitions: number;
  /** The partition of `key`: `fnv1a(key) mod partitions` (as on Redis). A key holding a NUL character is refused. */
  partitionOf(key: string): number;
  /**
   * Appends one event to its key's partition; resolves with its entry id once committed.
   * @throws {EventTooLargeError} `ERR_VELO_EVENT_TOO_LARGE` (nothing written) above `maxEventBytes`.
   * @throws {TypeError} `ERR_INVALID_ARG_VALUE` (nothing written) for a key Postgres cannot store: one holding a NUL.
   * @throws {SendError} `ERR_VELO_SEND_FAILED` when Postgres refused it or did not answer.
   */
  readonly send: (key: string, event: I) => Promise<string>;
  /**
   * Appends many events: one transaction per 1,000 events, whatever the partitions they go to, in the given order
   * (so per key too). Every
   * event and key is checked (and encoded) before anything is written, as by `send`. Resolves with the entry ids,
   * in the order of `events`.
   */
  readonly sendMany: (events: Iterable<readonly [string, I]>) => Promise<string[]>;
  /** Entries of the partition of `key` (or partition `partition`) not yet read by its owner, measured now. */
  lag(keyOrPartition: string | number): Promise<number>;
}

/** node-postgres' words for a connection not made within the pool's `connectionTimeoutMillis` (pg-pool's, pg's). */
const NOT_CONNECTED = /^(?:timeout exceeded when trying to connect|Connection terminated due to connection timeout)$/;

/**
 * Whether `error` is a connection refused, by the socket or by a server starting or shutting down (57P03, at the
 * connection's start), or not made in time: nothing was sent, nothing written. Maybe one per address tried.
 */
function isRefused(error: unknown): boolean {
  const e = error as { code?: unknown; errors?: unknown; message?: unknown } | null;
  if (e?.code === 'ECONNREFUSED' || e?.code === '57P03') return true;
  if (e?.code === undefined && typeof e?.message === 'string' && NOT_CONNECTED.test(e.message)) return true;
  return Array.isArray(e?.errors) && e.errors.length > 0 && e.errors.every(isRefused);
}

/** Events per transaction (one statement): keeps one transaction's locks short. */
const CHUNK = 1000;

class Producer<I> implements PostgresProducer<I> {
  readonly #o: PgResolved<I>;
  /** The user's pool, each statement answered within `callTimeout` (gate.ts). */
  readonly #pool: PgPoolLike;
  /** For `lag()` only (a read: it holds no connection between calls). */
  readonly #log: PgLog;
  constructor(o: PgResolved<I>, callTimeout: number) {
    this.#o = o;
    this.#pool = new PoolGate(o.pool, callTimeout).pool;
    this.#log = new PgLog(o.pool, o.space, o.partitions, { listen: false, callTimeout });
  }

  get partitions(): number {
    return this.#o.partitions;
  }

  partitionOf(key: string): number {
    // Postgres text holds no NUL: such a key is refused here, before anything is written, as a key too long is.
    return fnv1a(text('The key', checkKey(key))) % this.#o.partitions;
  }

  send = async (key: string, event: I): Promise<string> => (await this.#send([[key, event]], 'send()'))[0];

  sendMany = (events: Iterable<readonly [string, I]>): Promise<string[]> => this.#send(events, 'sendMany()');

  /** Appends `events` for `call` (named in an event's refusal, as on Redis). */
  async #send(events: Iterable<readonly [string, I]>, call: string): Promise<string[]> {
    const trace = activeTraceFields();
    const partitions: number[] = [];
    const items: [string, Buffer | string][] = [];
    eachPair<I>(events, (key, event) => {
      const partition = this.partitionOf(key);
      const what = `event of ${call} for key ${JSON.stringify(key)}`;
      partitions.push(partition);
      items.push([key, encodeChecked(this.#o.codec, event, this.#o.maxEventBytes, what)]);
    });
    const n = items.length;
    const ids = new Array<string | null | undefined>(n);
    const failures: unknown[] = [];
    try {
      await this.#o.prepare(this.#pool);
    } catch (error) {
      ids.fill(null);
      if (isPoolEnded(error))
        throw new SendError(ids, 'send: nothing written, the pool was ended (pool.end())', poolEndedError(error));
      throw new SendError(
        ids,
        `send: nothing written, the tables could not be checked or made: ${(error as Error)?.message}`,
        error,
      );
    }
    // One statement (one transaction) per CHUNK events, whatever their partitions, one after the other.
    for (let start = 0; start < n; start += CHUNK) {
      const end = Math.min(n, start + CHUNK);
      try {
        const got = await appendEventsManyPg(
          this.#pool,
          this.#o.space,
          partitions.slice(start, end),
          items.slice(start, end),
          trace,
        );
        got.forEach((id, i) => (ids[start + i] = id));
      } catch (error) {
        // A refused connection wrote nothing; any other failure may have come at the commit, whose events are then
        // unknown (undefined). The chunks after it were not tried.
        // (A pool ended before the call: nothing was sent.)
        const ended = isPoolEnded(error);
        const refused = ended || isRefused(error);
        for (let i = start; i < n; i++) ids[i] = i >= end || refused ? null : undefined;
        failures.push(ended ? poolEndedError(error) : error);
        break;
      }
    }
    if (failures.length === 0) return ids as string[];
    const written = ids.filter((id) => typeof id === 'string').length;
    const cause = failures[0] as Error;
    throw new SendError(
      ids,
      `send: ${written} of ${n} events written, the others not (null) or unknown: ${cause?.message}`,
      cause,
    );
  }

  async lag(keyOrPartition: string | number): Promise<number> {
    const partition =
      typeof keyOrPartition === 'number'
        ? integerArgument('lag()', 'partition', keyOrPartition, 0, this.#o.partitions - 1)
        : this.partitionOf(keyOrPartition);
    await this.#o.prepare(this.#pool);
    return this.#log.lag(partition);
  }
}

/** A producer for the distributed stream function `options.name` on Postgres: `send(key, event)` appends to its partition. */
export function postgresProducer<I = unknown>(options: PostgresProducerOptions<I>): PostgresProducer<I> {
  return startPgProducer(options, 'postgresProducer()', 'pool');
}

/** `postgresProducer` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export function startPgProducer<I>(options: PostgresProducerOptions<I>, what: string, poolKey: PoolKey): PostgresProducer<I> {
  const o = resolvePgOptions(options, what, ['callTimeout'], poolKey);
  return new Producer(o, callTimeoutOption(what, options.callTimeout === undefined ? CALL_TIMEOUT_MS : options.callTimeout));
}
