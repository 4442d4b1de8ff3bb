// The events of `sendMany`, read the same way on every backend: an array or other iterable (not a string) of
// [key, event] pairs, each checked before anything is written.
import { describe, invalidType } from '../../errors';
import { readingOptions } from '../../config';

/** Calls `each(key, event)` for every pair of `events`, in order; refuses anything else with ERR_INVALID_ARG_TYPE. */
export function eachPair<I>(events: unknown, each: (key: string, event: I) => void): void {
  // (Events that cannot be read, a Proxy whose trap throws or an iterator that does, are refused with a code.)
  readingOptions('events', () => pairs(events, each));
}

function pairs<I>(events: unknown, each: (key: string, event: I) => void): void {
  if (typeof events === 'string' || typeof (events as { [Symbol.iterator]?: unknown } | null)?.[Symbol.iterator] !== 'function') {
    throw invalidType(`sendMany(): events must be an array (or iterable) of [key, event] pairs, not ${describe(events)}`);
  }
  let n = 0;
  for (const pair of events as Iterable<unknown>) {
    if (!Array.isArray(pair)) throw invalidType(`sendMany(): item ${n} must be a [key, event] pair, not ${describe(pair)}`);
    if (pair.length !== 2)
      throw invalidType(`sendMany(): item ${n} must be a [key, event] pair, not an array of ${pair.length} item(s)`);
    each(pair[0] as string, pair[1] as I);
    n++;
  }
}
