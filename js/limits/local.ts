// The in-process limiter (`limiter(options)`): concurrency and/or a GCRA rate, optionally per key, that task
// stages and stream functions draw permits from (docs/flow-control.md).
//
// Every decision (may this acquire go now, who in line goes when a permit comes back or the rate allows, how the
// limits change) is the core's (crates/velo-core/src/limiter.rs, through the `NativeLimiter` class): this module
// checks options, turns key strings into the numbers the core keeps, holds the waiters' promises, settles them as
// the core decides, and arms one timer per limiter while a waiter waits on the rate.
//
// Why a timer of its own and not the thread's idle deadline set (addon.ts): that set runs on the native monotonic
// clock, while a limiter reads the clock it is given (`clock`, for tests and simulations in virtual time); and a
// limiter needs at most one timer, armed only while someone waits on the rate (so an idle limiter keeps nothing
// alive, and a waiter keeps the process alive as a pending read does).
import { assertOptionsObject } from '../config';
import {
  costOverBurstError,
  describe,
  invalidReturn,
  invalidType,
  invalidValue,
  limitCostError,
  limitKeyError,
  limitQueueFullError,
  limitPriorityError,
  limitTenantError,
  limiterClosedError,
  rateLimitedError,
} from '../errors';
import { integerOption, numberOption } from '../validate';
import { addon, ops } from '../addon/addon';
import type { NativeLimiter } from '../../native/index';
import type { AcquireOptions, Fairness, KeyWait, LimitSettings, Limiter, LimiterOptions, LimiterStats, Permit } from './types';
import { kDescribe, type LimiterDescription } from './describe';
import { acquireSignal } from './acquire-options';
import { LocalPermit } from './local-permit';

export type {
  AcquireOptions,
  Fairness,
  KeyWait,
  LimitSettings,
  Limiter,
  LimiterOptions,
  LimiterStats,
  Permit,
  RateLimit,
} from './types';

/**
 * A task stage's way to a limiter's permits from inside the task window's own native calls (js/core/task.ts,
 * `TaskPolicy.limiter`): a call takes its permit as the window starts it (`taskStart`) and gives it back as the window
 * settles it (`taskSettle`, `taskSettleDone`). The core decides each grant and release as `tryAcquire()` and
 * `release()` ask it (key 0, cost 1); only a limiter without `key`, `cost`, `fairness` and `priority` has one, since
 * those are asked of each item.
 */
export interface WindowPermits {
  /** Its `NativeLimiter.handle`. */
  readonly handle: number;
  /**
   * The time to take permits at, in ms on the limiter's clock (0 while it has no rate: the decision needs none), or
   * NaN if its clock threw: none is taken then, and the calls ask the limiter itself, which fails them as it does.
   */
  takeNow(): number;
  /** The time to give permits back at (0 while no one waits: nothing is decided then); 0 if the clock threw. */
  giveBackNow(): number;
  /** After permits came back: settles the waiters the core decided (granted), if any waited. */
  gaveBack(): void;
  /**
   * A task stream holding permits was collected: they came back without its line being served (the native side
   * has no clock to serve it at). Serves it now, as a timer's poll does. (A function property: the stream's
   * finalizer holds it alone.)
   */
  readonly collected: () => void;
}

/** A `tryAcquire` not counted as a refusal: the caller waits when it gives nothing (`tryFirst` in use.ts). */
export const kTryFirst = Symbol('velo.tryFirst');

/** A local limiter's `WindowPermits`, or undefined (`key`, `cost`, `fairness` or `priority` given). */
export const kWindowPermits = Symbol('velo.windowPermits');

/** `limiter()`'s options: the shared ones, and a clock for tests. */
export interface LocalLimiterOptions<T = unknown> extends LimiterOptions<T> {
  /**
   * The time in ms on a monotonic clock (default `performance.now`). For tests and simulations: with
   * `node:test`'s mock timers, pass `Date.now` and mock `Date` with `setTimeout`.
   */
  clock?: () => number;
}

/** The core's answers (`Decision` in crates/velo-core/src/limiter.rs). */
const enum Code {
  // (0, a permit that held nothing, is no longer given: every permit is held until released.)
  GrantedHeld = 1,
  Queued = 2,
  Limited = 3,
  QueueFull = 4,
  TooCostly = 5,
  Closed = 6,
}

const MAX_U32 = 2 ** 32 - 1;
/** Node's ceiling for timers (about 24.8 days): the longest period. */
const MAX_MS = 2 ** 31 - 1;
const OWN_KEYS = new Set(['name', 'concurrency', 'rate', 'key', 'cost', 'mode', 'maxWaiting', 'fairness', 'priority', 'clock']);
/** The bound of a priority either way (the core takes an i32). */
const MAX_PRIORITY = 1_000_000;
const FAIRNESS_KEYS = new Set(['by', 'weight']);
/**
 * How many tenants that waited lately keep their numbers (`#tenantId`): more than a line level's recent grants
 * (the core's fairness window, 512) can name, so a tenant the core still counts is known by the same number.
 */
const TENANT_NUMBERS_KEPT = 4096;

/** The heaviest tenant weight: grants per turn (more would make a turn as long as first come, first served). */
const MAX_WEIGHT = 10_000;
const SETTINGS_KEYS = new Set(['concurrency', 'rate']);
const RATE_KEYS = new Set(['limit', 'period', 'burst']);

let unnamed = 0;

/**
 * Reads `field` of an options object once; a throwing getter (or a revoked Proxy) is a clear error
 * (ERR_INVALID_ARG_TYPE, its `cause` the error thrown, as every option read of this package), not a crash.
 */
function read(options: object, field: string, where: string, fn = 'limiter'): unknown {
  try {
    return (options as Record<string, unknown>)[field];
  } catch (error) {
    throw invalidType(`${fn}(): the "${where}${field}" option could not be read (${describe(error)})`, error);
  }
}

function ownKeys(options: object, known: Set<string>, where: string, fn = 'limiter'): void {
  let keys: string[];
  try {
    keys = Object.keys(options);
  } catch (error) {
    throw invalidType(`${fn}(): the ${where || 'options'} object could not be read (${describe(error)})`, error);
  }
  for (const key of keys) {
    if (!known.has(key)) throw invalidValue(`${fn}(): unknown option "${where}${key}". Known options: ${[...known].join(', ')}`);
  }
}

/** Checked limits, as the core takes them (0: none). */
interface Checked {
  concurrency: number;
  limit: number;
  period: number;
  burst: number;
}

function checkSettings(settings: unknown, fn: string): Checked {
  assertOptionsObject(settings, fn === 'limiter' ? 'options' : 'settings', '{ concurrency: 4 }');
  const concurrencyValue = read(settings, 'concurrency', '', fn);
  const rateValue = read(settings, 'rate', '', fn);
  const out: Checked = { concurrency: 0, limit: 0, period: 0, burst: 0 };
  if (concurrencyValue !== undefined) out.concurrency = integerOption(fn, 'concurrency', concurrencyValue, 1, MAX_U32);
  if (rateValue !== undefined) {
    assertOptionsObject(rateValue, 'rate', '{ limit: 100, period: 60_000 }');
    ownKeys(rateValue, RATE_KEYS, 'rate.', fn);
    const limit = read(rateValue, 'limit', 'rate.', fn);
    const period = read(rateValue, 'period', 'rate.', fn);
    const burst = read(rateValue, 'burst', 'rate.', fn);
    out.limit = integerOption(fn, 'rate.limit', limit, 1, MAX_U32);
    out.period = numberOption(fn, 'rate.period', period, 1, MAX_MS, `a number of milliseconds from 1 to ${MAX_MS}`);
    out.burst = burst === undefined ? out.limit : integerOption(fn, 'rate.burst', burst, 1, MAX_U32);
  }
  if (out.concurrency === 0 && out.limit === 0) {
    throw invalidValue(
      `${fn}(): give "concurrency", "rate" or both, such as { concurrency: 4 } or { rate: { limit: 100, period: 60_000 } }`,
    );
  }
  return out;
}

/** A tenant with a waiter (fairness): the core's number for it, its weight, and how many of its acquires wait. */
interface TenantEntry {
  name: string;
  id: number;
  weight: number;
  waiting: number;
}

/** `fairness`, checked: its functions read once (so a getter cannot change them later). */
function checkFairness(value: unknown, mode: unknown): Fairness<never> | undefined {
  if (value === undefined) return undefined;
  assertOptionsObject(value, 'fairness', '{ by: (item) => item.tenant }');
  ownKeys(value, FAIRNESS_KEYS, 'fairness.');
  const by = read(value, 'by', 'fairness.');
  if (typeof by !== 'function')
    throw invalidType(`limiter(): the "fairness.by" option must be a function (item) => tenant. Received ${describe(by)}`);
  const weight = read(value, 'weight', 'fairness.');
  if (weight !== undefined && typeof weight !== 'function') {
    throw invalidType(
      `limiter(): the "fairness.weight" option must be a function (tenant) => number. Received ${describe(weight)}`,
    );
  }
  if (mode === 'reject') {
    throw invalidValue(`limiter(): "fairness" orders the waiters of mode 'throttle'; in mode 'reject' nothing waits`);
  }
  return { by, weight } as Fairness<never>;
}

interface Waiter {
  key: number;
  cost: number;
  tenant: TenantEntry | undefined;
  resolve: (permit: Permit) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

class LocalLimiter<T> implements Limiter<T> {
  readonly name: string;
  readonly #native: NativeLimiter;
  /** `#native`'s handle for the per-permit entry points (`ops.limiterTry`, `ops.limiterRelease`: raw N-API calls). */
  readonly #handle: number;
  readonly #key: ((item: T) => string) | undefined;
  readonly #cost: ((item: T) => number) | undefined;
  readonly #fairness: Fairness<T> | undefined;
  readonly #priority: ((item: T) => number) | undefined;
  /** Tenants with a waiter, by name; a tenant none of whose acquires waits is forgotten. */
  readonly #tenants = new Map<string, TenantEntry>();
  /** The numbers of the tenants that waited lately, least recently waiting first (`#tenantId`). */
  readonly #tenantNumbers = new Map<string, number>();
  /** The next new tenant number; `#tenantIdsWrapped` once they went round 2^32. */
  #nextTenantId = 0;
  #tenantIdsWrapped = false;
  readonly #clock: () => number;
  readonly #reject: boolean;
  readonly #maxWaiting: number;
  #hasRate: boolean;
  /** The limits in force (the core's copy decides; this one is what `[kDescribe]` shows). */
  #limits: Checked;
  /** Key strings by the number the core keeps for them (0: the one key of an unkeyed limiter), and back. */
  readonly #keyIds = new Map<string, number>();
  readonly #keyNames: (string | undefined)[] = [undefined];
  readonly #freeIds: number[] = [];
  #sweepAt = 1024;
  readonly #waiters = new Map<number, Waiter>();
  #nextId = 1;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #closed = false;
  /** `tryAcquire()` calls that gave no permit (the core counts the other refusals). */
  #tryRefused = 0;
  #windowPermits: WindowPermits | undefined;

  constructor(
    options: LocalLimiterOptions<T>,
    checked: Checked,
    parts: { name: string; reject: boolean; maxWaiting: number; clock: () => number },
  ) {
    this.name = parts.name;
    this.#key = options.key;
    this.#cost = options.cost;
    this.#fairness = options.fairness;
    this.#priority = options.priority;
    this.#clock = parts.clock;
    this.#reject = parts.reject;
    this.#maxWaiting = parts.maxWaiting;
    this.#hasRate = checked.limit > 0;
    this.#limits = checked;
    this.#native = new addon.NativeLimiter(
      checked.concurrency,
      checked.limit,
      checked.period,
      checked.burst,
      parts.reject,
      parts.maxWaiting,
    );
    this.#handle = this.#native.handle;
  }

  #keyOf(item: T): number {
    const fn = this.#key;
    if (fn === undefined) return 0;
    let key: unknown;
    try {
      key = fn(item);
    } catch (error) {
      throw limitKeyError(`Limiter "${this.name}": key(item) threw`, error);
    }
    if (typeof key !== 'string' || key.length === 0) {
      throw limitKeyError(`Limiter "${this.name}": key(item) must return a non-empty string. Received ${describe(key)}`);
    }
    let id = this.#keyIds.get(key);
    if (id === undefined) {
      if (this.#keyIds.size >= this.#sweepAt) this.#sweep();
      id = this.#freeIds.pop() ?? this.#keyNames.length;
      this.#keyIds.set(key, id);
      this.#keyNames[id] = key;
    }
    return id;
  }

  /** Forgets the numbers of keys the core forgot (rested, nothing held or waiting). */
  #sweep(): void {
    for (const id of this.#native.sweep(this.#clock())) {
      const name = this.#keyNames[id];
      if (name === undefined) continue;
      this.#keyIds.delete(name);
      this.#keyNames[id] = undefined;
      this.#freeIds.push(id);
    }
    this.#sweepAt = Math.max(1024, this.#keyIds.size * 2);
  }

  #costOf(item: T): number {
    const fn = this.#cost;
    if (fn === undefined) return 1;
    let cost: unknown;
    try {
      cost = fn(item);
    } catch (error) {
      throw limitCostError(`Limiter "${this.name}": cost(item) threw`, error);
    }
    if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 0 || cost > MAX_U32) {
      throw limitCostError(
        `Limiter "${this.name}": cost(item) must return a whole number from 0 to ${MAX_U32}. Received ${describe(cost)}`,
      );
    }
    return cost;
  }

  /** The item's tenant name (fairness): asked at every acquire, so a bad `by` is refused whether or not it waits. */
  #tenantOf(item: T): string {
    let tenant: unknown;
    try {
      tenant = this.#fairness!.by(item);
    } catch (error) {
      throw limitTenantError(`Limiter "${this.name}": fairness.by(item) threw`, error);
    }
    if (typeof tenant !== 'string' || tenant.length === 0) {
      throw limitTenantError(
        `Limiter "${this.name}": fairness.by(item) must return a non-empty string. Received ${describe(tenant)}`,
      );
    }
    return tenant;
  }

  /** The item's priority: asked at every acquire, so a bad `priority` is refused whether or not it waits. */
  #priorityOf(item: T): number {
    let priority: unknown;
    try {
      priority = this.#priority!(item);
    } catch (error) {
      throw limitPriorityError(`Limiter "${this.name}": priority(item) threw`, error);
    }
    if (typeof priority !== 'number' || !Number.isInteger(priority) || Math.abs(priority) > MAX_PRIORITY) {
      throw limitPriorityError(
        `Limiter "${this.name}": priority(item) must return a whole number from -${MAX_PRIORITY} to ${MAX_PRIORITY}. Received ${describe(priority)}`,
      );
    }
    // (-0 is 0.)
    return priority + 0;
  }

  /** The waiting tenant `name`, or a new entry (its weight asked now, once while it waits); not yet counted. */
  #tenantEntry(name: string): TenantEntry {
    const known = this.#tenants.get(name);
    if (known !== undefined) return known;
    const fn = this.#fairness!.weight;
    let weight: unknown = 1;
    if (fn !== undefined) {
      try {
        weight = fn(name);
      } catch (error) {
        throw limitTenantError(`Limiter "${this.name}": fairness.weight(tenant) threw`, error);
      }
      if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
        throw limitTenantError(
          `Limiter "${this.name}": fairness.weight(tenant) must return a whole number from 1 to ${MAX_WEIGHT}. Received ${describe(weight)} for tenant ${JSON.stringify(name)}`,
        );
      }
    }
    const id = this.#tenantId(name);
    return { name, id, weight: weight as number, waiting: 0 };
  }

  /** One of `tenant`'s acquires stopped waiting (granted, refused, aborted): a tenant with none left is forgotten. */
  #tenantLeft(tenant: TenantEntry | undefined): void {
    if (tenant === undefined || --tenant.waiting > 0) return;
    this.#tenants.delete(tenant.name);
  }

  /**
   * The number of tenant `name`, which starts waiting: the one it had, if it waited lately (one of the last
   * `TENANT_NUMBERS_KEPT` tenants to wait), else a new one. The core counts a tenant's recent grants by its number,
   * also while it does not wait, so a tenant keeps its number across short gaps, and a number is not reused (until
   * they went round 2^32, then never one of a waiting tenant): a reused one would hand its grants to another.
   */
  #tenantId(name: string): number {
    let id = this.#tenantNumbers.get(name);
    if (id !== undefined) this.#tenantNumbers.delete(name);
    else id = this.#newTenantId();
    this.#tenantNumbers.set(name, id);
    if (this.#tenantNumbers.size > TENANT_NUMBERS_KEPT) {
      this.#tenantNumbers.delete(this.#tenantNumbers.keys().next().value as string);
    }
    return id;
  }

  #newTenantId(): number {
    for (;;) {
      const id = this.#nextTenantId;
      this.#nextTenantId = (id + 1) >>> 0;
      if (this.#nextTenantId === 0) this.#tenantIdsWrapped = true;
      if (!this.#tenantIdsWrapped) return id;
      let used = false;
      for (const t of this.#tenants.values()) used ||= t.id === id;
      if (!used) return id;
    }
  }

  /** A granted permit (the core counts it held until it is released, whatever the limits: one decides). */
  #permit(key: number, cost: number): Permit {
    return new LocalPermit(this, key, cost);
  }

  /**
   * The error of a refusal. `now`: the time it was decided at, for the wait a rate refusal can tell (`retryAfter`,
   * ms: when the rate alone held it back); undefined for a waiter refused later (a full line or a lowered burst).
   */
  #refusal(code: number, what: string, key: number, cost: number, now?: number): Error {
    switch (code) {
      case Code.Limited: {
        const wait = now === undefined ? -1 : this.#native.retryAfter(key, cost, now);
        return rateLimitedError(this.name, what, wait < 0 ? undefined : wait);
      }
      case Code.QueueFull:
        return limitQueueFullError(this.name, this.#maxWaiting);
      case Code.TooCostly:
        return costOverBurstError(this.name, cost, this.#limits.burst);
      default:
        return limiterClosedError(this.name);
    }
  }

  acquire(item: T, options?: AcquireOptions): Promise<Permit> {
    // Always a promise: a failure of its own (a `clock` option that throws) rejects it, as the checks' do.
    try {
      return this.#acquire(item, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #acquire(item: T, options?: AcquireOptions): Promise<Permit> {
    let signal: AbortSignal | undefined;
    let key: number;
    let cost: number;
    let tenantName: string | undefined;
    let priority = 0;
    try {
      signal = acquireSignal(options, `Limiter "${this.name}": acquire()`);
      if (this.#closed) throw limiterClosedError(this.name);
      key = this.#keyOf(item);
      cost = this.#costOf(item);
      if (this.#fairness !== undefined) tenantName = this.#tenantOf(item);
      if (this.#priority !== undefined) priority = this.#priorityOf(item);
    } catch (error) {
      return Promise.reject(error);
    }
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as an aborted fetch rejects
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (this.#waiters.size === 0) {
      // Nobody waits: a permit now is one raw native call (`acquire` below would be a napi-rs one).
      const now = ops.limiterTry(this.#handle, key, cost, this.#hasRate ? this.#clock() : 0);
      if (now >= 0) return Promise.resolve(this.#permit(key, cost));
    }
    const id = this.#nextId++;
    let tenant: TenantEntry | undefined;
    let code: number;
    const now = this.#clock();
    if (tenantName === undefined) {
      code =
        priority === 0 ? this.#native.acquire(key, cost, id, now) : this.#native.acquireFair(key, cost, id, 0, 1, priority, now);
    } else {
      try {
        tenant = this.#tenantEntry(tenantName);
      } catch (error) {
        return Promise.reject(error);
      }
      code = this.#native.acquireFair(key, cost, id, tenant.id, tenant.weight, priority, now);
      if (code === Code.Queued && tenant.waiting++ === 0) this.#tenants.set(tenant.name, tenant);
    }
    if (code === Code.GrantedHeld) {
      this.#settleDecided();
      return Promise.resolve(this.#permit(key, cost));
    }
    if (code !== Code.Queued) {
      this.#settleDecided();
      return Promise.reject(this.#refusal(code, 'acquire()', key, cost, now));
    }
    return new Promise<Permit>((resolve, reject) => {
      const waiter: Waiter = { key, cost, tenant, resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        waiter.onAbort = () => this.#abort(id, signal);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.set(id, waiter);
      // An acquire may have granted earlier waiters of its key first (their time had come).
      this.#settleDecided();
      this.#syncTimer();
    });
  }

  /** A permit now, or the refusal thrown (counted): a stream's `open()` in 'reject' mode (js/core/admit.ts). */
  acquireNow(item: T, what: string): Permit {
    if (this.#closed) throw limiterClosedError(this.name);
    const key = this.#keyOf(item);
    const cost = this.#costOf(item);
    const now = this.#clock();
    const code = this.#native.acquire(key, cost, 0, now);
    if (code === Code.GrantedHeld) return this.#permit(key, cost);
    // (In 'reject' mode nothing waits: `Queued` cannot be the answer.)
    throw this.#refusal(code, what, key, cost, now);
  }

  /** A permit now, or undefined; a refusal is counted in `stats().rejected` (the caller goes without). */
  tryAcquire(item: T): Permit | undefined {
    const permit = this[kTryFirst](item);
    if (permit === undefined && !this.#closed) this.#tryRefused++;
    return permit;
  }

  /**
   * `tryAcquire` for a caller that waits (`acquire`) when it gives nothing (a task stage, a stream's admission):
   * not counted, as the wait that follows is granted or refused on its own.
   */
  [kTryFirst](item: T): Permit | undefined {
    if (this.#closed) return undefined;
    const key = this.#keyOf(item);
    const cost = this.#costOf(item);
    // Asked as by acquire(), so a bad answer is refused the same way whether the permit is free or not (a task
    // stage and a stream's admission try first, and wait only when that fails).
    if (this.#fairness !== undefined) this.#tenantOf(item);
    if (this.#priority !== undefined) this.#priorityOf(item);
    // (The time matters to a rate only: a concurrency limiter's fast path reads no clock.)
    const code = ops.limiterTry(this.#handle, key, cost, this.#hasRate ? this.#clock() : 0);
    return code < 0 ? undefined : this.#permit(key, cost);
  }

  [kWindowPermits](): WindowPermits | undefined {
    if (this.#key !== undefined || this.#cost !== undefined || this.#fairness !== undefined || this.#priority !== undefined)
      return undefined;
    return (this.#windowPermits ??= {
      handle: this.#handle,
      takeNow: () => {
        if (!this.#hasRate) return 0;
        try {
          return this.#clock();
        } catch {
          return NaN;
        }
      },
      giveBackNow: () => {
        if (this.#waiters.size === 0) return 0;
        try {
          return this.#clock();
        } catch {
          // (The calls settled: nobody is left to tell. The permits come back all the same.)
          return 0;
        }
      },
      gaveBack: () => {
        if (this.#waiters.size === 0) return;
        this.#settleDecided();
        this.#syncTimer();
      },
      collected: () => {
        if (this.#waiters.size === 0) return;
        try {
          if (this.#native.poll(this.#clock()) > 0) this.#settleDecided();
          this.#syncTimer();
        } catch {
          // (A clock that throws, in a finalizer: nothing can be decided without the time; the line is served at
          // the limiter's next decision.)
        }
      },
    });
  }

  /** A permit of `key` comes back (LocalPermit.release). */
  releaseKey(key: number): void {
    // (The time matters to waiters only: when one is granted, its wait is recorded.)
    if (this.#waiters.size === 0) {
      ops.limiterRelease(this.#handle, key, 0);
      return;
    }
    if (ops.limiterRelease(this.#handle, key, this.#clock()) > 0) this.#settleDecided();
    this.#syncTimer();
  }

  /** A permit of `key` granted for `cost` and never used comes back with its rate units (LocalPermit[kRefund]). */
  refundKey(key: number, cost: number): void {
    const now = this.#waiters.size === 0 ? 0 : this.#clock();
    if (this.#native.refund(key, cost, now) > 0) this.#settleDecided();
    this.#syncTimer();
  }

  #abort(id: number, signal: AbortSignal): void {
    const waiter = this.#waiters.get(id);
    if (waiter === undefined) return;
    this.#waiters.delete(id);
    this.#tenantLeft(waiter.tenant);
    this.#native.cancel(id, this.#clock());
    waiter.reject(signal.reason);
    this.#settleDecided();
    this.#syncTimer();
  }

  /** Settles the waiters the core decided (granted, or refused). */
  #settleDecided(): void {
    const decided = this.#native.takeDecided();
    for (let i = 0; i < decided.length; i += 2) {
      const id = decided[i];
      const code = decided[i + 1];
      const waiter = this.#waiters.get(id);
      // (An aborted waiter left the line before its abort settled: it is never decided.)
      if (waiter === undefined) continue;
      this.#waiters.delete(id);
      this.#tenantLeft(waiter.tenant);
      if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort);
      if (code === Code.GrantedHeld) waiter.resolve(this.#permit(waiter.key, waiter.cost));
      else waiter.reject(this.#refusal(code, 'acquire()', waiter.key, waiter.cost));
    }
  }

  /** One timer, armed while a waiter waits on the rate, for the earliest time one may go. */
  #syncTimer(): void {
    const at = this.#waiters.size > 0 && this.#hasRate ? this.#native.wakeAt() : -1;
    if (at < 0) {
      if (this.#timer !== undefined) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#timerAt = Infinity;
      }
      return;
    }
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, Math.ceil(at - this.#clock())));
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (this.#native.poll(this.#clock()) > 0) this.#settleDecided();
    this.#syncTimer();
  };

  setLimits(settings: LimitSettings): void {
    const checked = checkSettings(settings, 'setLimits');
    ownKeys(settings, SETTINGS_KEYS, '', 'setLimits');
    if (this.#closed) throw limiterClosedError(this.name);
    this.#hasRate = checked.limit > 0;
    this.#limits = checked;
    this.#native.setLimits(checked.concurrency, checked.limit, checked.period, checked.burst, this.#clock());
    this.#settleDecided();
    this.#syncTimer();
  }

  stats(): LimiterStats {
    const s = this.#native.stats(this.#clock());
    const stats: LimiterStats = {
      name: this.name,
      inUse: s.inUse,
      waiting: s.waiting,
      admitted: s.admitted,
      refunded: s.refunded,
      rejected: s.rejected + this.#tryRefused,
      waitedMs: { p50: s.p50Ms, p99: s.p99Ms },
      keys: s.keys,
      oldestWaitMs: s.oldestWaitMs,
    };
    if (this.#hasRate) stats.rate = s.rate;
    return stats;
  }

  waitingKeys(limit = 10): KeyWait[] {
    const n = integerOption(`Limiter "${this.name}": waitingKeys()`, 'limit', limit, 1, 1000);
    return this.#native.waitingKeys(n, this.#clock()).map((k) => ({
      key: this.#keyNames[k.key] ?? '',
      waiting: k.waiting,
      held: k.held,
      oldestWaitMs: k.oldestWaitMs,
    }));
  }

  /** Its kind, limits now, mode and keying (the dashboard's row). */
  [kDescribe](): LimiterDescription {
    const l = this.#limits;
    return {
      kind: 'in-process',
      ...(l.concurrency > 0 && { concurrency: l.concurrency }),
      ...(l.limit > 0 && { rate: { limit: l.limit, period: l.period, burst: l.burst } }),
      mode: this.#reject ? 'reject' : 'throttle',
      keyed: this.#key !== undefined,
    };
  }

  /** The waits since creation at `boundsUs`, for the Prometheus exporter. */
  waitHistogram(boundsUs: number[]): { count: number; sumUs: number; counts: number[] } {
    return this.#native.waits(boundsUs, this.#clock());
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#native.close();
      this.#settleDecided();
      this.#syncTimer();
    }
    return Promise.resolve();
  }

  /** Whether it refuses the excess (reject mode) rather than queueing it. */
  get rejects(): boolean {
    return this.#reject;
  }
}

/** True for a limiter made by `limiter()` (the Prometheus exporter reads its wait histogram). */
export function isLocalLimiter(value: unknown): value is LocalLimiter<unknown> {
  return value instanceof LocalLimiter;
}

/**
 * An in-process limiter: at most `concurrency` permits held at once and/or `rate.limit` units per `rate.period`
 * ms (GCRA, `rate.burst` at once), per `key(item)` when keyed. Task stages (`task(fn, { limiter })`), batch
 * stages and stream functions (`streamFn(h, { limiter })`) take permits from it; so can any code
 * (`acquire`/`release`). See docs/flow-control.md.
 */
export function limiter<T = unknown>(options: LocalLimiterOptions<T>): Limiter<T> {
  assertOptionsObject(options, 'options', '{ concurrency: 4 }');
  ownKeys(options, OWN_KEYS, '');
  const checked = checkSettings(options, 'limiter');
  const name = read(options, 'name', '');
  if (name !== undefined && typeof name !== 'string')
    throw invalidType(`limiter(): the "name" option must be a string of 1 to 200 characters. Received ${describe(name)}`);
  if (name !== undefined && (name.length === 0 || name.length > 200))
    throw invalidValue(`limiter(): the "name" option must be a string of 1 to 200 characters. Received ${describe(name)}`);
  const key = read(options, 'key', '');
  if (key !== undefined && typeof key !== 'function')
    throw invalidType(`limiter(): the "key" option must be a function. Received ${describe(key)}`);
  const cost = read(options, 'cost', '');
  if (cost !== undefined && typeof cost !== 'function')
    throw invalidType(`limiter(): the "cost" option must be a function. Received ${describe(cost)}`);
  const mode = read(options, 'mode', '');
  if (mode !== undefined && mode !== 'throttle' && mode !== 'reject') {
    throw invalidValue(`limiter(): the "mode" option must be 'throttle' or 'reject'. Received ${describe(mode)}`);
  }
  const maxWaitingValue = read(options, 'maxWaiting', '');
  const maxWaiting = maxWaitingValue === undefined ? 10_000 : integerOption('limiter', 'maxWaiting', maxWaitingValue, 1, MAX_U32);
  const fairness = checkFairness(read(options, 'fairness', ''), mode);
  const priority = read(options, 'priority', '');
  if (priority !== undefined && typeof priority !== 'function')
    throw invalidType(`limiter(): the "priority" option must be a function (item) => number. Received ${describe(priority)}`);
  if (priority !== undefined && mode === 'reject')
    throw invalidValue(`limiter(): "priority" orders the waiters of mode 'throttle'; in mode 'reject' nothing waits`);
  const clock = read(options, 'clock', '');
  if (clock !== undefined && typeof clock !== 'function')
    throw invalidType(`limiter(): the "clock" option must be a function. Received ${describe(clock)}`);
  const named = name ?? `limiter-${++unnamed}`;
  return new LocalLimiter<T>({ key, cost, fairness, priority } as LocalLimiterOptions<T>, checked, {
    name: named,
    reject: mode === 'reject',
    maxWaiting,
    clock: clock === undefined ? () => performance.now() : checkedClock(clock as () => unknown, named),
  });
}

/** A `clock` option's readings, each checked: a throw or anything but a number is a coded error of the call. */
function checkedClock(clock: () => unknown, name: string): () => number {
  return () => {
    let time: unknown;
    try {
      time = clock();
    } catch (error) {
      throw invalidReturn(`Limiter "${name}": its clock() threw`, error);
    }
    if (typeof time !== 'number' || Number.isNaN(time))
      throw invalidReturn(`Limiter "${name}": its clock() must return a number of ms. Received ${describe(time)}`);
    return time;
  };
}
