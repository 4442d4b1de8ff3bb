// postgresLimiter(): one limiter shared by every process that names it on a Postgres schema, decided in Postgres
// (one call of a plpgsql function per decision, on the server's clock: log/sql/limiter-5.sql holds the rules, the
// Redis scripts' own) — GCRA for rate, leases with fencing tokens for concurrency, a FIFO line of tickets per key.
// This file is the store those functions make (the calls, their arguments and rows, the NOTIFY hints) and the
// limiter's public types: the driver (durable/common/fleet-limiter.ts) moves between the calls and the process view,
// as for Redis: one renewal call per third of a lease, `whenPostgresFails` when a call fails. Waiters poll (50 ms,
// then twice as long up to `pollInterval`), and are woken sooner by a NOTIFY hint when LISTEN works.
import { createHash } from 'node:crypto';
import type { AcquireOptions, LimitSettings } from '../../limits/types';
import type { FleetLimiter, FleetLimiterStats, FleetPermit } from '../../durable/common/clients';
import { postgresTimeoutError } from '../../errors';
import type { Limits } from '../../durable/common/limiter-rules';
import type { Renewed } from '../../durable/common/limiter-view';
import { type AcquireAnswer, type AcquireCall, FleetLimiterDriver, type LimiterStore } from '../../durable/common/fleet-limiter';
import { migrate } from '../log/schema';
import { PoolGate } from '../log/gate';
import { type PgPoolLike, run, str } from '../log/sql';
import { type Listening, type PoolListener, listenerOf } from '../log/waiter';
import { isConnectionError } from './retry';
import {
  type PgLimiterEntry,
  type PgLimiterResolved,
  type PostgresLimiterOptions,
  pgKeyOf,
  pgLimitArgs,
  resolvePgLimiterOptions,
} from './limiter-options';

export type { PostgresLimiterOptions, WhenPostgresFails } from './limiter-options';

/** A permit of a Postgres limiter (a `FleetPermit`). */
export interface PostgresPermit extends FleetPermit {
  /** Whence it came: 'postgres', 'open' (fail-open: counted nowhere) or 'local' (the in-process fallback). */
  readonly source: 'postgres' | 'open' | 'local';
}

/** `stats()` of a Postgres limiter: a fleet limiter's, and `postgresDown` (the same as `backendDown`). */
export interface PostgresLimiterStats extends FleetLimiterStats {
  /** Whether the last call to Postgres failed: `backendDown`, by its name of before. */
  postgresDown: boolean;
}

/** A limiter shared by a fleet on Postgres (see {@link postgresLimiter}). */
export interface PostgresLimiter<T = unknown> extends FleetLimiter<T> {
  /** Waits in the fleet's line for a permit ('throttle'), or refuses at once ('reject'). */
  acquire(item: T, options?: AcquireOptions): Promise<PostgresPermit>;
  /** Stores the fleet's limits in Postgres; resolves once stored (and the lines re-decided). */
  setLimits(settings: LimitSettings): Promise<void>;
  /** This process' view, plus the fleet's counters as of the last renewal. */
  stats(): PostgresLimiterStats;
}

type Row = Record<string, unknown>;

/** The error a failed call leaves the limiter down with. */
function downError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** What the store reads of the options. */
type StoreOptions = Omit<PgLimiterResolved<unknown>, 'key' | 'cost'>;

/** A limiter's rows in the schema's `lim_*` tables, each decision one call of a function of sql/limiter-5.sql. */
class PostgresLimiterStore implements LimiterStore<'postgres'> {
  readonly kind = 'postgres';
  /** A grant read a lease after its call (this process paused) is never handed over dead. */
  readonly refusesLateGrants = true;
  readonly pollInterval: number;
  readonly timeoutError = postgresTimeoutError;
  readonly unreachable = isConnectionError;
  readonly downError = downError;
  readonly #o: StoreOptions;
  readonly #name: string;
  readonly #channel: string;
  #prepared: Promise<unknown> | null = null;
  /** Its channel on the pool's shared LISTEN connection (waiter.ts), while waiters wait. */
  #sub: { listening: Listening; listener: PoolListener } | null = null;
  /** The pool, each statement answered within `callTimeout` or its connection destroyed (gate.ts). */
  readonly #pool: PgPoolLike;

  constructor(options: StoreOptions) {
    this.#o = options;
    this.#pool = new PoolGate(options.pool, options.callTimeout).pool;
    this.#name = options.name;
    this.pollInterval = options.pollInterval;
    // A plain identifier (velo_lim_ and hex digits): safe to splice into LISTEN.
    this.#channel = `velo_lim_${createHash('sha1').update(`${options.schema}\0${options.name}`).digest('hex').slice(0, 32)}`;
  }

  /** One call of a limiter function (after the schema is migrated, once). */
  async #run(fn: string, values: unknown[]): Promise<Row[]> {
    this.#prepared ??= migrate(this.#pool, this.#o.schema).catch((error: unknown) => {
      this.#prepared = null;
      throw error;
    });
    await this.#prepared;
    const params = values.map((_, i) => `$${i + 1}`).join(', ');
    return (await run(this.#pool, `SELECT * FROM ${this.#o.S}.${fn}(${params})`, values)).rows;
  }

  /** See lim_acquire_5. */
  async acquire({ key, ticket, cost, reject, limits, token }: AcquireCall): Promise<AcquireAnswer> {
    const o = this.#o;
    const [row] = await this.#run('lim_acquire_5', [
      this.#name,
      key,
      ticket,
      cost,
      reject,
      o.leaseTtl,
      o.maxWaiting,
      ...pgLimitArgs(limits),
      token,
      this.#channel,
    ]);
    const kind = str(row.o_kind);
    if (kind === 'g') return { kind, token: str(row.o_a), grantedAt: Number(row.o_n) };
    if (kind === 'w') return { kind, ticket: str(row.o_a), retry: Number(row.o_n) };
    if (kind === 'r') return { kind, retryAfter: Number(row.o_n) };
    return { kind: kind as 'f' | 'l' | 'x' | 'c' };
  }

  async release(key: string, token: string, limits: Limits): Promise<boolean> {
    const args = [this.#name, key, token, this.#o.leaseTtl, ...pgLimitArgs(limits), this.#channel];
    const rows = await this.#run('lim_release_5', args);
    return Object.values(rows[0] ?? {})[0] === true;
  }

  cancel(key: string, ticket: string | null, token: string | null, undo: boolean, limits: Limits): Promise<unknown> {
    const args = [this.#name, key, ticket, token, this.#o.leaseTtl, undo, ...pgLimitArgs(limits), this.#channel];
    return this.#run('lim_cancel_5', args);
  }

  /** See lim_renew_5. */
  async renew(
    pid: string,
    limits: Limits,
    permits: readonly { key: string; token: string }[],
    waiters: readonly { key: string; ticket: string }[],
  ): Promise<Renewed> {
    const [row] = await this.#run('lim_renew_5', [
      this.#name,
      pid,
      this.#o.leaseTtl,
      ...pgLimitArgs(limits),
      permits.map((p) => p.key),
      permits.map((p) => p.token),
      waiters.map((w) => w.key),
      waiters.map((w) => w.ticket),
      this.#channel,
    ]);
    return {
      lostTokens: (row.o_lost as unknown[]).map(String),
      tickets: [...(row.o_ready as unknown[]), ...(row.o_lost_tickets as unknown[])].map(String),
      processes: Number(row.o_procs),
      admitted: Number(row.o_admitted),
      rejected: Number(row.o_rejected),
      limits: [row.o_c, row.o_l, row.o_p, row.o_b].map((v) => (v === null ? undefined : Number(v))),
    };
  }

  set(limits: Limits): Promise<unknown> {
    return this.#run('lim_set_5', [this.#name, ...pgLimitArgs(limits), this.#o.leaseTtl, this.#channel]);
  }

  leave(pid: string): Promise<unknown> {
    return this.#run('lim_leave_5', [this.#name, pid]);
  }

  /**
   * LISTENs on the limiter's channel while waiters wait, on the pool's connection shared with the workers and other
   * limiters of this process (none with `listen: false`). A NOTIFY is `<ticket>` (ask now) or `<ticket> <ms>`.
   */
  listen(onHint: (hint: string) => void, onListening: () => void): void {
    if (!this.#o.listen) return;
    // (Subscribed: brings the shared connection back if it failed meanwhile.)
    if (this.#sub !== null) return void this.#sub.listener.sync();
    const listening: Listening = {
      channel: this.#channel,
      callTimeout: this.#o.callTimeout,
      notify: (payload) => onHint(payload ?? ''),
      // (The shared connection failed: its next sync listens again; the waiters poll meanwhile.)
      onError: () => {},
    };
    const listener = listenerOf(this.#o.pool);
    this.#sub = { listening, listener };
    listener.add(listening);
    void listener.sync().then(() => {
      if (this.#sub?.listening === listening) onListening();
    });
  }

  /** The LISTEN connection is kept while waiters come and go, and given back once none waited for an interval. */
  idle(): void {
    void this.close();
  }

  /** Leaves the shared LISTEN connection. */
  close(): Promise<void> {
    const sub = this.#sub;
    this.#sub = null;
    return sub === null ? Promise.resolve() : sub.listener.remove(sub.listening);
  }
}

/**
 * A limiter shared by every process that creates one with the same `name` on the same Postgres schema: the fleet
 * holds at most `concurrency` permits at once and admits at most `rate.limit` units per `rate.period` (per key
 * when `key` is given). The same contract as `redisLimiter`; see docs/postgres.md.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a missing or bad pool, name or option.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a limit, `leaseTtl`, `maxWaiting`, `callTimeout` or `pollInterval` out of range.
 */
export function postgresLimiter<T = unknown>(options: PostgresLimiterOptions<T>): PostgresLimiter<T> {
  return startPgLimiter(options);
}

/** `postgresLimiter` for the entry point `entry.what` (named in its errors), its pool and policy options `entry`'s. */
export function startPgLimiter<T>(options: PostgresLimiterOptions<T>, entry?: PgLimiterEntry): PostgresLimiter<T> {
  const o = resolvePgLimiterOptions(options, entry);
  const store = new PostgresLimiterStore(o);
  return new FleetLimiterDriver(store, o, (item: T) => pgKeyOf(o.name, o.key, item), 'postgresDown');
}
