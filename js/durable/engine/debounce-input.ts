// Debounce per key for `redisWorker` (`redisWorker(fn, { debounce })`, docs/durable/debounce.md).
//
// The same settings and the same decision as in-process sessions (`arrive` and `due` of core/debounce.ts), made
// inside the session, on the log's clock, out of what the session rule already makes deterministic: the handler's
// input is filtered, and what is pending (a held event with its group's times, or a quiet period) lives in one
// durable timer of the session, with a reserved key: a later event replaces it, and its wake-up is the delivery
// (trailing) or the end of the quiet period (leading). So a replay takes the same inputs, makes the same timers,
// and a checkpoint records what is pending with them; a restored session reads it back from its pending timer.
// A pending timer keeps the session open (no idle end), so a group is never cut by one.
import { arrive, due, type Debounce, type KeyState } from '../../core/debounce';
import { invalidReturn } from '../../errors';
import type { StreamContext, StreamHandler } from '../../types';
import type { Codec } from '../common/codec';

/** The reserved key of the session's debounce timer. */
export const DEBOUNCE_TIMER_KEY = 'velo.debounce';

/** What the debounce timer holds: the group's times, and the held event (trailing) if any. */
export interface DebouncePending {
  readonly since: number;
  readonly last: number;
  readonly held?: readonly [unknown];
}

/**
 * The debounce timer's payload: the worker's own format (JSON), not the function's codec's, so that any codec
 * works (one of Buffers only could not encode an object). The held event is in it as its codec made it (base64).
 */
export function encodePending(codec: Codec<unknown>, p: DebouncePending): string {
  const out: { s: number; l: number; e?: string } = { s: p.since, l: p.last };
  if (p.held !== undefined) {
    const bytes = codec.encode(p.held[0]);
    out.e = (
      typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    ).toString('base64');
  }
  return JSON.stringify(out);
}

/** `encodePending`'s payload read back (the held event decoded by the function's codec). */
export function decodePending(codec: Codec<unknown>, payload: Buffer | string): DebouncePending {
  const p = JSON.parse(typeof payload === 'string' ? payload : payload.toString()) as { s: number; l: number; e?: string };
  return p.e === undefined
    ? { since: p.s, last: p.l }
    : { since: p.s, last: p.l, held: [codec.decode(Buffer.from(p.e, 'base64'))] };
}

/**
 * What the filter needs of the session besides `ctx`: its debounce timer (made, replaced and cancelled here, not
 * through `ctx`, which refuses the reserved key to the handler), what it had pending when the session started, a
 * counter.
 */
export interface DebounceSession {
  /** Makes (or replaces) the session's debounce timer, as `ctx.wakeAt` would (`TimerPastAgeError` the same): its id. */
  wake(time: number, pending: DebouncePending): number;
  /** Cancels the session's debounce timer. */
  cancel(): void;
  /** The session's pending debounce timer when it starts (a restored session's): its id and what it holds. */
  pending(): { id: number; pending: DebouncePending } | undefined;
  /** An event was dropped (collapsed into a later one, or within a quiet period). */
  dropped(): void;
  /**
   * The input ended (a cap) with an event held: it goes without its timer's wake-up, and `ctx.entry` shows that
   * timer, as the wake-up would have (what the handler took last is not in a checkpoint: a restored session would
   * show otherwise).
   */
  endsHeld(): void;
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
  let state: KeyState | undefined =
    pending === undefined ? undefined : { since: pending.pending.since, last: pending.pending.last };
  let held: readonly [unknown] | undefined = pending?.pending.held;
  /** The entry id (`t<id>`) of the debounce timer pending, if any: its wake-up is ours; any other timer's is the handler's. */
  let timer = pending === undefined ? '' : `t${pending.id}`;
  try {
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
      let armed = true;
      try {
        timer = `t${session.wake(due(next, d), held === undefined ? next : { ...next, held })}`;
      } catch (error) {
        if ((error as { code?: unknown })?.code !== 'ERR_VELO_TIMER_PAST_AGE') throw error;
        armed = false;
      }
      if (!armed) {
        // Due past the session's age end: nothing can be pending past it. A held event goes now; an event to deliver
        // goes as it would have; the quiet period ends with the session.
        session.cancel();
        timer = '';
        state = undefined;
        const out = held;
        held = undefined;
        if (out !== undefined) yield out[0];
        else if (action === 'deliver') yield event;
        continue;
      }
      if (action === 'deliver') yield event;
    }
    // The input ended (a cap): a held event was accepted, so it is delivered, as end(key) delivers it in-process.
    if (held !== undefined) {
      const out = held;
      held = undefined;
      session.endsHeld();
      yield out[0];
    }
  } finally {
    // The handler stopped taking its input (it returned or threw) while an event was held: that event is dropped
    // with the session (counted), as the rest of its input would be taken by no one.
    if (held !== undefined) session.dropped();
  }
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
