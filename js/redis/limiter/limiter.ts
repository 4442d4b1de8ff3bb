// redisLimiter(): one limiter shared by every process that names it, decided in Redis (one Lua script per
// decision, Redis' clock) — GCRA for rate, leases with fencing tokens for concurrency, a FIFO line of tickets per
// key for waiting, a shard channel to wake waiters. The scripts (lua/limiter-*.lua) hold the rules and say their
// keys; this file is the store they make (the calls, their arguments and replies, the wake-up channel) and the
// limiter's public types: the driver (durable/common/fleet-limiter.ts) moves between the calls and the process
// view, one renewal call per third of a lease; `whenRedisFails` applies when a call fails.
import type { LimitSettings, AcquireOptions } from '../../limits/types';
import type { FleetLimiter, FleetLimiterStats, FleetPermit } from '../../durable/common/clients';
import { RedisConnectionError, redisTimeoutError } from '../../errors';
import type { RedisClientLike } from '../log/connection';
import { type LimiterEntry, type RedisLimiterOptions, type Resolved, resolveLimiterOptions } from './limiter-options';
import { type Limits, keyOf, limitArgs } from '../../durable/common/limiter-rules';
import type { Renewed } from '../../durable/common/limiter-view';
import { type AcquireAnswer, type AcquireCall, FleetLimiterDriver, type LimiterStore } from '../../durable/common/fleet-limiter';
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

/**
 * A permit of a Redis limiter (a `FleetPermit`): its token is made by this process before it asks (a random id of
 * the limiter object and a counter).
 */
export interface RedisPermit extends FleetPermit {
  /** Whence it came: 'redis', 'open' (fail-open: counted nowhere) or 'local' (the in-process fallback). */
  readonly source: 'redis' | 'open' | 'local';
}

/** `stats()` of a Redis limiter: a fleet limiter's, and `redisDown` (the same as `backendDown`). */
export interface RedisLimiterStats extends FleetLimiterStats {
  /** Whether the last call to Redis failed: `backendDown`, by its name of before. */
  redisDown: boolean;
}

/** A limiter shared by a fleet on Redis (see {@link redisLimiter}). */
export interface RedisLimiter<T = unknown> extends FleetLimiter<T> {
  /** Waits in the fleet's line for a permit ('throttle'), or refuses at once ('reject'). */
  acquire(item: T, options?: AcquireOptions): Promise<RedisPermit>;
  /** Stores the fleet's limits in Redis; resolves once stored (and the lines re-decided). */
  setLimits(settings: LimitSettings): Promise<void>;
  /** This process' view, plus the fleet's counters as of the last renewal. */
  stats(): RedisLimiterStats;
}

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

/** What the store reads of the options. */
type StoreOptions = Pick<Resolved<unknown>, 'client' | 'name' | 'leaseTtl' | 'maxWaiting'>;

/** A limiter's keys in Redis (`velo:lim:{<name>}:...`, one hash slot), each decision one script of lua/. */
class RedisLimiterStore implements LimiterStore<'redis'> {
  readonly kind = 'redis';
  readonly refusesLateGrants = false;
  /** Waiters do not poll: a wake-up is published for every turn, and the renewal makes up for one lost. */
  readonly pollInterval = undefined;
  readonly timeoutError = redisTimeoutError;
  readonly unreachable = unreachable;
  readonly downError = downError;
  readonly #o: StoreOptions;
  readonly #prefix: string;
  #closed = false;
  #subscriber: RedisClientLike | null = null;
  #subscribing: Promise<void> | null = null;

  constructor(options: StoreOptions) {
    this.#o = options;
    this.#prefix = `velo:lim:{${options.name}}`;
  }

  #run(script: Script, args: (string | number)[]): Promise<unknown> {
    return script.run(this.#o.client, [this.#prefix], args.map(String));
  }

  /** See lua/limiter-acquire.lua. */
  async acquire({ key, ticket, cost, reject, limits, token }: AcquireCall): Promise<AcquireAnswer> {
    const o = this.#o;
    const args = [key, ticket ?? '', cost, reject ? 'r' : 't', o.leaseTtl, o.maxWaiting, ...limitArgs(limits), token];
    const reply = (await this.#run(ACQUIRE, args)) as unknown[];
    const kind = String(reply[0]);
    if (kind === 'g') return { kind, token: String(reply[1]), grantedAt: Number(reply[2]) };
    if (kind === 'w') return { kind, ticket: String(reply[1]), retry: Number(reply[2]) };
    if (kind === 'r') return { kind, retryAfter: Number(reply[1]), at: Number(reply[2]) };
    return { kind: kind as 'f' | 'l' | 'x' | 'c' };
  }

  async release(key: string, token: string, limits: Limits): Promise<boolean> {
    return Number(await this.#run(RELEASE, [key, token, this.#o.leaseTtl, ...limitArgs(limits)])) === 1;
  }

  cancel(key: string, ticket: string | null, token: string | null, undo: boolean, limits: Limits): Promise<unknown> {
    return this.#run(CANCEL, [key, ticket ?? '', token ?? '', this.#o.leaseTtl, undo ? '1' : '', ...limitArgs(limits)]);
  }

  /** See lua/limiter-renew.lua. */
  async renew(
    pid: string,
    limits: Limits,
    permits: readonly { key: string; token: string }[],
    waiters: readonly { key: string; ticket: string }[],
  ): Promise<Renewed> {
    const args: (string | number)[] = [pid, this.#o.leaseTtl, permits.length, waiters.length, ...limitArgs(limits)];
    for (const p of permits) args.push(p.key, p.token);
    for (const w of waiters) args.push(w.key, w.ticket);
    const reply = (await this.#run(RENEW, args)) as unknown[];
    return {
      lostTokens: (reply[0] as unknown[]).map(String),
      tickets: [...(reply[1] as unknown[]), ...(reply[2] as unknown[])].map(String),
      processes: Number(reply[3]),
      admitted: Number(reply[4]),
      rejected: Number(reply[5]),
      limits: (reply[7] as unknown[]).map((v) => (String(v) === '' ? undefined : Number(v))),
    };
  }

  set(limits: Limits): Promise<unknown> {
    return this.#run(SET, [...limitArgs(limits), this.#o.leaseTtl]);
  }

  leave(pid: string): Promise<unknown> {
    return this.#run(LEAVE, [pid]);
  }

  /**
   * The wake-up channel, subscribed once a waiter waits (on a connection of its own: a subscribed one takes no
   * commands; it keeps the process alive until close()). A message is `<ticket> g|x` (ask now) or `<ticket> <ms>`.
   */
  listen(onHint: (hint: string) => void, onListening: () => void): void {
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
      await subscriber.sSubscribe(channel, (message) => {
        const m = String(message);
        const space = m.indexOf(' ');
        const what = m.slice(space + 1);
        onHint(what === 'g' || what === 'x' ? m.slice(0, space) : m);
      });
      onListening();
    })().catch(() => {
      this.#subscribing = null;
    });
  }

  /** (The subscription stays until close().) */
  idle(): void {}

  async close(): Promise<void> {
    this.#closed = true;
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
  return startRedisLimiter(options);
}

/** `redisLimiter` for the entry point `entry.what` (named in its errors), its failure policy `entry.policy`. */
export function startRedisLimiter<T>(options: RedisLimiterOptions<T>, entry?: LimiterEntry): RedisLimiter<T> {
  const o = resolveLimiterOptions(options, entry);
  const store = new RedisLimiterStore(o);
  return new FleetLimiterDriver(store, o, (item: T) => keyOf(o.name, o.key, item), 'redisDown');
}
