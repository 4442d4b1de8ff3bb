// Small rules about event sources, shared by the stream's sender and the pull (pull.ts).
import { describe, invalidReturn, invalidType } from '../errors';
import { kLeftCut } from './protocol';

/**
 * The abort controllers of sources made by `feed()` from a function (`feed((signal) => source)`): aborted when the
 * stream stops taking events from the source before its end (`closeSource`, `closeUnread`), never after it ended.
 */
const sourceAborts = new WeakMap<object, AbortController>();

/** `source` was made for `controller`'s signal: closing it aborts that signal. */
export function abortsWith(source: object, controller: AbortController): void {
  sourceAborts.set(source, controller);
}

/** Whether `source` was made by `feed()` for a signal of its own (nobody else holds it to close it). */
export function madeForSignal(source: object): boolean {
  return sourceAborts.has(source);
}

/** Aborts the signal a source was made with, if it was (with `reason`, or the default `AbortError`). */
function abortSource(source: object, reason: unknown): void {
  const controller = sourceAborts.get(source);
  if (controller === undefined) return;
  sourceAborts.delete(source);
  try {
    controller.abort(reason);
  } catch {
    // (A listener that throws is reported by the event target itself; the stream is ending either way.)
  }
}

/**
 * Whether a source decides itself whether being left lost anything (`kLeftCut`: `ndjsonEvents`, whose idle end
 * between whole lines loses nothing sent): its stall is its own rule, not `SourceStalledError`.
 */
export function judgesOwnCut(source: object): boolean {
  try {
    return kLeftCut in source;
  } catch {
    return false;
  }
}

/** A Node Readable (or anything else that closes by `destroy()`). */
export function isDestroyable(source: object): source is { destroy(): unknown } {
  return typeof (source as { destroy?: unknown }).destroy === 'function';
}

/**
 * Closes a source the stream stops taking events from: the signal it was made with aborted (with `reason`, if
 * given: a stall's error), a Readable by `destroy()` (an async generator, and a
 * Readable's iterator, run `return()` only once a pending `next()` settles), and its iterator by `return()`, as
 * leaving a `for await` would. Never throws: a `return` that is not a function, throws or rejects (as a
 * `destroy()` that throws) is the source's failure to close, and the stream is ending either way; a cancel, the
 * idle deadline or the handler's end must still settle every read and run the handler's `finally`.
 */
export function closeSource(source: object, it: Iterator<unknown> | AsyncIterator<unknown>, reason?: unknown): void {
  abortSource(source, reason);
  if (isDestroyable(source)) destroyQuietly(source);
  try {
    const close = (it as { return?: unknown }).return;
    if (typeof close === 'function') Promise.resolve((close as () => unknown).call(it)).catch(() => {});
  } catch {
    // (See above: ignored.)
  }
}

const ignore = (): void => {};

/**
 * `source.destroy()`, its failure to close ignored however it comes: a throw, a returned promise that rejects (an
 * `async destroy()`), or an `'error'` event (a Readable whose `_destroy` fails emits one, and nobody else may be
 * listening to a source the stream never read: unheard, it would end the process).
 */
function destroyQuietly(source: { destroy(): unknown }): void {
  try {
    const on = (source as { on?: unknown }).on;
    if (typeof on === 'function') on.call(source, 'error', ignore);
    const result = source.destroy();
    if (result !== null && (typeof result === 'object' || typeof result === 'function')) Promise.resolve(result).catch(ignore);
  } catch {
    // (A throwing `on` or `destroy`: the source failed to close, and the stream is ending either way.)
  }
}

/**
 * Closes a source that will never be read: a feed refused by a closed input, cancelled or left before its first
 * read, a `run()` whose stream could not open. A Readable by `destroy()` (an
 * iterator made now and never started would close nothing); anything else by its iterator's `return()`, as
 * leaving a `for await` over it would. Resolves once that `return()` settled; never rejects (as `closeSource`).
 * Callers do not wait for it: a `return()` that never settles must not hold a refusal or a `return()` of the feed.
 */
export async function closeUnread(source: object): Promise<void> {
  abortSource(source, undefined);
  try {
    if (isDestroyable(source)) {
      destroyQuietly(source);
      return;
    }
    const asyncIterator = (source as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
    const it: unknown =
      typeof asyncIterator === 'function' ? asyncIterator.call(source) : (source as Iterable<unknown>)[Symbol.iterator]();
    const close = (it as { return?: unknown } | null)?.return;
    if (typeof close === 'function') await (close as () => unknown).call(it);
  } catch {
    // (See closeSource: the source failed to close, and the stream is ending either way.)
  }
}

/**
 * What a source's `Symbol.asyncIterator` (or `Symbol.iterator`) method returned, refused unless it is an object
 * (a function is one) with a `next()` method: `for await` refuses what is not an object, and fails at the first
 * step without a `next()`. The feed fails with this error, as with any other error of the source; a `next`
 * getter that throws (a revoked Proxy's too) fails it with its own error, as `for await` would.
 */
export function checkedIterator<T>(it: T): T {
  if (
    it === null ||
    (typeof it !== 'object' && typeof it !== 'function') ||
    typeof (it as { next?: unknown }).next !== 'function'
  ) {
    throw invalidType(`The source's iterator must be an object with a next() method, got ${describe(it)}`);
  }
  return it;
}

/** An iterator's `next()` answer, refused unless it is an object (as `for...of` refuses it), so a bad source fails instead of sending `undefined` forever. */
export function checkedResult<T>(r: IteratorResult<T>): IteratorResult<T> {
  if (typeof r !== 'object' || r === null) {
    throw invalidReturn(`Iterator result ${String(r)} is not an object (the source's next() must return { value, done })`);
  }
  return r;
}
