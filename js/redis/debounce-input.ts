// Debounce per key for `redisWorker` (`redisWorker(fn, { debounce })`, docs/redis/flow-control.md#debounce).
//
// The same settings and the same decision as in-process sessions (`arrive` and `due` of core/debounce.ts), made
// inside the session, on the log's clock, out of what the session rule already makes deterministic: the handler's
// input is filtered, and what is pending (a held event with its group's start, or a quiet period) lives in one
// durable timer of the session, with a reserved key: a later event replaces it, and its wake-up is the delivery
// (trailing) or the end of the quiet period (leading). So a replay takes the same inputs, makes the same timers,
// and a checkpoint records what is pending with them; a restored session reads it back from its pending timer.
// A pending timer keeps the session open (no idle end), so a group is never cut by one.
import { arrive, due, type Debounce, type KeyState } from '../core/debounce';
import { invalidReturn } from '../errors';
import type { StreamContext, StreamHandler } from '../types';

/** The reserved key of the session's debounce timer. */
export const DEBOUNCE_TIMER_KEY = 'velo.debounce';
/** What a debounce timer's payload adds to the event it holds, at most (the field, the group's two times, brackets). */
export const DEBOUNCE_OVERHEAD_BYTES = 128;
/** The field of a debounce timer's payload: `[since, last, held?]` (`held` a one-element array: the held event). */
const FIELD = 'velo.debounce';

type Pending = [since: number, last: number, held?: [unknown]];

/**
 * What the filter needs of the session besides `ctx`: its debounce timer (made, replaced and cancelled here, not
 * through `ctx`, which refuses the reserved key to the handler), what it had pending when the session started, a
 * counter.
 */
export interface DebounceSession {
  /** Makes (or replaces) the session's debounce timer, as `ctx.wakeAt` would (`TimerPastAgeError` the same): its id. */
  wake(time: number, payload: unknown): number;
  /** Cancels the session's debounce timer. */
  cancel(): void;
  /** The session's pending debounce timer when it starts (a restored session's): its id and payload, decoded. */
  pending(): { id: number; payload: unknown } | undefined;
  /** An event was dropped (collapsed into a later one, or within a quiet period). */
  dropped(): void;
}

/** The pending state a payload of ours carries, and its held event if any. */
function pendingOf(payload: unknown): { state: KeyState; held: [unknown] | undefined } | undefined {
  if (payload === null || typeof payload !== 'object') return undefined;
  const p = (payload as Record<string, unknown>)[FIELD];
  if (!Array.isArray(p) || typeof p[0] !== 'number' || typeof p[1] !== 'number') return undefined;
  const held = Array.isArray(p[2]) && p[2].length === 1 ? (p[2] as [unknown]) : undefined;
  return { state: { since: p[0], last: p[1] }, held };
}

/**
 * The handler's input, debounced. Trailing: each event is held (the one held before is dropped) in the debounce
 * timer, due at `due()`; the timer's wake-up delivers it. Leading: an event is delivered or dropped by `arrive()`,
 * and the timer marks the quiet period (its wake-up ends it). An event held when the session's input ends (a cap)
 * is delivered then. A timer whose time is past the session's age end cannot be made: the event goes now.
 */
async function* debounced(
  events: AsyncIterable<unknown>,
  ctx: StreamContext,
  d: Debounce,
  session: DebounceSession,
): AsyncGenerator<unknown, void, undefined> {
  const pending = session.pending();
  const restored = pending === undefined ? undefined : pendingOf(pending.payload);
  let state: KeyState | undefined = restored?.state;
  let held: [unknown] | undefined = restored?.held;
  /** The entry id (`t<id>`) of the debounce timer pending, if any: its wake-up is ours; any other timer's is the handler's. */
  let timer = pending === undefined ? '' : `t${pending.id}`;
  for await (const event of events) {
    const id = ctx.entry?.id;
    if (id !== undefined && id.startsWith('t')) {
      if (id !== timer) {
        // A wake-up of one of the handler's own timers: not an event of the key, so it goes through as it is.
        yield event;
        continue;
      }
      // Ours, due: trailing, the held event goes; leading, the quiet period ends.
      timer = '';
      const out = held;
      state = undefined;
      held = undefined;
      if (out !== undefined) yield out[0];
      continue;
    }
    const time = ctx.entry?.time ?? 0;
    const { action, state: next } = arrive(state, time, d);
    if (action === 'drop' || (action === 'hold' && held !== undefined)) session.dropped();
    state = next;
    held = action === 'hold' ? [event] : undefined;
    const payload: Pending = held === undefined ? [next.since, next.last] : [next.since, next.last, held];
    try {
      timer = `t${session.wake(due(next, d), { [FIELD]: payload })}`;
    } catch (error) {
      if ((error as { code?: unknown })?.code !== 'ERR_VELO_TIMER_PAST_AGE') throw error;
      // Past the session's age end: nothing is pending past it; a held event goes now.
      session.cancel();
      timer = '';
      state = undefined;
      if (held !== undefined) {
        const out = held;
        held = undefined;
        yield out[0];
      }
      continue;
    }
    if (action === 'deliver') yield event;
  }
  // The input ended (a cap): a held event was accepted, so it is delivered, as end(key) delivers it in-process.
  if (held !== undefined) yield held[0];
}

/** `handler`, whose input is debounced by `d`. */
export function debouncedHandler<I, O>(
  handler: StreamHandler<I, O>,
  d: Debounce,
  session: DebounceSession,
  label: string,
): StreamHandler<I, O> {
  return async function* debouncedSession(input, ctx) {
    const iterable: unknown = handler(debounced(input, ctx, d, session) as AsyncIterable<I>, ctx);
    if (iterable === null || typeof (iterable as AsyncIterable<O>)?.[Symbol.asyncIterator] !== 'function') {
      if (typeof (iterable as PromiseLike<unknown> | null)?.then === 'function') Promise.resolve(iterable).catch(() => {});
      throw invalidReturn(`The handler of "${label}" must return an async iterable (write it as an async function*)`);
    }
    yield* iterable as AsyncIterable<O>;
  };
}
