// postgresLimiter(): one limiter shared by every process that names it on a Postgres schema, decided in Postgres
// (one call of a plpgsql function per decision, on the server's clock: log/limiter-sql.ts holds the rules, the Redis
// scripts' own) — GCRA for rate, leases with fencing tokens for concurrency, a FIFO line of tickets per key. This
// file moves between them as the Redis limiter does, driving the same process view (redis/common/limiter-view.ts)
// with its SQL calls: one renewal call per third of a lease, `whenPostgresFails` when a call fails. Waiters poll
// (50 ms, then twice as long up to `pollInterval`), and are woken sooner by a NOTIFY hint when LISTEN works.
import { createHash } from 'node:crypto';
import type { AcquireOptions, KeyWait, LimitSettings, Permit } from '../../limits/types';
import type { FleetLimiter, FleetLimiterStats, FleetPermit } from '../../durable/common/clients';
import { limitQueueFullError, limiterClosedError, limitCostError, postgresTimeoutError, rateLimitedError } from '../../errors';
import { kDescribe, type LimiterDescription } from '../../limits/describe';
import { LimiterView, type FleetWaiter, HeldPermit, withTimeout } from '../../durable/common/limiter-view';
import { migrate } from '../log/schema';
import { run, str } from '../log/sql';
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

/** A waiter's first poll, ms (then twice as long each time, up to `pollInterval`). */
const FIRST_POLL_MS = 50;

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

type Held = HeldPermit<'postgres'>;
interface Waiter extends FleetWaiter<Held> {
  /** The next poll's delay without a hint, ms. */
  backoff: number;
}

type Row = Record<string, unknown>;

/** The error a failed call leaves the limiter down with. */
function downError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

class PostgresLimiterImpl<T> implements PostgresLimiter<T> {
  readonly name: string;
  readonly #o: PgLimiterResolved<T>;
  readonly #channel: string;
  /** This process' permits, waiters, counters and fallback (the renewal's cadence too). */
  readonly #view: LimiterView<'postgres', T, Waiter>;
  #prepared: Promise<unknown> | null = null;
  /** Its channel on the pool's shared LISTEN connection (waiter.ts), while waiters wait. */
  #sub: { listening: Listening; listener: PoolListener } | null = null;

  constructor(options: PgLimiterResolved<T>) {
    this.#o = options;
    this.name = options.name;
    // A plain identifier (velo_lim_ and hex digits): safe to splice into LISTEN.
    this.#channel = `velo_lim_${createHash('sha1').update(`${options.schema}\0${options.name}`).digest('hex').slice(0, 32)}`;
    this.#view = new LimiterView<'postgres', T, Waiter>('postgres', options, (item) => pgKeyOf(this.name, options.key, item));
    this.#view.start(() => this.#renew());
  }

  /** One call of a limiter function (after the schema is migrated, once), bounded by `callTimeout`. */
  #call(fn: string, values: unknown[], what: string, onLate?: (rows: Row[]) => void): Promise<Row[]> {
    const call = (async () => {
      this.#prepared ??= migrate(this.#o.pool, this.#o.schema).catch((error: unknown) => {
        this.#prepared = null;
        throw error;
      });
      await this.#prepared;
      const params = values.map((_, i) => `$${i + 1}`).join(', ');
      return (await run(this.#o.pool, `SELECT * FROM ${this.#o.S}.${fn}(${params})`, values)).rows;
    })();
    return withTimeout(call, this.#o.callTimeout, `Limiter "${this.name}": ${what}`, postgresTimeoutError, onLate);
  }

  #limitArgs(): (number | null)[] {
    return pgLimitArgs(this.#view.limits);
  }

  /** Whether a grant to a call sent at `sent` may have outlived its lease by the time its reply is read. */
  #outlived(sent: number): boolean {
    return performance.now() - sent >= this.#o.leaseTtl;
  }

  /** Gives back at once a permit granted to a call whose reply came too late, or after its acquire stopped waiting (fenced by its token). */
  #stray(key: string, token: string, sent: number): void {
    new HeldPermit<'postgres'>(token, key, 0, 'postgres', sent, (p) => this.#giveBack(p, true)).release();
  }

  #grant(key: string, token: string, grantedAt: number, cost: number, since: number, sent: number): Held {
    return this.#view.grant(key, token, grantedAt, cost, since, sent, (p) => this.#giveBack(p));
  }

  async #giveBack(permit: Held, stray = false): Promise<boolean> {
    if (!this.#view.returning(permit, stray)) return false;
    try {
      const rows = await this.#call(
        'lim_release_5',
        [this.name, permit.key, permit.token, this.#o.leaseTtl, ...this.#limitArgs(), this.#channel],
        'release',
      );
      const freed = Object.values(rows[0] ?? {})[0] === true;
      if (!freed) this.#view.fenced(permit);
      return freed;
    } catch (error) {
      // Not given back: Postgres frees it when its lease runs out.
      if (isConnectionError(error)) this.#view.markDown(downError(error));
      return false;
    }
  }

  async acquire(item: T, options?: AcquireOptions): Promise<PostgresPermit> {
    const { key, cost, signal } = this.#view.admission(item, options);
    return this.#enter(key, cost, performance.now(), signal);
  }

  #acquireArgs(key: string, ticket: string | null, cost: number, reject: boolean, token: string): unknown[] {
    const o = this.#o;
    return [this.name, key, ticket, cost, reject, o.leaseTtl, o.maxWaiting, ...this.#limitArgs(), token, this.#channel];
  }

  #costError(cost: number): Error {
    return limitCostError(`Limiter "${this.name}": cost ${cost} is above the fleet's burst: it could never be admitted`);
  }

  /** An acquire of `cost` units of `key`: granted, refused, or in line (see lim_acquire_5). */
  async #enter(key: string, cost: number, since: number, signal?: AbortSignal): Promise<Held> {
    const view = this.#view;
    view.assertOpen();
    if (view.down !== null) return view.degraded(key, cost, since, view.down, signal);
    const token = view.newToken();
    const sent = performance.now();
    let row: Row;
    try {
      const rows = await this.#call(
        'lim_acquire_5',
        this.#acquireArgs(key, null, cost, view.rejects, token),
        'acquire',
        (late) => {
          if (str(late[0]?.o_kind) === 'w') void this.#cancel(key, str(late[0]?.o_a));
        },
      );
      row = rows[0];
    } catch (error) {
      if (!isConnectionError(error)) throw error;
      // No answer: Postgres may still run it (or have run it). What it took is given back, fenced by its token.
      this.#undo(key, null, token);
      view.markDown(downError(error));
      return view.degraded(key, cost, since, view.down as unknown as Error, signal);
    }
    const kind = str(row.o_kind);
    if (view.closed) {
      if (kind === 'g') this.#stray(key, str(row.o_a), since);
      if (kind === 'w') void this.#cancel(key, str(row.o_a));
      throw limiterClosedError(this.name);
    }
    if (kind === 'g') {
      // A reply that came a lease after the call (this process paused): the permit's lease may be over. Never
      // handed over dead: given back (fenced: it frees nothing of a new holder), and asked for again, at the back.
      if (this.#outlived(sent)) {
        this.#stray(key, str(row.o_a), 0);
        return this.#enter(key, cost, since, signal);
      }
      const permit = this.#grant(key, str(row.o_a), Number(row.o_n), cost, since, sent);
      if (signal?.aborted) {
        permit.release();
        throw signal.reason;
      }
      return permit;
    }
    if (kind === 'r') {
      view.refused();
      throw Object.assign(rateLimitedError(this.name, 'acquire'), { retryAfter: Number(row.o_n) });
    }
    if (kind === 'f') {
      view.refused();
      throw limitQueueFullError(this.name, this.#o.maxWaiting);
    }
    if (kind === 'x') throw this.#costError(cost);
    if (kind !== 'w') throw new Error(`Limiter "${this.name}": an acquire undone before it ran was answered`);
    const ticket = str(row.o_a);
    const retry = Number(row.o_n);
    return new Promise<Held>((resolve, reject) => {
      const waiter: Waiter = {
        ticket,
        token,
        key,
        cost,
        since,
        resolve,
        reject,
        signal,
        backoff: FIRST_POLL_MS,
        polling: false,
        again: false,
        done: false,
      };
      const early = view.wait(waiter, () => this.#leave(waiter, signal?.reason));
      this.#listen();
      if (early !== undefined) this.#onHint(early);
      else this.#retryIn(waiter, retry > 0 ? retry : this.#nextBackoff(waiter));
      if (signal?.aborted) waiter.onAbort?.();
    });
  }

  /** Whether it refuses the excess ('reject' mode) rather than queueing it (a worker's sessions refuse it). */
  get rejects(): boolean {
    return this.#view.rejects;
  }

  /** No permit without a round trip to Postgres: as the Redis limiter, tryAcquire answers undefined (after its checks). */
  tryAcquire(item: T): Permit | undefined {
    this.#view.check(item);
    return undefined;
  }

  /** A waiter while Postgres is unreachable: follows `whenPostgresFails` now. */
  #degradeWaiter(waiter: Waiter): void {
    if (!this.#view.finish(waiter)) return;
    this.#undo(waiter.key, waiter.ticket, waiter.token);
    this.#view
      .degraded(waiter.key, waiter.cost, waiter.since, this.#view.down as Error, waiter.signal)
      .then(waiter.resolve, waiter.reject);
  }

  #nextBackoff(waiter: Waiter): number {
    const ms = waiter.backoff;
    waiter.backoff = Math.min(waiter.backoff * 2, this.#o.pollInterval);
    return ms;
  }

  #retryIn(waiter: Waiter, ms: number): void {
    this.#view.retryIn(waiter, ms, () => void this.#poll(waiter));
  }

  /** Asks Postgres again for a waiter's ticket (after a hint, a retry, its backoff, or the renewal). */
  async #poll(waiter: Waiter): Promise<void> {
    if (waiter.done) return;
    if (waiter.polling) {
      waiter.again = true;
      return;
    }
    waiter.polling = true;
    this.#view.stopRetry(waiter);
    const sent = performance.now();
    let row: Row;
    try {
      row = (
        await this.#call(
          'lim_acquire_5',
          this.#acquireArgs(waiter.key, waiter.ticket, waiter.cost, false, waiter.token),
          'acquire',
        )
      )[0];
    } catch (error) {
      waiter.polling = false;
      if (waiter.done) return this.#undo(waiter.key, waiter.ticket, waiter.token);
      if (!isConnectionError(error)) return this.#leave(waiter, error);
      this.#view.markDown(downError(error));
      return this.#degradeWaiter(waiter);
    }
    waiter.polling = false;
    const kind = str(row.o_kind);
    if (waiter.done) {
      if (kind === 'g') this.#stray(waiter.key, str(row.o_a), sent);
      return;
    }
    if (kind === 'g' && this.#outlived(sent)) {
      // (As in #enter: a grant read a lease after the call is given back, and the waiter lines up again.)
      this.#stray(waiter.key, str(row.o_a), 0);
      void this.#requeue(waiter);
    } else if (kind === 'g') {
      this.#view.finish(waiter);
      waiter.resolve(this.#grant(waiter.key, str(row.o_a), Number(row.o_n), waiter.cost, waiter.since, sent));
    } else if (kind === 'l') {
      // Its ticket expired (not renewed in time): in line again, at the back, as a new acquire would be.
      void this.#requeue(waiter);
    } else if (kind === 'x') {
      this.#leave(waiter, this.#costError(waiter.cost));
    } else if (waiter.again) {
      waiter.again = false;
      void this.#poll(waiter);
    } else {
      const retry = Number(row.o_n);
      this.#retryIn(waiter, retry > 0 ? retry : this.#nextBackoff(waiter));
    }
  }

  async #requeue(waiter: Waiter): Promise<void> {
    this.#view.finish(waiter);
    try {
      waiter.resolve(await this.#enter(waiter.key, waiter.cost, waiter.since, waiter.signal));
    } catch (error) {
      waiter.reject(error);
    }
  }

  #leave(waiter: Waiter, reason: unknown): void {
    if (!this.#view.finish(waiter)) return;
    waiter.reject(reason);
    void this.#cancel(waiter.key, waiter.ticket, waiter.token);
  }

  /** A ticket out of the line (a permit handed to it meanwhile goes back, and one its claim under `token` took). */
  #cancel(key: string, ticket: string | null, token: string | null = null): Promise<unknown> {
    const args = [this.name, key, ticket, token, this.#o.leaseTtl, false, ...this.#limitArgs(), this.#channel];
    return this.#call('lim_cancel_5', args, 'cancel').catch(() => {
      // Unreachable: the ticket expires by itself after a lease.
    });
  }

  /** An acquire (or a claim) given up on without an answer: undone by its token once Postgres answers (see lim_cancel_5). */
  #undo(key: string, ticket: string | null, token: string): void {
    this.#view.undo(key, ticket, token);
    void this.#flushUndos();
  }

  /** Sends the undos not yet answered (each one call); one that fails is sent again before the next renewal. */
  #flushUndos(): Promise<unknown> {
    const view = this.#view;
    return Promise.allSettled(
      view.undosToSend().map(([token, undo]) => {
        const args = [this.name, undo.key, undo.ticket, token, this.#o.leaseTtl, true, ...this.#limitArgs(), this.#channel];
        return this.#call('lim_cancel_5', args, 'undo').then(
          () => view.undoAnswered(token),
          () => view.undoFailed(token),
        );
      }),
    );
  }

  /**
   * LISTENs on the limiter's channel while waiters wait, on the pool's connection shared with the workers and other
   * limiters of this process (a hint only: a failure leaves the waiters to their polls).
   */
  #listen(): void {
    if (!this.#o.listen || this.#view.closed) return;
    // (Subscribed: brings the shared connection back if it failed meanwhile.)
    if (this.#sub !== null) return void this.#sub.listener.sync();
    const listening: Listening = {
      channel: this.#channel,
      notify: (payload) => this.#onHint(payload ?? ''),
      // (The shared connection failed: its next sync listens again; the waiters poll meanwhile.)
      onError: () => {},
    };
    const listener = listenerOf(this.#o.pool);
    this.#sub = { listening, listener };
    listener.add(listening);
    // What was hinted before the LISTEN took: ask once for every waiter.
    void listener.sync().then(() => {
      if (this.#sub?.listening !== listening) return;
      for (const waiter of this.#view.waiters) void this.#poll(waiter);
    });
  }

  /** Leaves the shared LISTEN connection. */
  #unlisten(): Promise<void> {
    const sub = this.#sub;
    this.#sub = null;
    return sub === null ? Promise.resolve() : sub.listener.remove(sub.listening);
  }

  /** A hint: `<ticket>` (ask now) or `<ticket> <ms>` (retry then). */
  #onHint(payload: string): void {
    const space = payload.indexOf(' ');
    const waiter = this.#view.hinted(space < 0 ? payload : payload.slice(0, space), payload);
    if (waiter === undefined) return;
    if (space < 0) void this.#poll(waiter);
    else this.#retryIn(waiter, Number(payload.slice(space + 1)));
  }

  /** One call for every permit held and every ticket waiting (see lim_renew_5). */
  async #renew(): Promise<void> {
    const view = this.#view;
    const sent = performance.now();
    const { permits, waiters } = view.toRenew(sent);
    // The LISTEN connection is kept while waiters come and go, and given back once none waited for an interval.
    if (waiters.length === 0) void this.#unlisten();
    void this.#flushUndos();
    try {
      const [row] = await this.#call(
        'lim_renew_5',
        [
          this.name,
          view.pid,
          this.#o.leaseTtl,
          ...this.#limitArgs(),
          permits.map((p) => p.key),
          permits.map((p) => p.token),
          waiters.map((w) => w.key),
          waiters.map((w) => w.ticket),
          this.#channel,
        ],
        'renewal',
      );
      const ask = view.renewed(sent, permits, {
        lostTokens: (row.o_lost as unknown[]).map(String),
        tickets: [...(row.o_ready as unknown[]), ...(row.o_lost_tickets as unknown[])].map(String),
        processes: Number(row.o_procs),
        admitted: Number(row.o_admitted),
        rejected: Number(row.o_rejected),
        limits: [row.o_c, row.o_l, row.o_p, row.o_b].map((v) => (v === null ? undefined : Number(v))),
      });
      for (const waiter of ask) void this.#poll(waiter);
    } catch (error) {
      if (isConnectionError(error)) {
        view.markDown(downError(error));
        for (const waiter of waiters) this.#degradeWaiter(waiter);
      }
    }
  }

  async setLimits(settings: LimitSettings): Promise<void> {
    const limits = this.#view.setLimits(settings);
    await this.#call('lim_set_5', [this.name, ...pgLimitArgs(limits), this.#o.leaseTtl, this.#channel], 'setLimits');
  }

  stats(): PostgresLimiterStats {
    const down = this.#view.down !== null;
    return { ...this.#view.stats(), backendDown: down, postgresDown: down };
  }

  /** This process's waiters per key, longest waiting first. */
  waitingKeys(limit = 10): KeyWait[] {
    return this.#view.waitingKeys(limit);
  }

  /** Its kind, the fleet's limits as this process last knew them, mode and keying (the dashboard's row). */
  [kDescribe](): LimiterDescription {
    return this.#view.describe();
  }

  async close(): Promise<void> {
    const closing = this.#view.close();
    if (closing === false) return;
    const leaving: Promise<unknown>[] = closing.left.map((w) => this.#cancel(w.key, w.ticket, w.token));
    leaving.push(closing.fallback, this.#flushUndos(), this.#call('lim_leave_5', [this.name, this.#view.pid], 'close'));
    await Promise.allSettled(leaving);
    await this.#unlisten();
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
  return new PostgresLimiterImpl(resolvePgLimiterOptions(options));
}

/** `postgresLimiter` for the entry point `entry.what` (named in its errors), its pool and policy options `entry`'s. */
export function startPgLimiter<T>(options: PostgresLimiterOptions<T>, entry: PgLimiterEntry): PostgresLimiter<T> {
  return new PostgresLimiterImpl(resolvePgLimiterOptions(options, entry));
}
