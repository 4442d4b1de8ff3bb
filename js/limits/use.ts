// Limiters used by task and batch stages (`task(fn, { limiter })`): each call, each retry attempt included, holds
// one permit of every limiter given (acquired in array order, released together when the attempt settles).
//
// The stage's `fn` is wrapped once, when the stage is made: the task runner (js/core/task.ts) calls the wrapper
// as it calls any `fn`, and follows its result the same way. A permit available now (`tryAcquire`) costs no
// promise; a call that must wait returns a promise that settles when its permits were granted and `fn` settled.
// The permits a call holds are kept in its slot's `HeldSlot` (in the call's context), so that they come back if the
// stream is collected with calls that never settle (`releaseWhenCollected`).
import { isPromise } from 'node:util/types';
import { describe, invalidReturn, invalidType, invalidValue } from '../errors';
import { otelApi, type Span } from '../tracing';
import type { TaskContext } from '../types';
import type { Limiter, Permit } from './types';
import { isLocalLimiter, kTryFirst, kWindowPermits, type WindowPermits } from './local';
import { kRefund } from './local-permit';

type Call<I, O> = (item: I, ctx: TaskContext) => O | Promise<O>;

const METHODS = ['acquire', 'tryAcquire', 'stats'] as const;
/** The native `then`, called on plain promises only (a subclass's would run its own code). */
// eslint-disable-next-line @typescript-eslint/unbound-method -- always called with an explicit receiver
const nativeThen = Promise.prototype.then;

/** A limiter (`acquire`, `tryAcquire`, `stats`), as `task()`, `streamFn()` and `redisWorker` take them. */
export function isLimiter(value: unknown): value is Limiter<unknown> {
  if (value === null || typeof value !== 'object') return false;
  try {
    const v = value as Record<string, unknown>;
    return typeof v.acquire === 'function' && typeof v.tryAcquire === 'function' && typeof v.stats === 'function';
  } catch {
    return false;
  }
}

/** The `limiter` option: one limiter or a non-empty array of them (copied: a later change of the array does nothing). */
export function checkLimiters(value: unknown, fn: string): readonly Limiter<unknown>[] | undefined {
  if (value === undefined) return undefined;
  let list: unknown[];
  try {
    list = Array.isArray(value) ? [...(value as unknown[])] : [value];
  } catch {
    list = [value];
  }
  if (list.length === 0 || !list.every(isLimiter)) {
    throw invalidType(
      `${fn}: the "limiter" option must be a limiter (made by limiter(), or any object with ${METHODS.join(', ')}) or a non-empty array of them. Received ${describe(value)}`,
    );
  }
  if (new Set(list).size !== list.length) {
    throw invalidValue(
      `${fn}: the same limiter is given twice in the "limiter" option: a call would wait for a permit it holds itself`,
    );
  }
  return list;
}

/**
 * What a limiter's `tryAcquire()` answered, or its `acquire()` resolved to: a permit (an object with `release()`),
 * else a coded error for the call (a limiter of another make may answer anything). `undefined` passes, for
 * `tryAcquire()`'s "none now".
 */
export function checkedPermit(value: unknown, limiter: Limiter<unknown>, call: string): Permit {
  let ok = false;
  try {
    ok = value !== null && typeof value === 'object' && typeof (value as Permit).release === 'function';
  } catch {
    // A revoked Proxy: not a permit.
  }
  if (!ok) {
    let name = '';
    try {
      name = String(limiter.name);
    } catch {
      // (Its name cannot be read either.)
    }
    throw invalidReturn(`Limiter "${name}": ${call} must give a permit (an object with release()). Received ${describe(value)}`);
  }
  return value as Permit;
}

/**
 * Gives a permit back; one whose release() throws, or returns a promise that rejects (a limiter of another make,
 * an `async release()`), counts as given back, and its rejection is not left unhandled.
 */
function releaseOne(permit: Permit): void {
  try {
    const released: unknown = permit.release();
    if ((released !== null && typeof released === 'object') || typeof released === 'function')
      Promise.resolve(released).catch(() => {});
  } catch {
    // Nothing else can be done with it: the call has settled, and its result stands.
  }
}

/** Gives the permits back, last first (see releaseOne). */
export function releaseAll(permits: Permit[]): void {
  for (let i = permits.length - 1; i >= 0; i--) releaseOne(permits[i]);
}

/**
 * Gives back permits granted and never used (a later limiter refused): those of `limiter()` with their rate units,
 * as if never asked (a refused open spends no budget); others are released, as their limiter's own API allows.
 */
export function refundAll(permits: Permit[]): void {
  for (let i = permits.length - 1; i >= 0; i--) {
    const permit = permits[i] as Permit & { [kRefund]?: () => void };
    if (typeof permit[kRefund] === 'function') permit[kRefund]();
    else releaseOne(permit);
  }
}

/**
 * Where a task call keeps the permits it holds, so that they come back if its stream is collected with calls that
 * never settle: one per slot of the stream's task window, reused call after call (js/core/task.ts).
 */
export class HeldSlot {
  permits: Permit | Permit[] | undefined = undefined;
}

/**
 * Permits whose holder was collected (a stream dropped while it could never end: its handler stopped at a yield,
 * its calls never settling) never reach the code that gives them back: they come back with the holder.
 */
const collectedHolders = new FinalizationRegistry<Permit[] | HeldSlot[]>((held) => {
  for (const h of held) {
    if (!(h instanceof HeldSlot)) releaseOne(h);
    else if (Array.isArray(h.permits)) releaseAll(h.permits);
    else if (h.permits !== undefined) releaseOne(h.permits);
  }
});

/** Gives `held` back when `holder` is collected, unless `keepWhenCollected(held)` came first. */
export function releaseWhenCollected(holder: object, held: Permit[] | HeldSlot[]): void {
  collectedHolders.register(holder, held, held);
}

/** Undoes `releaseWhenCollected` (the permits are given back by their holder). */
export function keepWhenCollected(held: Permit[] | HeldSlot[]): void {
  collectedHolders.unregister(held);
}

/** A task call's `HeldSlot`, in its context. */
export const kHeldSlot = Symbol('velo.heldSlot');

function slotOf(ctx: TaskContext): HeldSlot | undefined {
  return (ctx as { [kHeldSlot]?: HeldSlot })[kHeldSlot];
}

/** Gives `permits` back (one, or an array), and clears `slot` if it holds them. */
function giveBack(slot: HeldSlot | undefined, permits: Permit | Permit[]): void {
  if (slot !== undefined && slot.permits === permits) slot.permits = undefined;
  if (Array.isArray(permits)) releaseAll(permits);
  else releaseOne(permits);
}

/**
 * `limiter.tryAcquire(item)` for a caller that waits (`acquire`) when it gives nothing: a checked permit, or
 * undefined. A limiter of `limiter()` does not count that as a refusal (the wait after it is granted or refused).
 */
export function tryFirst(limiter: Limiter<unknown>, item: unknown): Permit | undefined {
  const permit: unknown = isLocalLimiter(limiter) ? limiter[kTryFirst](item) : limiter.tryAcquire(item);
  return permit === undefined ? undefined : checkedPermit(permit, limiter, 'tryAcquire()');
}

/** The active span (a task call's, when traced), to record the permit wait on. */
function activeSpan(): Span | undefined {
  const api = otelApi() as { trace: { getActiveSpan?(): Span | undefined } } | null;
  return api?.trace.getActiveSpan?.();
}

/**
 * A task stage's one limiter, when the task window can take its permits in its own native calls (js/core/task.ts):
 * a `limiter()` without `key`, `cost`, `fairness` and `priority`. A call granted its permit there runs `fn` itself;
 * one refused runs `limitedCall`'s, which waits in the limiter's line.
 */
export function windowPermits(limiters: readonly Limiter<unknown>[]): WindowPermits | undefined {
  if (limiters.length !== 1 || !isLocalLimiter(limiters[0])) return undefined;
  return limiters[0][kWindowPermits]();
}

/** `fn`, each call of which first holds a permit of every limiter in `limiters`. */
export function limitedCall<I, O>(fn: Call<I, O>, limiters: readonly Limiter<unknown>[]): Call<I, O> {
  const n = limiters.length;
  const release = (slot: HeldSlot | undefined, permits: Permit[]) => () => giveBack(slot, permits);

  /** Waits for the permits (holding those granted, in order), then calls `fn`; all are released when it settles. */
  async function waited(item: I, ctx: TaskContext, permits: Permit[], from: number): Promise<O> {
    const span = activeSpan();
    const started = performance.now();
    const slot = slotOf(ctx);
    if (slot !== undefined) slot.permits = permits;
    try {
      const signal = ctx.signal;
      for (let i = from; i < n; i++)
        permits.push(checkedPermit(await limiters[i].acquire(item, { signal }), limiters[i], 'acquire()'));
    } catch (error) {
      // The call never runs: the permits it was granted give their rate units back (refundAll).
      if (slot !== undefined && slot.permits === permits) slot.permits = undefined;
      refundAll(permits);
      throw error;
    }
    if (span !== undefined) {
      const waitedMs = performance.now() - started;
      span.setAttribute('velo.limiter.wait_ms', waitedMs);
      span.addEvent('velo.limiter.granted', {
        'velo.limiter.wait_ms': waitedMs,
        'velo.limiter.names': limiters.map((l) => l.name).join(','),
      });
    }
    try {
      return await fn(item, ctx);
    } finally {
      giveBack(slot, permits);
    }
  }

  if (n === 1) {
    // One limiter (the usual case): no array of permits, one release function per call.
    const only = limiters[0];
    return function limitedByOne(item: I, ctx: TaskContext): O | Promise<O> {
      const permit = tryFirst(only, item);
      if (permit === undefined) return waited(item, ctx, [], 0);
      const slot = slotOf(ctx);
      if (slot !== undefined) slot.permits = permit;
      let result: O | Promise<O>;
      try {
        result = fn(item, ctx);
      } catch (error) {
        giveBack(slot, permit);
        throw error;
      }
      if (isPromise(result) && Object.getPrototypeOf(result) === Promise.prototype) {
        const done = () => giveBack(slot, permit);
        void nativeThen.call(result, done, done);
        return result;
      }
      return settleThen(result, slot, permit);
    };
  }
  return function limited(item: I, ctx: TaskContext): O | Promise<O> {
    const permits: Permit[] = [];
    for (let i = 0; i < n; i++) {
      let permit: Permit | undefined;
      try {
        permit = tryFirst(limiters[i], item);
      } catch (error) {
        refundAll(permits);
        throw error;
      }
      if (permit === undefined) return waited(item, ctx, permits, i);
      permits.push(permit);
    }
    const slot = slotOf(ctx);
    if (slot !== undefined) slot.permits = permits;
    let result: O | Promise<O>;
    try {
      result = fn(item, ctx);
    } catch (error) {
      giveBack(slot, permits);
      throw error;
    }
    if (isPromise(result) && Object.getPrototypeOf(result) === Promise.prototype) {
      // Released when the call settles; the stage follows `result` itself, as without a limiter.
      const done = release(slot, permits);
      void nativeThen.call(result, done, done);
      return result;
    }
    return settleThen(result, slot, permits);
  };
}

/** A result that is not a plain promise: a plain value releases at once; another thenable when `await` settles it. */
function settleThen<O>(result: O | Promise<O>, slot: HeldSlot | undefined, permits: Permit | Permit[]): O | Promise<O> {
  if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
    return (async () => {
      try {
        return await result;
      } finally {
        giveBack(slot, permits);
      }
    })();
  }
  giveBack(slot, permits);
  return result;
}
