// Small rules about event sources, shared by the stream's sender and the pull (pull.ts).

/** A Node Readable (or anything else that closes by `destroy()`). */
export function isDestroyable(source: object): source is { destroy(): void } {
  return typeof (source as { destroy?: unknown }).destroy === 'function';
}

/**
 * Closes a source the stream stops taking events from: a Readable by `destroy()` (an async generator, and a
 * Readable's iterator, run `return()` only once a pending `next()` settles), and its iterator by `return()`, as
 * leaving a `for await` would. Never throws: a `return` that is not a function, throws or rejects (as a
 * `destroy()` that throws) is the source's failure to close, and the stream is ending either way; a cancel, the
 * idle deadline or the handler's end must still settle every read and run the handler's `finally`.
 */
export function closeSource(source: object, it: Iterator<unknown> | AsyncIterator<unknown>): void {
  try {
    if (isDestroyable(source)) source.destroy();
  } catch {
    // (See above: ignored.)
  }
  try {
    const close = (it as { return?: unknown }).return;
    if (typeof close === 'function') Promise.resolve((close as () => unknown).call(it)).catch(() => {});
  } catch {
    // (See above: ignored.)
  }
}

/** An iterator's `next()` answer, refused unless it is an object (as `for...of` refuses it), so a bad source fails instead of sending `undefined` forever. */
export function checkedResult<T>(r: IteratorResult<T>): IteratorResult<T> {
  if (typeof r !== 'object' || r === null) {
    throw new TypeError(`Iterator result ${String(r)} is not an object (the source's next() must return { value, done })`);
  }
  return r;
}
