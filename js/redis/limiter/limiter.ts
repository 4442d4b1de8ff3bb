// redisLimiter(): one limiter shared by every process that names it, decided in Redis (one Lua script per
// decision, Redis' clock) — GCRA for rate, leases with fencing tokens for concurrency, a FIFO line of tickets per
// key for waiting, a shard channel to wake waiters. The scripts (lua/limiter-*.lua) hold the rules and say their
// keys; this file only moves between them: it keeps what this process holds and waits for, renews all of it in one
// call per third of a lease, and applies `whenRedisFails` when a call fails.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AcquireOptions, KeyWait, LimitSettings, Limiter, LimiterStats, Permit } from '../../limits/types';
import {
  RedisConnectionError,
  limitQueueFullError,
  limiterClosedError,
  limitCostError,
  rateLimitedError,
  redisTimeoutError,
} from '../../errors';
import type { RedisClientLike } from '../log/connection';
import { limiter } from '../../limits/local';
import { kDescribe, type LimiterDescription } from '../../limits/describe';
import { type RedisLimiterOptions, type Resolved, type WhenRedisFails, resolveLimiterOptions } from './limiter-options';
import { type Limits, checkLimits, costOf, keyOf, limitArgs, localShare } from '../common/limiter-rules';
import { reportable } from '../common/reportable';
import { Script } from '../log/script';
import { integerOption } from '../../validate';
import { acquireSignal } from '../../limits/acquire-options';

export type { RedisLimiterOptions, WhenRedisFails } from './limiter-options';

const COMMON = 'limiter-common.lua';
const ACQUIRE = new Script([COMMON, 'limiter-acquire.lua']);
const RELEASE = new Script([COMMON, 'limiter-release.lua']);
const CANCEL = new Script([COMMON, 'limiter-cancel.lua']);
const RENEW = new Script([COMMON, 'limiter-renew.lua']);
const SET = new Script([COMMON, 'limiter-set.lua']);
const LEAVE = new Script([COMMON, 'limiter-leave.lua']);

/** What the 'local' fallback's in-process limiter is asked for: the key and cost, decided already. */
interface LocalItem {
  key: string;
  cost: number;
}
const localKey = (item: LocalItem): string => item.key;
const localCost = (item: LocalItem): number => item.cost;

/** Waits kept for `waitedMs` percentiles. */
const WAIT_WINDOW = 512;
/** Wake-ups kept for tickets not (yet) known here: more than come between an acquire's run and its answer. */
const EARLY_KEPT = 1024;

/** A permit of a Redis limiter: `lost` once its lease ran out before its release (its slot may be someone else's). */
export interface RedisPermit extends Permit {
  /**
   * The permit's fencing token ('' for one granted without Redis: fail-open, or the local fallback): made by this
   * process before it asks (a random id of the limiter object and a counter), never handed out twice.
   */
  readonly token: string;
  /** Redis' clock (ms) when it was granted; NaN without Redis. */
  readonly grantedAt: number;
  /** Whence it came: 'redis', 'open' (fail-open: counted nowhere) or 'local' (the in-process fallback). */
  readonly source: 'redis' | 'open' | 'local';
  /** True once its lease is known to have run out before its release (a renewal found it gone, or Redis said so at release). */
  readonly lost: boolean;
  /** Resolves after release() with true if Redis freed the permit, false if its lease had already run out (fenced). */
  released(): Promise<boolean>;
}

/** `stats()` of a Redis limiter: this process' view, and the fleet's counters as of the last renewal. */
export interface RedisLimiterStats extends LimiterStats {
  /** The fleet's view as of the last renewal (one call per third of a lease). */
  fleet: {
    /** Processes that renewed within a lease (the divisor of the 'local' fallback). */
    processes: number;
    /** Permits the fleet granted since the limiter's keys were made. */
    admitted: number;
    /** Acquires the fleet refused (reject mode, full line). */
    rejected: number;
  };
  /** Permits of this process whose lease ran out before their release. */
  lost: number;
  /** Whether the last call to Redis failed (acquires follow `whenRedisFails` until a renewal succeeds). */
  redisDown: boolean;
}

/** A limiter shared by a fleet on Redis (see {@link redisLimiter}). */
export interface RedisLimiter<T = unknown> extends Limiter<T> {
  /** Waits in the fleet's line for a permit ('throttle'), or refuses at once ('reject'). */
  acquire(item: T, options?: AcquireOptions): Promise<RedisPermit>;
  /** Stores the fleet's limits in Redis; resolves once stored (and the lines re-decided). */
  setLimits(settings: LimitSettings): Promise<void>;
  /** This process' view, plus the fleet's counters as of the last renewal. */
  stats(): RedisLimiterStats;
}

interface Waiter {
  ticket: string;
  /** The token its permit gets when granted (made before its acquire was sent). */
  token: string;
  key: string;
  cost: number;
  since: number;
  resolve: (permit: RedisPermit) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  timer?: NodeJS.Timeout;
  /** A poll is in flight; `again`: another was asked for meanwhile. */
  polling: boolean;
  again: boolean;
  done: boolean;
}

class HeldPermit implements RedisPermit {
  lost = false;
  #released: Promise<boolean> | undefined;
  constructor(
    readonly token: string,
    readonly key: string,
    readonly grantedAt: number,
    readonly source: 'redis' | 'open' | 'local',
    /** Local time of the renewal call that last confirmed the lease (sent then: a conservative start). */
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

/** Whether an error means Redis could not be reached or did not answer in time (as opposed to refusing a call). */
function unreachable(error: unknown): boolean {
  return (error as { code?: unknown })?.code === 'ERR_VELO_REDIS_TIMEOUT' || reportable(error) instanceof RedisConnectionError;
}

/** `onLate`: given the answer that came after the timeout (the call had failed with ERR_VELO_REDIS_TIMEOUT). */
function withTimeout<T>(call: Promise<T>, ms: number, what: string, onLate?: (value: T) => void): Promise<T> {
  if (ms === Infinity) return call;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(redisTimeoutError(ms, what));
    }, ms);
  });
  call.then(
    (value) => {
      if (timedOut) onLate?.(value);
    },
    () => {}, // a late failure after the timeout is already handled
  );
  return Promise.race([call, late]).finally(() => clearTimeout(timer));
}

class RedisLimiterImpl<T> implements RedisLimiter<T> {
  readonly name: string;
  readonly #o: Resolved<T>;
  readonly #prefix: string;
  readonly #pid = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  /** Tokens of permits: this object's random id and a counter (known before the acquire is sent, so it can be undone). */
  readonly #tokenPrefix = `${randomBytes(8).toString('hex')}-`;
  #tokens = 0;
  /**
   * Acquires given up on without an answer (no answer within `callTimeout`, or the connection lost): Redis may run
   * them, or have run them. Each is undone by its token (lua/limiter-cancel.lua with undo), sent at once and again
   * before every renewal until Redis answers it.
   */
  readonly #undos = new Map<string, { key: string; ticket: string; sending: boolean }>();
  #limits: Limits;
  readonly #held = new Set<HeldPermit>();
  readonly #waiters = new Map<string, Waiter>();
  /**
   * Wake-ups for tickets not waiting here, the latest EARLY_KEPT: an acquire's may come before its answer (the
   * subscriber's connection is not the calls'), and is taken when the answer does. (Tickets are never reused.)
   */
  readonly #early = new Map<string, string>();
  #closed = false;
  #down: Error | null = null;
  #renewing = false;
  readonly #renewTimer: NodeJS.Timeout;
  #subscriber: RedisClientLike | null = null;
  #subscribing: Promise<void> | null = null;
  #fallback: Limiter<LocalItem> | null = null;
  #processes = 1;
  readonly #fleet = { processes: 1, admitted: 0, rejected: 0 };
  #admitted = 0;
  #rejected = 0;
  #lost = 0;
  readonly #waits: number[] = [];
  /** [local time, units] of recent grants, for `stats().rate`. */
  readonly #grants: [number, number][] = [];

  constructor(options: Resolved<T>) {
    this.#o = options;
    this.name = options.name;
    this.#limits = options.limits;
    this.#prefix = `velo:lim:{${options.name}}`;
    // One renewal per process per third of a lease, for everything held and waited for; it also tells whether Redis
    // is back after a failure and how many processes share the limits. Unref'd: a limiter alone does not keep the
    // process alive (the subscriber connection a waiter opened does, until close()).
    this.#renewTimer = setInterval(() => void this.#renew(), Math.floor(options.leaseTtl / 3)).unref();
    void this.#renew();
  }

  #call(script: Script, args: (string | number)[], what: string, onLate?: (reply: unknown) => void): Promise<unknown> {
    const call = script.run(this.#o.client, [this.#prefix], args.map(String));
    return withTimeout(call, this.#o.callTimeout, `Limiter "${this.name}": ${what}`, onLate);
  }

  #markDown(error: unknown): void {
    this.#down =
      error instanceof Error && (error as { code?: unknown }).code === 'ERR_VELO_REDIS_TIMEOUT'
        ? error
        : (reportable(error) as Error);
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

  /**
   * A permit Redis granted: held there (a lease) from its grant to its release whatever the limits are, a rate-only
   * one too, so a concurrency limit set later counts it; renewed and given back as every permit.
   */
  #permit(key: string, token: string, grantedAt: number, cost: number, since: number, sent: number): HeldPermit {
    this.#admit(cost, since);
    const permit = new HeldPermit(token, key, grantedAt, 'redis', sent, (p) => this.#giveBack(p));
    this.#held.add(permit);
    return permit;
  }

  /** `stray`: a permit granted to an acquire that had stopped waiting (never handed out, never in `#held`). */
  async #giveBack(permit: HeldPermit, stray = false): Promise<boolean> {
    // Asked even when this process counts the permit lost (its clock says the lease ran out): Redis' answer is
    // the one that counts, and a stale token frees nothing there.
    if (!this.#held.delete(permit) && !permit.lost && !stray) return false;
    try {
      const freed =
        Number(await this.#call(RELEASE, [permit.key, permit.token, this.#o.leaseTtl, ...limitArgs(this.#limits)], 'release')) ===
        1;
      if (!freed && !permit.lost) {
        permit.lost = true;
        this.#lost++;
      }
      return freed;
    } catch (error) {
      // Not given back: Redis frees it when its lease runs out.
      if (unreachable(error)) this.#markDown(error);
      return false;
    }
  }

  async acquire(item: T, options?: AcquireOptions): Promise<RedisPermit> {
    const signal = acquireSignal(options, `Limiter "${this.name}": acquire()`);
    if (this.#closed) throw limiterClosedError(this.name);
    signal?.throwIfAborted();
    const key = keyOf(this.name, this.#o.key, item);
    const cost = costOf(this.name, this.#o.cost, item, this.#limits);
    return this.#enter(key, cost, performance.now(), signal);
  }

  /** An acquire of `cost` units of `key`: granted, refused, or in line (see lua/limiter-acquire.lua). */
  async #enter(key: string, cost: number, since: number, signal?: AbortSignal): Promise<RedisPermit> {
    if (this.#closed) throw limiterClosedError(this.name);
    if (this.#down !== null) return this.#degraded(key, cost, since, this.#down, signal);
    const token = this.#newToken();
    let reply: unknown[];
    try {
      reply = (await this.#call(
        ACQUIRE,
        [
          key,
          '',
          cost,
          this.#o.mode === 'reject' ? 'r' : 't',
          this.#o.leaseTtl,
          this.#o.maxWaiting,
          ...limitArgs(this.#limits),
          token,
        ],
        'acquire',
        // Answered after all (once the undo was sent): a ticket it took leaves the line now, not at its turn.
        (late) => {
          const [kind, ticket] = late as unknown[];
          if (String(kind) === 'w') void this.#cancel(key, String(ticket));
        },
      )) as unknown[];
    } catch (error) {
      if (!unreachable(error)) throw error;
      // No answer: Redis may still run it (or have run it). What it took is given back, fenced by its token.
      this.#undo(key, '', token);
      this.#markDown(error);
      return this.#degraded(key, cost, since, this.#down as unknown as Error, signal);
    }
    const kind = String(reply[0]);
    if (this.#closed) {
      // Closed while the call was out: what it got goes back.
      if (kind === 'g') new HeldPermit(String(reply[1]), key, 0, 'redis', since, (p) => this.#giveBack(p, true)).release();
      if (kind === 'w') void this.#cancel(key, String(reply[1]));
      throw limiterClosedError(this.name);
    }
    if (kind === 'g') {
      const permit = this.#permit(key, String(reply[1]), Number(reply[2]), cost, since, since);
      if (signal?.aborted) {
        // Aborted while the call was out: the acquire holds nothing.
        permit.release();
        throw signal.reason;
      }
      return permit;
    }
    if (kind === 'r') {
      this.#rejected++;
      throw Object.assign(rateLimitedError(this.name, 'acquire'), { retryAfter: Number(reply[1]), at: Number(reply[2]) });
    }
    if (kind === 'f') {
      this.#rejected++;
      throw limitQueueFullError(this.name, this.#o.maxWaiting);
    }
    if (kind === 'x')
      throw limitCostError(`Limiter "${this.name}": cost ${cost} is above the fleet's burst: it could never be admitted`);
    if (kind === 'c') throw new Error(`Limiter "${this.name}": an acquire undone before it ran was answered`);
    // 'w': in line. Woken by a message (granted, or retry in ms), or by the renewal's poll if a message was lost.
    const ticket = String(reply[1]);
    const retry = Number(reply[2]);
    return new Promise<RedisPermit>((resolve, reject) => {
      const waiter: Waiter = {
        ticket,
        token,
        key,
        cost,
        since,
        resolve,
        reject,
        signal,
        polling: false,
        again: false,
        done: false,
      };
      this.#waiters.set(ticket, waiter);
      if (signal !== undefined) {
        waiter.onAbort = () => this.#leave(waiter, signal.reason);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      if (retry > 0) this.#retryIn(waiter, retry);
      this.#subscribe();
      // Woken before this answer came (published after it was made: the newer word).
      const early = this.#early.get(ticket);
      if (early !== undefined) this.#onMessage(early);
      // A signal aborted between the call and here.
      if (signal?.aborted) waiter.onAbort?.();
    });
  }

  /** Whether it refuses the excess ('reject' mode) rather than queueing it (a redisWorker's sessions refuse it). */
  get rejects(): boolean {
    return this.#o.mode === 'reject';
  }

  /** No permit without waiting on Redis: this is the Redis limiter's answer (see docs/redis/flow-control.md). */
  tryAcquire(item: T): Permit | undefined {
    if (this.#closed) throw limiterClosedError(this.name);
    keyOf(this.name, this.#o.key, item);
    costOf(this.name, this.#o.cost, item, this.#limits);
    return undefined;
  }

  /** What acquire does while Redis is unreachable: the policy of `whenRedisFails`. */
  #degraded(key: string, cost: number, since: number, error: Error, signal?: AbortSignal): Promise<RedisPermit> {
    const policy: WhenRedisFails = this.#o.whenRedisFails;
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

  /** A waiter while Redis is unreachable: its ticket stays in the line until it expires (no longer renewed). */
  #degradeWaiter(waiter: Waiter): void {
    if (waiter.done) return;
    this.#finish(waiter);
    // Its ticket leaves the line once Redis answers (a permit handed to it meanwhile goes back), not a lease later.
    this.#undo(waiter.key, waiter.ticket, waiter.token);
    this.#degraded(waiter.key, waiter.cost, waiter.since, this.#down as Error, waiter.signal).then(waiter.resolve, waiter.reject);
  }

  #retryIn(waiter: Waiter, ms: number): void {
    clearTimeout(waiter.timer);
    waiter.timer = setTimeout(() => void this.#poll(waiter), ms);
  }

  /** Asks Redis again for a waiter's ticket (after a message, a retry hint, or the renewal). */
  async #poll(waiter: Waiter): Promise<void> {
    if (waiter.done) return;
    if (waiter.polling) {
      waiter.again = true;
      return;
    }
    waiter.polling = true;
    const sent = performance.now();
    let reply: unknown[];
    try {
      reply = (await this.#call(
        ACQUIRE,
        [
          waiter.key,
          waiter.ticket,
          waiter.cost,
          't',
          this.#o.leaseTtl,
          this.#o.maxWaiting,
          ...limitArgs(this.#limits),
          waiter.token,
        ],
        'acquire',
      )) as unknown[];
    } catch (error) {
      waiter.polling = false;
      // Aborted or closed while its claim had no answer: Redis may still run it, so it is undone by its token.
      if (waiter.done) return this.#undo(waiter.key, waiter.ticket, waiter.token);
      if (!unreachable(error)) return this.#leave(waiter, error);
      this.#markDown(error);
      return this.#degradeWaiter(waiter);
    }
    waiter.polling = false;
    const kind = String(reply[0]);
    if (waiter.done) {
      // Aborted or closed meanwhile: a permit it got goes back at once.
      if (kind === 'g') new HeldPermit(String(reply[1]), waiter.key, 0, 'redis', sent, (p) => this.#giveBack(p, true)).release();
      return;
    }
    if (kind === 'g') {
      this.#finish(waiter);
      const permit = this.#permit(waiter.key, String(reply[1]), Number(reply[2]), waiter.cost, waiter.since, sent);
      waiter.resolve(permit);
    } else if (kind === 'l') {
      // Its ticket expired (this process did not renew it in time: paused, or Redis was away): in line again, at
      // the back, as a new acquire would be.
      void this.#requeue(waiter);
    } else if (kind === 'x') {
      this.#leave(
        waiter,
        limitCostError(`Limiter "${this.name}": cost ${waiter.cost} is above the fleet's burst: it could never be admitted`),
      );
    } else if (kind === 'w' && Number(reply[2]) > 0) {
      this.#retryIn(waiter, Number(reply[2]));
    }
    if (waiter.again && !waiter.done) {
      waiter.again = false;
      void this.#poll(waiter);
    }
  }

  async #requeue(waiter: Waiter): Promise<void> {
    this.#finish(waiter);
    try {
      const permit = await this.#enter(waiter.key, waiter.cost, waiter.since, waiter.signal);
      waiter.resolve(permit);
    } catch (error) {
      waiter.reject(error);
    }
  }

  /** Takes a waiter out of this process' books (it no longer waits here). */
  #finish(waiter: Waiter): void {
    waiter.done = true;
    clearTimeout(waiter.timer);
    this.#waiters.delete(waiter.ticket);
    if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  /** A waiter that stops waiting: out of the line in Redis (a permit handed to it meanwhile goes back). */
  #leave(waiter: Waiter, reason: unknown): void {
    if (waiter.done) return;
    this.#finish(waiter);
    waiter.reject(reason);
    void this.#cancel(waiter.key, waiter.ticket, waiter.token);
  }

  /**
   * A ticket out of the line (a permit handed to it meanwhile goes back, and one its claim under `token` took: a claim
   * in flight may reach Redis first).
   */
  #cancel(key: string, ticket: string, token = ''): Promise<unknown> {
    return this.#call(CANCEL, [key, ticket, token, this.#o.leaseTtl, '', ...limitArgs(this.#limits)], 'cancel').catch(() => {
      // Unreachable: the ticket expires by itself after a lease.
    });
  }

  #newToken(): string {
    return this.#tokenPrefix + (++this.#tokens).toString(36);
  }

  /**
   * An acquire (or a waiter's claim) given up on without an answer: whatever it took in Redis (a permit of `token`,
   * the ticket in line, a permit handed to the ticket) is given back once Redis answers the undo, and the acquire,
   * if Redis runs it only after the undo, is refused there. Rate units it spent stay spent (docs/redis/flow-control.md).
   */
  #undo(key: string, ticket: string, token: string): void {
    this.#undos.set(token, { key, ticket, sending: false });
    void this.#flushUndos();
  }

  /** Sends the undos not yet answered (each one call); one that fails is sent again before the next renewal. */
  #flushUndos(): Promise<unknown> {
    const calls: Promise<unknown>[] = [];
    for (const [token, undo] of this.#undos) {
      if (undo.sending) continue;
      undo.sending = true;
      calls.push(
        this.#call(CANCEL, [undo.key, undo.ticket, token, this.#o.leaseTtl, '1', ...limitArgs(this.#limits)], 'undo').then(
          () => this.#undos.delete(token),
          () => {
            undo.sending = false;
          },
        ),
      );
    }
    return Promise.allSettled(calls);
  }

  /** The wake-up channel, subscribed once a waiter waits (on a connection of its own: a subscribed one takes no commands). */
  #subscribe(): void {
    if (this.#subscribing !== null || this.#closed) return;
    const channel = `${this.#prefix}:wake`;
    this.#subscribing = (async () => {
      const sub = this.#o.client.duplicate();
      this.#subscriber = sub;
      sub.on('error', () => {
        // The duplicate reconnects by itself; a wake-up lost meanwhile is made up for by the renewal's poll.
      });
      await sub.connect();
      if (this.#closed) return sub.destroy() as undefined;
      const subscriber = sub as unknown as { sSubscribe(channel: string, listener: (message: string) => void): Promise<void> };
      await subscriber.sSubscribe(channel, (message) => this.#onMessage(String(message)));
      // What was published before the subscription took: ask once for every waiter.
      for (const waiter of this.#waiters.values()) void this.#poll(waiter);
    })().catch(() => {
      this.#subscribing = null;
    });
  }

  #onMessage(message: string): void {
    const space = message.indexOf(' ');
    const waiter = this.#waiters.get(message.slice(0, space));
    if (waiter === undefined) {
      this.#early.set(message.slice(0, space), message);
      if (this.#early.size > EARLY_KEPT) this.#early.delete(this.#early.keys().next().value as string);
      return;
    }
    this.#early.delete(waiter.ticket);
    const what = message.slice(space + 1);
    if (what === 'g' || what === 'x') void this.#poll(waiter);
    else this.#retryIn(waiter, Number(what));
  }

  /** One call for every permit held and every ticket waiting (see lua/limiter-renew.lua). */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#closed) return;
    this.#renewing = true;
    const sent = performance.now();
    const permits = [...this.#held];
    const waiters = [...this.#waiters.values()];
    // Permits whose lease must have run out by this process' clock (Redis away, or this process paused): lost.
    for (const permit of permits) {
      if (sent - permit.renewedAt > this.#o.leaseTtl) this.#loseLocally(permit);
    }
    const live = permits.filter((p) => !p.lost);
    // (Sent first, on the same connection: Redis runs them before the renewal.)
    void this.#flushUndos();
    const args: (string | number)[] = [this.#pid, this.#o.leaseTtl, live.length, waiters.length, ...limitArgs(this.#limits)];
    for (const p of live) args.push(p.key, p.token);
    for (const w of waiters) args.push(w.key, w.ticket);
    try {
      const reply = (await this.#call(RENEW, args, 'renewal')) as unknown[];
      const lostTokens = new Set((reply[0] as unknown[]).map(String));
      for (const p of live) {
        if (lostTokens.has(p.token)) this.#loseLocally(p);
        else p.renewedAt = sent;
      }
      for (const ticket of [...(reply[1] as unknown[]), ...(reply[2] as unknown[])]) {
        const waiter = this.#waiters.get(String(ticket));
        if (waiter !== undefined) void this.#poll(waiter);
      }
      this.#processes = Math.max(1, Number(reply[3]));
      this.#fleet.processes = this.#processes;
      this.#fleet.admitted = Number(reply[4]);
      this.#fleet.rejected = Number(reply[5]);
      // The limits in force (setLimits from any process): this process' fallback share and cost checks follow them.
      const [c, l, p, b] = (reply[7] as unknown[]).map((v) => (String(v) === '' ? undefined : Number(v)));
      if (c !== undefined || l !== undefined) {
        this.#limits = {
          ...(c === undefined ? {} : { concurrency: c }),
          ...(l === undefined ? {} : { rate: { limit: l, period: p as number, burst: b as number } }),
        };
      }
      void this.#fallback?.setLimits(localShare(this.#limits, this.#processes));
      this.#down = null;
    } catch (error) {
      if (unreachable(error)) {
        this.#markDown(error);
        // Waiters are not left waiting for wake-ups that cannot come: each follows whenRedisFails now (their
        // tickets leave the line when they expire).
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
    await this.#call(SET, [...limitArgs(limits), this.#o.leaseTtl], 'setLimits');
  }

  stats(): RedisLimiterStats {
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
      redisDown: this.#down !== null,
    };
  }

  /** This process's waiters per key, longest waiting first (the fleet's other processes' are theirs). */
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
      kind: 'redis',
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
    leaving.push(this.#call(LEAVE, [this.#pid], 'close'));
    await Promise.allSettled(leaving);
    await this.#subscribing;
    const sub = this.#subscriber;
    this.#subscriber = null;
    if (sub !== null) {
      try {
        sub.destroy();
      } catch {
        // node-redis 5 refuses to destroy a client that is not open: nothing to tear down then.
      }
    }
  }
}

/**
 * A limiter shared by every process that creates one with the same `name` on the same Redis (or Cluster): the
 * fleet holds at most `concurrency` permits at once and admits at most `rate.limit` units per `rate.period` (per
 * key when `key` is given). See docs/redis/flow-control.md.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a missing or bad client, name or option.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a limit, `leaseTtl`, `maxWaiting` or `callTimeout` out of range.
 */
export function redisLimiter<T = unknown>(options: RedisLimiterOptions<T>): RedisLimiter<T> {
  return new RedisLimiterImpl(resolveLimiterOptions(options));
}
