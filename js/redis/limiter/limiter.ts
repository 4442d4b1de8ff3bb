// redisLimiter(): one limiter shared by every process that names it, decided in Redis (one Lua script per
// decision, Redis' clock) — GCRA for rate, leases with fencing tokens for concurrency, a FIFO line of tickets per
// key for waiting, a shard channel to wake waiters. The scripts (lua/limiter-*.lua) hold the rules and say their
// keys; this file only moves between them: it makes the calls, and tells the process view (common/limiter-view.ts:
// what this process holds and waits for, its counters, the 'local' fallback) what Redis answered. One renewal call
// per third of a lease covers all of it; `whenRedisFails` applies when a call fails.
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
import { kDescribe, type LimiterDescription } from '../../limits/describe';
import { type RedisLimiterOptions, type Resolved, resolveLimiterOptions } from './limiter-options';
import { keyOf, limitArgs } from '../../durable/common/limiter-rules';
import { LimiterView, type FleetWaiter, HeldPermit, withTimeout } from '../../durable/common/limiter-view';
import { reportable } from '../../durable/common/reportable';
import { Script } from '../log/script';

export type { RedisLimiterOptions, WhenRedisFails } from './limiter-options';

const COMMON = 'limiter-common.lua';
const ACQUIRE = new Script([COMMON, 'limiter-acquire.lua']);
const RELEASE = new Script([COMMON, 'limiter-release.lua']);
const CANCEL = new Script([COMMON, 'limiter-cancel.lua']);
const RENEW = new Script([COMMON, 'limiter-renew.lua']);
const SET = new Script([COMMON, 'limiter-set.lua']);
const LEAVE = new Script([COMMON, 'limiter-leave.lua']);

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

type Held = HeldPermit<'redis'>;
type Waiter = FleetWaiter<Held>;

/** Whether an error means Redis could not be reached or did not answer in time (as opposed to refusing a call). */
function unreachable(error: unknown): boolean {
  return (error as { code?: unknown })?.code === 'ERR_VELO_REDIS_TIMEOUT' || reportable(error) instanceof RedisConnectionError;
}

/** The error a failed call leaves the limiter down with: a timeout as it is, else what the caller may be shown. */
function downError(error: unknown): Error {
  return error instanceof Error && (error as { code?: unknown }).code === 'ERR_VELO_REDIS_TIMEOUT'
    ? error
    : (reportable(error) as Error);
}

class RedisLimiterImpl<T> implements RedisLimiter<T> {
  readonly name: string;
  readonly #o: Resolved<T>;
  readonly #prefix: string;
  /** This process' permits, waiters, counters and fallback (the renewal's cadence too). */
  readonly #view: LimiterView<'redis', T>;
  #subscriber: RedisClientLike | null = null;
  #subscribing: Promise<void> | null = null;

  constructor(options: Resolved<T>) {
    this.#o = options;
    this.name = options.name;
    this.#prefix = `velo:lim:{${options.name}}`;
    // The renewal also tells whether Redis is back after a failure and how many processes share the limits. (The
    // subscriber connection a waiter opened keeps the process alive, until close().)
    this.#view = new LimiterView('redis', options, (item) => keyOf(this.name, options.key, item));
    this.#view.start(() => this.#renew());
  }

  #call(script: Script, args: (string | number)[], what: string, onLate?: (reply: unknown) => void): Promise<unknown> {
    const call = script.run(this.#o.client, [this.#prefix], args.map(String));
    return withTimeout(call, this.#o.callTimeout, `Limiter "${this.name}": ${what}`, redisTimeoutError, onLate);
  }

  #limitArgs(): string[] {
    return limitArgs(this.#view.limits);
  }

  #grant(key: string, token: string, grantedAt: number, cost: number, since: number, sent: number): Held {
    return this.#view.grant(key, token, grantedAt, cost, since, sent, (p) => this.#giveBack(p));
  }

  /** `stray`: a permit granted to an acquire that had stopped waiting (never handed out, never held here). */
  async #giveBack(permit: Held, stray = false): Promise<boolean> {
    if (!this.#view.returning(permit, stray)) return false;
    try {
      const freed =
        Number(await this.#call(RELEASE, [permit.key, permit.token, this.#o.leaseTtl, ...this.#limitArgs()], 'release')) === 1;
      if (!freed) this.#view.fenced(permit);
      return freed;
    } catch (error) {
      // Not given back: Redis frees it when its lease runs out.
      if (unreachable(error)) this.#view.markDown(downError(error));
      return false;
    }
  }

  /** Gives back at once what a call answered after its acquire stopped waiting (fenced by its token). */
  #stray(key: string, token: string, sent: number): void {
    new HeldPermit<'redis'>(token, key, 0, 'redis', sent, (p) => this.#giveBack(p, true)).release();
  }

  async acquire(item: T, options?: AcquireOptions): Promise<RedisPermit> {
    const { key, cost, signal } = this.#view.admission(item, options);
    return this.#enter(key, cost, performance.now(), signal);
  }

  /** An acquire of `cost` units of `key`: granted, refused, or in line (see lua/limiter-acquire.lua). */
  async #enter(key: string, cost: number, since: number, signal?: AbortSignal): Promise<Held> {
    const view = this.#view;
    view.assertOpen();
    if (view.down !== null) return view.degraded(key, cost, since, view.down, signal);
    const token = view.newToken();
    let reply: unknown[];
    try {
      reply = (await this.#call(
        ACQUIRE,
        [key, '', cost, view.rejects ? 'r' : 't', this.#o.leaseTtl, this.#o.maxWaiting, ...this.#limitArgs(), token],
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
      view.markDown(downError(error));
      return view.degraded(key, cost, since, view.down as unknown as Error, signal);
    }
    const kind = String(reply[0]);
    if (view.closed) {
      // Closed while the call was out: what it got goes back.
      if (kind === 'g') this.#stray(key, String(reply[1]), since);
      if (kind === 'w') void this.#cancel(key, String(reply[1]));
      throw limiterClosedError(this.name);
    }
    if (kind === 'g') {
      const permit = this.#grant(key, String(reply[1]), Number(reply[2]), cost, since, since);
      if (signal?.aborted) {
        // Aborted while the call was out: the acquire holds nothing.
        permit.release();
        throw signal.reason;
      }
      return permit;
    }
    if (kind === 'r') {
      view.refused();
      throw Object.assign(rateLimitedError(this.name, 'acquire'), { retryAfter: Number(reply[1]), at: Number(reply[2]) });
    }
    if (kind === 'f') {
      view.refused();
      throw limitQueueFullError(this.name, this.#o.maxWaiting);
    }
    if (kind === 'x') throw this.#costError(cost);
    if (kind === 'c') throw new Error(`Limiter "${this.name}": an acquire undone before it ran was answered`);
    // 'w': in line. Woken by a message (granted, or retry in ms), or by the renewal's poll if a message was lost.
    const ticket = String(reply[1]);
    const retry = Number(reply[2]);
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
        polling: false,
        again: false,
        done: false,
      };
      const early = view.wait(waiter, () => this.#leave(waiter, signal?.reason));
      if (retry > 0) this.#retryIn(waiter, retry);
      this.#subscribe();
      // Woken before this answer came (published after it was made: the newer word).
      if (early !== undefined) this.#onMessage(early);
      // A signal aborted between the call and here.
      if (signal?.aborted) waiter.onAbort?.();
    });
  }

  #costError(cost: number): Error {
    return limitCostError(`Limiter "${this.name}": cost ${cost} is above the fleet's burst: it could never be admitted`);
  }

  /** Whether it refuses the excess ('reject' mode) rather than queueing it (a redisWorker's sessions refuse it). */
  get rejects(): boolean {
    return this.#view.rejects;
  }

  /** No permit without waiting on Redis: this is the Redis limiter's answer (see docs/durable/limiters.md). */
  tryAcquire(item: T): Permit | undefined {
    this.#view.check(item);
    return undefined;
  }

  /** A waiter while Redis is unreachable: follows `whenRedisFails` now. */
  #degradeWaiter(waiter: Waiter): void {
    if (!this.#view.finish(waiter)) return;
    // Its ticket leaves the line once Redis answers (a permit handed to it meanwhile goes back), not a lease later.
    this.#undo(waiter.key, waiter.ticket, waiter.token);
    this.#view
      .degraded(waiter.key, waiter.cost, waiter.since, this.#view.down as Error, waiter.signal)
      .then(waiter.resolve, waiter.reject);
  }

  #retryIn(waiter: Waiter, ms: number): void {
    this.#view.retryIn(waiter, ms, () => void this.#poll(waiter));
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
        [waiter.key, waiter.ticket, waiter.cost, 't', this.#o.leaseTtl, this.#o.maxWaiting, ...this.#limitArgs(), waiter.token],
        'acquire',
      )) as unknown[];
    } catch (error) {
      waiter.polling = false;
      // Aborted or closed while its claim had no answer: Redis may still run it, so it is undone by its token.
      if (waiter.done) return this.#undo(waiter.key, waiter.ticket, waiter.token);
      if (!unreachable(error)) return this.#leave(waiter, error);
      this.#view.markDown(downError(error));
      return this.#degradeWaiter(waiter);
    }
    waiter.polling = false;
    const kind = String(reply[0]);
    if (waiter.done) {
      // Aborted or closed meanwhile: a permit it got goes back at once.
      if (kind === 'g') this.#stray(waiter.key, String(reply[1]), sent);
      return;
    }
    if (kind === 'g') {
      this.#view.finish(waiter);
      waiter.resolve(this.#grant(waiter.key, String(reply[1]), Number(reply[2]), waiter.cost, waiter.since, sent));
    } else if (kind === 'l') {
      // Its ticket expired (this process did not renew it in time: paused, or Redis was away): in line again, at
      // the back, as a new acquire would be.
      void this.#requeue(waiter);
    } else if (kind === 'x') {
      this.#leave(waiter, this.#costError(waiter.cost));
    } else if (kind === 'w' && Number(reply[2]) > 0) {
      this.#retryIn(waiter, Number(reply[2]));
    }
    if (waiter.again && !waiter.done) {
      waiter.again = false;
      void this.#poll(waiter);
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

  /** A waiter that stops waiting: out of the line in Redis (a permit handed to it meanwhile goes back). */
  #leave(waiter: Waiter, reason: unknown): void {
    if (!this.#view.finish(waiter)) return;
    waiter.reject(reason);
    void this.#cancel(waiter.key, waiter.ticket, waiter.token);
  }

  /**
   * A ticket out of the line (a permit handed to it meanwhile goes back, and one its claim under `token` took: a claim
   * in flight may reach Redis first).
   */
  #cancel(key: string, ticket: string, token = ''): Promise<unknown> {
    return this.#call(CANCEL, [key, ticket, token, this.#o.leaseTtl, '', ...this.#limitArgs()], 'cancel').catch(() => {
      // Unreachable: the ticket expires by itself after a lease.
    });
  }

  /**
   * An acquire (or a waiter's claim) given up on without an answer: whatever it took in Redis (a permit of `token`,
   * the ticket in line, a permit handed to the ticket) is given back once Redis answers the undo, and the acquire,
   * if Redis runs it only after the undo, is refused there. Rate units it spent stay spent (docs/durable/limiter-failures.md).
   */
  #undo(key: string, ticket: string, token: string): void {
    this.#view.undo(key, ticket, token);
    void this.#flushUndos();
  }

  /** Sends the undos not yet answered (each one call); one that fails is sent again before the next renewal. */
  #flushUndos(): Promise<unknown> {
    const view = this.#view;
    return Promise.allSettled(
      view.undosToSend().map(([token, undo]) =>
        this.#call(CANCEL, [undo.key, undo.ticket ?? '', token, this.#o.leaseTtl, '1', ...this.#limitArgs()], 'undo').then(
          () => view.undoAnswered(token),
          () => view.undoFailed(token),
        ),
      ),
    );
  }

  /** The wake-up channel, subscribed once a waiter waits (on a connection of its own: a subscribed one takes no commands). */
  #subscribe(): void {
    if (this.#subscribing !== null || this.#view.closed) return;
    const channel = `${this.#prefix}:wake`;
    this.#subscribing = (async () => {
      const sub = this.#o.client.duplicate();
      this.#subscriber = sub;
      sub.on('error', () => {
        // The duplicate reconnects by itself; a wake-up lost meanwhile is made up for by the renewal's poll.
      });
      await sub.connect();
      if (this.#view.closed) return sub.destroy() as undefined;
      const subscriber = sub as unknown as { sSubscribe(channel: string, listener: (message: string) => void): Promise<void> };
      await subscriber.sSubscribe(channel, (message) => this.#onMessage(String(message)));
      // What was published before the subscription took: ask once for every waiter.
      for (const waiter of this.#view.waiters) void this.#poll(waiter);
    })().catch(() => {
      this.#subscribing = null;
    });
  }

  /** A wake-up: `<ticket> g|x` (ask now) or `<ticket> <ms>` (retry then). */
  #onMessage(message: string): void {
    const space = message.indexOf(' ');
    const waiter = this.#view.hinted(message.slice(0, space), message);
    if (waiter === undefined) return;
    const what = message.slice(space + 1);
    if (what === 'g' || what === 'x') void this.#poll(waiter);
    else this.#retryIn(waiter, Number(what));
  }

  /** One call for every permit held and every ticket waiting (see lua/limiter-renew.lua). */
  async #renew(): Promise<void> {
    const view = this.#view;
    const sent = performance.now();
    const { permits, waiters } = view.toRenew(sent);
    // (Sent first, on the same connection: Redis runs them before the renewal.)
    void this.#flushUndos();
    const args: (string | number)[] = [view.pid, this.#o.leaseTtl, permits.length, waiters.length, ...this.#limitArgs()];
    for (const p of permits) args.push(p.key, p.token);
    for (const w of waiters) args.push(w.key, w.ticket);
    try {
      const reply = (await this.#call(RENEW, args, 'renewal')) as unknown[];
      const ask = view.renewed(sent, permits, {
        lostTokens: (reply[0] as unknown[]).map(String),
        tickets: [...(reply[1] as unknown[]), ...(reply[2] as unknown[])].map(String),
        processes: Number(reply[3]),
        admitted: Number(reply[4]),
        rejected: Number(reply[5]),
        limits: (reply[7] as unknown[]).map((v) => (String(v) === '' ? undefined : Number(v))),
      });
      for (const waiter of ask) void this.#poll(waiter);
    } catch (error) {
      if (unreachable(error)) {
        view.markDown(downError(error));
        // Waiters are not left waiting for wake-ups that cannot come: each follows whenRedisFails now (their
        // tickets leave the line once Redis answers the undo).
        for (const waiter of waiters) this.#degradeWaiter(waiter);
      }
    }
  }

  async setLimits(settings: LimitSettings): Promise<void> {
    const limits = this.#view.setLimits(settings);
    await this.#call(SET, [...limitArgs(limits), this.#o.leaseTtl], 'setLimits');
  }

  stats(): RedisLimiterStats {
    return { ...this.#view.stats(), redisDown: this.#view.down !== null };
  }

  /** This process's waiters per key, longest waiting first (the fleet's other processes' are theirs). */
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
    leaving.push(closing.fallback, this.#flushUndos(), this.#call(LEAVE, [this.#view.pid], 'close'));
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
 * key when `key` is given). See docs/durable/limiters.md.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a missing or bad client, name or option.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a limit, `leaseTtl`, `maxWaiting` or `callTimeout` out of range.
 */
export function redisLimiter<T = unknown>(options: RedisLimiterOptions<T>): RedisLimiter<T> {
  return new RedisLimiterImpl(resolveLimiterOptions(options));
}
