// Limiters used by a stream function's admission (`streamFn(handler, { limiter })`): each stream holds one permit
// of every limiter given, from its handler's start to its end.
//
// `open()` takes the permits available now. In 'reject' mode (a limiter made by `limiter()`) one that is not is
// refused at the call (ERR_VELO_RATE_LIMITED, synchronously). Otherwise the stream opens at once and accepts sends
// into its input buffer, and its handler starts once the rest were granted: the handler is wrapped, and the
// wrapper waits first. Meanwhile the stream's idle clock is held (it is not idle, it waits for admission), and
// the stream is held only weakly: dropped while it waits, it is collected, and its place in line is given up (a
// FinalizationRegistry aborts its acquire). For that, nothing the limiter holds (the acquire's continuation)
// reaches the stream: the continuation holds a WeakRef to the stream's gate, and the item it passes is a plain
// `{ id }` (with the session's `key`, for a stream of `fn.sessions()`; with the `key` and `cost` given to
// `open()`). Collected once admitted, the stream gives its permits back (`releaseWhenCollected`).
import { invalidReturn } from '../errors';
import type { AdmissionItem, StreamContext, StreamHandler } from '../types';
import { kHoldIdle, type HandlerStream } from './stream';
import { isLocalLimiter } from '../limits/local';
import { checkedPermit, keepWhenCollected, refundAll, releaseAll, releaseWhenCollected, tryFirst } from '../limits/use';
import type { Limiter, Permit } from '../limits/types';

/** One stream's admission: the permits granted so far, and (once made) the stream, whose idle clock it holds. */
export interface Admission {
  permits: Permit[];
  stream: HandlerStream<unknown, unknown> | undefined;
  waiting: boolean;
  /** Settles the wait (held here, so only the stream keeps it alive). */
  gate: { resolve(permits: Permit[]): void; reject(error: unknown): void } | undefined;
  /** The session's key, or the one given to `open()` (`AdmissionItem.key`). */
  key?: unknown;
  /** The cost given to `open()` (`AdmissionItem.cost`). */
  cost?: number;
}

/**
 * The item the limiters' `key`/`cost`/`fairness` functions get: the stream's id, its session's key if any, and the
 * `key` and `cost` given to `open()` if any.
 */
function admissionItem(id: string, key: unknown, cost: number | undefined): AdmissionItem {
  if (cost === undefined) return key === undefined ? { id } : { id, key };
  return key === undefined ? { id, cost } : { id, key, cost };
}

/** A collected gate: its stream was dropped while it waited; give up its place in line. */
const dropped = new FinalizationRegistry<AbortController>((controller) =>
  controller.abort(new Error('velo-stream: the stream waiting for admission was collected')),
);

/**
 * At `open()`: the permits available now, in order, up to the first that is not. A limiter of `limiter()` in
 * 'reject' mode with none throws (ERR_VELO_RATE_LIMITED, counted), after giving back those taken: those of
 * `limiter()` with their rate units, so a refused open spends no budget.
 */
export function admitAtOpen(limiters: readonly Limiter<unknown>[], what: string, key?: unknown, cost?: number): Admission {
  const permits: Permit[] = [];
  const item = admissionItem('', key, cost);
  try {
    for (const l of limiters) {
      // (Not counted as a refusal: the stream waits for it, or 'reject' mode's acquireNow counts it.)
      const permit = tryFirst(l, item);
      if (permit !== undefined) {
        permits.push(permit);
        continue;
      }
      if (isLocalLimiter(l) && l.rejects) permits.push(l.acquireNow(item, what));
      else break;
    }
  } catch (error) {
    refundAll(permits);
    throw error;
  }
  return { permits, stream: undefined, waiting: false, gate: undefined, key, cost };
}

/**
 * Acquires `limiters` from `permits.length` on, then hands the permits to the gate, or gives them back if the gate
 * was collected. A function of its own: a closure made in `waitRest` would share its scope, which reaches the
 * stream, and the limiter holds this continuation while it waits.
 */
async function acquireRest(
  limiters: readonly Limiter<unknown>[],
  permits: Permit[],
  item: AdmissionItem,
  signal: AbortSignal,
  gate: WeakRef<NonNullable<Admission['gate']>>,
): Promise<void> {
  try {
    for (let i = permits.length; i < limiters.length; i++)
      permits.push(checkedPermit(await limiters[i].acquire(item, { signal }), limiters[i], 'acquire()'));
  } catch (error) {
    // Refused, aborted (the stream cancelled) or closed: its handler never runs, so nothing was spent.
    refundAll(permits);
    gate.deref()?.reject(error);
    return;
  }
  const g = gate.deref();
  if (g === undefined) refundAll(permits);
  else g.resolve(permits);
}

/** Waits for the limiters after those granted at open; the stream's idle clock is held meanwhile. */
function waitRest(limiters: readonly Limiter<unknown>[], admission: Admission, ctx: StreamContext): Promise<Permit[]> {
  const permits = admission.permits;
  admission.permits = [];
  const item = admissionItem(ctx.id, admission.key, admission.cost);
  const controller = new AbortController();
  const signal = ctx.signal;
  if (signal.aborted) controller.abort(signal.reason);
  else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  const wait = new Promise<Permit[]>((resolve, reject) => {
    admission.gate = { resolve, reject };
  });
  dropped.register(admission.gate!, controller, controller);
  admission.waiting = true;
  admission.stream?.[kHoldIdle](true);
  void acquireRest(limiters, permits, item, controller.signal, new WeakRef(admission.gate!));
  return wait.finally(() => {
    dropped.unregister(controller);
    admission.gate = undefined;
    admission.waiting = false;
    admission.stream?.[kHoldIdle](false);
  });
}

/** `handler`, whose streams first hold a permit of every limiter (those not granted at open: waited for). */
export function admittedHandler<I, O>(
  handler: StreamHandler<I, O>,
  limiters: readonly Limiter<unknown>[],
  admission: Admission,
  label: string,
): StreamHandler<I, O> {
  return async function* admitted(input, ctx) {
    const permits = admission.permits.length < limiters.length ? await waitRest(limiters, admission, ctx) : admission.permits;
    admission.permits = [];
    // Collected with its handler stopped inside (at a yield, waiting for input), the stream never reaches the
    // `finally`: its permits come back with its `Admission`, which only the stream reaches.
    releaseWhenCollected(admission, permits);
    try {
      const iterable: unknown = handler(input, ctx);
      if (iterable === null || typeof (iterable as AsyncIterable<O>)?.[Symbol.asyncIterator] !== 'function') {
        if (typeof (iterable as PromiseLike<unknown> | null)?.then === 'function') Promise.resolve(iterable).catch(() => {});
        throw invalidReturn(`The handler of "${label}" must return an async iterable (write it as an async function*)`);
      }
      yield* iterable as AsyncIterable<O>;
    } finally {
      keepWhenCollected(permits);
      releaseAll(permits);
    }
  };
}
