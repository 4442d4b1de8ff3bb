// postgresLimiter(): one limiter shared by every process that names it on a Postgres schema, decided in Postgres
// (one call of a plpgsql function per decision, on the server's clock: log/limiter-sql.ts holds the rules, the Redis
// scripts' own) — GCRA for rate, leases with fencing tokens for concurrency, a FIFO line of tickets per key. This
// file moves between them as the Redis limiter does: it keeps what this process holds and waits for, renews all of
// it in one call per third of a lease, and applies `whenPostgresFails` when a call fails. Waiters poll (50 ms, then
// twice as long up to `pollInterval`), and are woken sooner by a NOTIFY hint when LISTEN works.
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { AcquireOptions, KeyWait, LimitSettings, Limiter, LimiterStats, Permit } from '../../limits/types';
import { limitQueueFullError, limiterClosedError, limitCostError, postgresTimeoutError, rateLimitedError } from '../../errors';
import { limiter } from '../../limits/local';
import { kDescribe, type LimiterDescription } from '../../limits/describe';
import { integerOption } from '../../validate';
import { acquireSignal } from '../../limits/acquire-options';
import { type Limits, checkLimits, costOf, localShare } from '../../redis/common/limiter-rules';
import { migrate } from '../log/schema';
import { run, str } from '../log/sql';
import { type Listening, type PoolListener, listenerOf } from '../log/waiter';
import { isConnectionError } from './retry';
import {
  type PgLimiterResolved,
  type PostgresLimiterOptions,
  type WhenPostgresFails,
  pgKeyOf,
  pgLimitArgs,
  resolvePgLimiterOptions,
} from './limiter-options';

export type { PostgresLimiterOptions, WhenPostgresFails } from './limiter-options';

interface LocalItem {
  key: string;
  cost: number;
}
const localKey = (item: LocalItem): string => item.key;
const localCost = (item: LocalItem): number => item.cost;

/** Waits kept for `waitedMs` percentiles. */
const WAIT_WINDOW = 512;
/** Hints kept for tickets not (yet) known here. */
const EARLY_KEPT = 1024;
/** A waiter's first poll, ms (then twice as long each time, up to `pollInterval`). */
const FIRST_POLL_MS = 50;

/** A permit of a Postgres limiter: `lost` once its lease ran out before its release. */
export interface PostgresPermit extends Permit {
  /** The permit's fencing token ('' for one granted without Postgres: fail-open, or the local fallback), never handed out twice. */
  readonly token: string;
  /** The server's clock (ms) when it was granted; NaN without Postgres. */
  readonly grantedAt: number;
  /** Whence it came: 'postgres', 'open' (fail-open: counted nowhere) or 'local' (the in-process fallback). */
  readonly source: 'postgres' | 'open' | 'local';
  /** True once its lease is known to have run out before its release. */
  readonly lost: boolean;
  /** Resolves after release() with true if Postgres freed the permit, false if its lease had already run out (fenced). */
  released(): Promise<boolean>;
}

/** `stats()` of a Postgres limiter: this process' view, and the fleet's counters as of the last renewal. */
export interface PostgresLimiterStats extends LimiterStats {
  /** The fleet's view as of the last renewal (one call per third of a lease). */
  fleet: {
    /** Processes that renewed within a lease (the divisor of the 'local' fallback). */
    processes: number;
    /** Permits the fleet granted since the limiter's row was made. */
    admitted: number;
    /** Acquires the fleet refused (reject mode, full line). */
    rejected: number;
  };
  /** Permits of this process whose lease ran out before their release. */
  lost: number;
  /** Whether the last call to Postgres failed (acquires follow `whenPostgresFails` until a renewal succeeds). */
  postgresDown: boolean;
}

/** A limiter shared by a fleet on Postgres (see {@link postgresLimiter}). */
export interface PostgresLimiter<T = unknown> extends Limiter<T> {
  /** Waits in the fleet's line for a permit ('throttle'), or refuses at once ('reject'). */
  acquire(item: T, options?: AcquireOptions): Promise<PostgresPermit>;
  /** Stores the fleet's limits in Postgres; resolves once stored (and the lines re-decided). */
  setLimits(settings: LimitSettings): Promise<void>;
  /** This process' view, plus the fleet's counters as of the last renewal. */
  stats(): PostgresLimiterStats;
}

interface Waiter {
  ticket: string;
  token: string;
  key: string;
  cost: number;
  since: number;
  resolve: (permit: PostgresPermit) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  timer?: NodeJS.Timeout;
  /** The next poll's delay without a hint, ms. */
  backoff: number;
  polling: boolean;
  again: boolean;
  done: boolean;
}

class HeldPermit implements PostgresPermit {
  lost = false;
  #released: Promise<boolean> | undefined;
  constructor(
    readonly token: string,
    readonly key: string,
    readonly grantedAt: number,
    readonly source: 'postgres' | 'open' | 'local',
    public renewedAt: number,
    readonly giveBack: (permit: HeldPermit) => Promise<boolean>,
  ) {}
  release(): void {
    this.#released ??= this.giveBack(this);
  }
  released(): Promise<boolean> {
    return this.#released ?? Promise.resolve(false);
  }
}

function withTimeout<T>(call: Promise<T>, ms: number, what: string, onLate?: (value: T) => void): Promise<T> {
  if (ms === Infinity) return call;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(postgresTimeoutError(ms, what));
    }, ms);
  });
  call.then(
    (value) => {
      if (timedOut) onLate?.(value);
    },
    () => {},
  );
  return Promise.race([call, late]).finally(() => clearTimeout(timer));
}

type Row = Record<string, unknown>;

class PostgresLimiterImpl<T> implements PostgresLimiter<T> {
  readonly name: string;
  readonly #o: PgLimiterResolved<T>;
  readonly #channel: string;
  readonly #pid = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  readonly #tokenPrefix = `${randomBytes(8).toString('hex')}-`;
  #tokens = 0;
  readonly #undos = new Map<string, { key: string; ticket: string | null; sending: boolean }>();
  #limits: Limits;
  readonly #held = new Set<HeldPermit>();
  readonly #waiters = new Map<string, Waiter>();
  readonly #early = new Map<string, string>();
  #closed = false;
  #down: Error | null = null;
  #renewing = false;
  readonly #renewTimer: NodeJS.Timeout;
  #prepared: Promise<unknown> | null = null;
  /** Its channel on the pool's shared LISTEN connection (waiter.ts), while waiters wait. */
  #sub: { listening: Listening; listener: PoolListener } | null = null;
  #fallback: Limiter<LocalItem> | null = null;
  #processes = 1;
  readonly #fleet = { processes: 1, admitted: 0, rejected: 0 };
  #admitted = 0;
  #rejected = 0;
  #lost = 0;
  readonly #waits: number[] = [];
  readonly #grants: [number, number][] = [];

  constructor(options: PgLimiterResolved<T>) {
    this.#o = options;
    this.name = options.name;
    this.#limits = options.limits;
    // A plain identifier (velo_lim_ and hex digits): safe to splice into LISTEN.
    this.#channel = `velo_lim_${createHash('sha1').update(`${options.schema}\0${options.name}`).digest('hex').slice(0, 32)}`;
    this.#renewTimer = setInterval(() => void this.#renew(), Math.floor(options.leaseTtl / 3)).unref();
    void this.#renew();
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
    return withTimeout(call, this.#o.callTimeout, `Limiter "${this.name}": ${what}`, onLate);
  }

  #markDown(error: unknown): void {
    this.#down = error instanceof Error ? error : new Error(String(error));
  }

  #admit(cost: number, since: number): void {
    this.#admitted++;
    const now = performance.now();
    if (this.#waits.length === WAIT_WINDOW) this.#waits.shift();
    this.#waits.push(now - since);
    this.#grants.push([now, cost]);
    const window = this.#limits.rate?.period ?? 1000;
    while (this.#grants.length > 0 && this.#grants[0][0] < now - window) this.#grants.shift();
  }

  /** Whether a grant to a call sent at `sent` may have outlived its lease by the time its reply is read. */
  #outlived(sent: number): boolean {
    return performance.now() - sent >= this.#o.leaseTtl;
  }

  /** Gives back a permit granted to a call whose reply came too late (fenced by its token). */
  #stale(key: string, token: string): void {
    new HeldPermit(token, key, 0, 'postgres', 0, (p) => this.#giveBack(p, true)).release();
  }

  #permit(key: string, token: string, grantedAt: number, cost: number, since: number, sent: number): HeldPermit {
    this.#admit(cost, since);
    const permit = new HeldPermit(token, key, grantedAt, 'postgres', sent, (p) => this.#giveBack(p));
    this.#held.add(permit);
    return permit;
  }

  async #giveBack(permit: HeldPermit, stray = false): Promise<boolean> {
    if (!this.#held.delete(permit) && !permit.lost && !stray) return false;
    try {
      const rows = await this.#call(
        'lim_release_5',
        [this.name, permit.key, permit.token, this.#o.leaseTtl, ...pgLimitArgs(this.#limits), this.#channel],
        'release',
      );
      const freed = Object.values(rows[0] ?? {})[0] === true;
      if (!freed && !permit.lost) {
        permit.lost = true;
        this.#lost++;
      }
      return freed;
    } catch (error) {
      // Not given back: Postgres frees it when its lease runs out.
      if (isConnectionError(error)) this.#markDown(error);
      return false;
    }
  }

  async acquire(item: T, options?: AcquireOptions): Promise<PostgresPermit> {
    const signal = acquireSignal(options, `Limiter "${this.name}": acquire()`);
    if (this.#closed) throw limiterClosedError(this.name);
    signal?.throwIfAborted();
    const key = pgKeyOf(this.name, this.#o.key, item);
    const cost = costOf(this.name, this.#o.cost, item, this.#limits);
    return this.#enter(key, cost, performance.now(), signal);
  }

  #acquireArgs(key: string, ticket: string | null, cost: number, reject: boolean, token: string): unknown[] {
    const o = this.#o;
    return [this.name, key, ticket, cost, reject, o.leaseTtl, o.maxWaiting, ...pgLimitArgs(this.#limits), token, this.#channel];
  }

  #costError(cost: number): Error {
    return limitCostError(`Limiter "${this.name}": cost ${cost} is above the fleet's burst: it could never be admitted`);
  }

  /** An acquire of `cost` units of `key`: granted, refused, or in line (see lim_acquire_5). */
  async #enter(key: string, cost: number, since: number, signal?: AbortSignal): Promise<PostgresPermit> {
    if (this.#closed) throw limiterClosedError(this.name);
    if (this.#down !== null) return this.#degraded(key, cost, since, this.#down, signal);
    const token = this.#newToken();
    const sent = performance.now();
    let row: Row;
    try {
      const rows = await this.#call(
        'lim_acquire_5',
        this.#acquireArgs(key, null, cost, this.#o.mode === 'reject', token),
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
      this.#markDown(error);
      return this.#degraded(key, cost, since, this.#down as unknown as Error, signal);
    }
    const kind = str(row.o_kind);
    if (this.#closed) {
      if (kind === 'g') new HeldPermit(str(row.o_a), key, 0, 'postgres', since, (p) => this.#giveBack(p, true)).release();
      if (kind === 'w') void this.#cancel(key, str(row.o_a));
      throw limiterClosedError(this.name);
    }
    if (kind === 'g') {
      // A reply that came a lease after the call (this process paused): the permit's lease may be over. Never
      // handed over dead: given back (fenced: it frees nothing of a new holder), and asked for again, at the back.
      if (this.#outlived(sent)) {
        this.#stale(key, str(row.o_a));
        return this.#enter(key, cost, since, signal);
      }
      const permit = this.#permit(key, str(row.o_a), Number(row.o_n), cost, since, sent);
      if (signal?.aborted) {
        permit.release();
        throw signal.reason;
      }
      return permit;
    }
    if (kind === 'r') {
      this.#rejected++;
      throw Object.assign(rateLimitedError(this.name, 'acquire'), { retryAfter: Number(row.o_n) });
    }
    if (kind === 'f') {
      this.#rejected++;
      throw limitQueueFullError(this.name, this.#o.maxWaiting);
    }
    if (kind === 'x') throw this.#costError(cost);
    if (kind !== 'w') throw new Error(`Limiter "${this.name}": an acquire undone before it ran was answered`);
    const ticket = str(row.o_a);
    const retry = Number(row.o_n);
    return new Promise<PostgresPermit>((resolve, reject) => {
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
      this.#waiters.set(ticket, waiter);
      if (signal !== undefined) {
        waiter.onAbort = () => this.#leave(waiter, signal.reason);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#listen();
      const early = this.#early.get(ticket);
      if (early !== undefined) this.#onHint(early);
      else this.#retryIn(waiter, retry > 0 ? retry : this.#nextBackoff(waiter));
      if (signal?.aborted) waiter.onAbort?.();
    });
  }

  /** Whether it refuses the excess ('reject' mode) rather than queueing it (a worker's sessions refuse it). */
  get rejects(): boolean {
    return this.#o.mode === 'reject';
  }

  /** No permit without a round trip to Postgres: as the Redis limiter, tryAcquire answers undefined (after its checks). */
  tryAcquire(item: T): Permit | undefined {
    if (this.#closed) throw limiterClosedError(this.name);
    pgKeyOf(this.name, this.#o.key, item);
    costOf(this.name, this.#o.cost, item, this.#limits);
    return undefined;
  }

  /** What acquire does while Postgres is unreachable: the policy of `whenPostgresFails`. */
  #degraded(key: string, cost: number, since: number, error: Error, signal?: AbortSignal): Promise<PostgresPermit> {
    const policy: WhenPostgresFails = this.#o.whenPostgresFails;
    if (policy === 'fail-closed') return Promise.reject(error);
    if (policy === 'fail-open') {
      this.#admit(cost, since);
      return Promise.resolve(new HeldPermit('', key, NaN, 'open', 0, () => Promise.resolve(true)));
    }
    this.#fallback ??= limiter<LocalItem>({
      name: this.name,
      ...localShare(this.#limits, this.#processes),
      key: this.#o.key === undefined ? undefined : localKey,
      cost: localCost,
      mode: this.#o.mode,
      maxWaiting: this.#o.maxWaiting,
    });
    return this.#fallback.acquire({ key, cost }, { signal }).then((local) => {
      this.#admit(cost, since);
      return new HeldPermit('', key, NaN, 'local', 0, () => {
        local.release();
        return Promise.resolve(true);
      });
    });
  }

  #degradeWaiter(waiter: Waiter): void {
    if (waiter.done) return;
    this.#finish(waiter);
    this.#undo(waiter.key, waiter.ticket, waiter.token);
    this.#degraded(waiter.key, waiter.cost, waiter.since, this.#down as Error, waiter.signal).then(waiter.resolve, waiter.reject);
  }

  #nextBackoff(waiter: Waiter): number {
    const ms = waiter.backoff;
    waiter.backoff = Math.min(waiter.backoff * 2, this.#o.pollInterval);
    return ms;
  }

  #retryIn(waiter: Waiter, ms: number): void {
    clearTimeout(waiter.timer);
    waiter.timer = setTimeout(() => void this.#poll(waiter), ms);
  }

  /** Asks Postgres again for a waiter's ticket (after a hint, a retry, its backoff, or the renewal). */
  async #poll(waiter: Waiter): Promise<void> {
    if (waiter.done) return;
    if (waiter.polling) {
      waiter.again = true;
      return;
    }
    waiter.polling = true;
    clearTimeout(waiter.timer);
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
      this.#markDown(error);
      return this.#degradeWaiter(waiter);
    }
    waiter.polling = false;
    const kind = str(row.o_kind);
    if (waiter.done) {
      if (kind === 'g') new HeldPermit(str(row.o_a), waiter.key, 0, 'postgres', sent, (p) => this.#giveBack(p, true)).release();
      return;
    }
    if (kind === 'g' && this.#outlived(sent)) {
      // (As in #enter: a grant read a lease after the call is given back, and the waiter lines up again.)
      this.#stale(waiter.key, str(row.o_a));
      void this.#requeue(waiter);
    } else if (kind === 'g') {
      this.#finish(waiter);
      waiter.resolve(this.#permit(waiter.key, str(row.o_a), Number(row.o_n), waiter.cost, waiter.since, sent));
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
    this.#finish(waiter);
    try {
      waiter.resolve(await this.#enter(waiter.key, waiter.cost, waiter.since, waiter.signal));
    } catch (error) {
      waiter.reject(error);
    }
  }

  #finish(waiter: Waiter): void {
    waiter.done = true;
    clearTimeout(waiter.timer);
    this.#waiters.delete(waiter.ticket);
    if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  #leave(waiter: Waiter, reason: unknown): void {
    if (waiter.done) return;
    this.#finish(waiter);
    waiter.reject(reason);
    void this.#cancel(waiter.key, waiter.ticket, waiter.token);
  }

  /** A ticket out of the line (a permit handed to it meanwhile goes back, and one its claim under `token` took). */
  #cancel(key: string, ticket: string | null, token: string | null = null): Promise<unknown> {
    const args = [this.name, key, ticket, token, this.#o.leaseTtl, false, ...pgLimitArgs(this.#limits), this.#channel];
    return this.#call('lim_cancel_5', args, 'cancel').catch(() => {
      // Unreachable: the ticket expires by itself after a lease.
    });
  }

  #newToken(): string {
    return this.#tokenPrefix + (++this.#tokens).toString(36);
  }

  /** An acquire (or a claim) given up on without an answer: undone by its token once Postgres answers (see lim_cancel_5). */
  #undo(key: string, ticket: string | null, token: string): void {
    this.#undos.set(token, { key, ticket, sending: false });
    void this.#flushUndos();
  }

  #flushUndos(): Promise<unknown> {
    const calls: Promise<unknown>[] = [];
    for (const [token, undo] of this.#undos) {
      if (undo.sending) continue;
      undo.sending = true;
      const args = [this.name, undo.key, undo.ticket, token, this.#o.leaseTtl, true, ...pgLimitArgs(this.#limits), this.#channel];
      calls.push(
        this.#call('lim_cancel_5', args, 'undo').then(
          () => this.#undos.delete(token),
          () => {
            undo.sending = false;
          },
        ),
      );
    }
    return Promise.allSettled(calls);
  }

  /**
   * LISTENs on the limiter's channel while waiters wait, on the pool's connection shared with the workers and other
   * limiters of this process (a hint only: a failure leaves the waiters to their polls).
   */
  #listen(): void {
    if (!this.#o.listen || this.#closed) return;
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
      for (const waiter of this.#waiters.values()) void this.#poll(waiter);
    });
  }

  /** Leaves the shared LISTEN connection. */
  #unlisten(): Promise<void> {
    const sub = this.#sub;
    this.#sub = null;
    return sub === null ? Promise.resolve() : sub.listener.remove(sub.listening);
  }

  #onHint(payload: string): void {
    const space = payload.indexOf(' ');
    const ticket = space < 0 ? payload : payload.slice(0, space);
    const waiter = this.#waiters.get(ticket);
    if (waiter === undefined) {
      this.#early.set(ticket, payload);
      if (this.#early.size > EARLY_KEPT) this.#early.delete(this.#early.keys().next().value as string);
      return;
    }
    this.#early.delete(ticket);
    if (space < 0) void this.#poll(waiter);
    else this.#retryIn(waiter, Number(payload.slice(space + 1)));
  }

  /** One call for every permit held and every ticket waiting (see lim_renew_5). */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#closed) return;
    this.#renewing = true;
    const sent = performance.now();
    const permits = [...this.#held];
    const waiters = [...this.#waiters.values()];
    for (const permit of permits) {
      if (sent - permit.renewedAt > this.#o.leaseTtl) this.#loseLocally(permit);
    }
    const live = permits.filter((p) => !p.lost);
    // The LISTEN connection is kept while waiters come and go, and given back once none waited for an interval.
    if (waiters.length === 0) void this.#unlisten();
    void this.#flushUndos();
    try {
      const [row] = await this.#call(
        'lim_renew_5',
        [
          this.name,
          this.#pid,
          this.#o.leaseTtl,
          ...pgLimitArgs(this.#limits),
          live.map((p) => p.key),
          live.map((p) => p.token),
          waiters.map((w) => w.key),
          waiters.map((w) => w.ticket),
          this.#channel,
        ],
        'renewal',
      );
      const lostTokens = new Set((row.o_lost as unknown[]).map(String));
      for (const p of live) {
        if (lostTokens.has(p.token)) this.#loseLocally(p);
        else p.renewedAt = sent;
      }
      for (const ticket of [...(row.o_ready as unknown[]), ...(row.o_lost_tickets as unknown[])]) {
        const waiter = this.#waiters.get(String(ticket));
        if (waiter !== undefined) void this.#poll(waiter);
      }
      this.#processes = Math.max(1, Number(row.o_procs));
      this.#fleet.processes = this.#processes;
      this.#fleet.admitted = Number(row.o_admitted);
      this.#fleet.rejected = Number(row.o_rejected);
      const [c, l, p, b] = [row.o_c, row.o_l, row.o_p, row.o_b].map((v) => (v === null ? undefined : Number(v)));
      if (c !== undefined || l !== undefined) {
        this.#limits = {
          ...(c === undefined ? {} : { concurrency: c }),
          ...(l === undefined ? {} : { rate: { limit: l, period: p as number, burst: b as number } }),
        };
      }
      void this.#fallback?.setLimits(localShare(this.#limits, this.#processes));
      this.#down = null;
    } catch (error) {
      if (isConnectionError(error)) {
        this.#markDown(error);
        for (const waiter of waiters) this.#degradeWaiter(waiter);
      }
    } finally {
      this.#renewing = false;
    }
  }

  #loseLocally(permit: HeldPermit): void {
    if (permit.lost) return;
    permit.lost = true;
    this.#lost++;
    this.#held.delete(permit);
  }

  async setLimits(settings: LimitSettings): Promise<void> {
    if (this.#closed) throw limiterClosedError(this.name);
    const limits = checkLimits(settings, `Limiter "${this.name}": setLimits()`, true);
    this.#limits = limits;
    void this.#fallback?.setLimits(localShare(limits, this.#processes));
    await this.#call('lim_set_5', [this.name, ...pgLimitArgs(limits), this.#o.leaseTtl, this.#channel], 'setLimits');
  }

  stats(): PostgresLimiterStats {
    const waits = [...this.#waits].sort((a, b) => a - b);
    const at = (q: number) => (waits.length === 0 ? 0 : waits[Math.min(waits.length - 1, Math.floor(q * waits.length))]);
    const keys = new Set<string>();
    for (const p of this.#held) keys.add(p.key);
    let oldest = Infinity;
    for (const w of this.#waiters.values()) {
      keys.add(w.key);
      if (w.since < oldest) oldest = w.since;
    }
    const now = performance.now();
    const window = this.#limits.rate?.period ?? 1000;
    let units = 0;
    for (const [time, cost] of this.#grants) if (time >= now - window) units += cost;
    return {
      name: this.name,
      inUse: this.#held.size + (this.#fallback?.stats().inUse ?? 0),
      waiting: this.#waiters.size + (this.#fallback?.stats().waiting ?? 0),
      admitted: this.#admitted,
      rejected: this.#rejected,
      waitedMs: { p50: at(0.5), p99: at(0.99) },
      rate: this.#limits.rate === undefined ? undefined : (units * 1000) / window,
      keys: keys.size,
      oldestWaitMs: oldest === Infinity ? 0 : now - oldest,
      fleet: { ...this.#fleet },
      lost: this.#lost,
      postgresDown: this.#down !== null,
    };
  }

  /** This process's waiters per key, longest waiting first. */
  waitingKeys(limit = 10): KeyWait[] {
    const n = integerOption(`Limiter "${this.name}": waitingKeys()`, 'limit', limit, 1, 1000);
    const now = performance.now();
    const byKey = new Map<string, KeyWait>();
    for (const w of this.#waiters.values()) {
      const k = byKey.get(w.key);
      if (k === undefined) byKey.set(w.key, { key: w.key, waiting: 1, held: 0, oldestWaitMs: now - w.since });
      else {
        k.waiting++;
        k.oldestWaitMs = Math.max(k.oldestWaitMs, now - w.since);
      }
    }
    for (const p of this.#held) {
      const k = byKey.get(p.key);
      if (k !== undefined) k.held++;
    }
    return [...byKey.values()]
      .sort((a, b) => b.oldestWaitMs - a.oldestWaitMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, n);
  }

  /** Its kind, the fleet's limits as this process last knew them, mode and keying (the dashboard's row). */
  [kDescribe](): LimiterDescription {
    const l = this.#limits;
    return {
      kind: 'postgres',
      ...(l.concurrency !== undefined && { concurrency: l.concurrency }),
      ...(l.rate !== undefined && { rate: { limit: l.rate.limit, period: l.rate.period, burst: l.rate.burst } }),
      mode: this.#o.mode === 'reject' ? 'reject' : 'throttle',
      keyed: this.#o.key !== undefined,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#renewTimer);
    const leaving: Promise<unknown>[] = [];
    for (const waiter of [...this.#waiters.values()]) {
      this.#finish(waiter);
      waiter.reject(limiterClosedError(this.name));
      leaving.push(this.#cancel(waiter.key, waiter.ticket, waiter.token));
    }
    if (this.#fallback !== null) leaving.push(this.#fallback.close());
    leaving.push(this.#flushUndos());
    leaving.push(this.#call('lim_leave_5', [this.name, this.#pid], 'close'));
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
