// Small rules about event sources, shared by the stream's sender and the pull (pull.ts).

/** A Node Readable (or anything else that closes by `destroy()`). */
export function isDestroyable(source: object): source is { destroy(): void } {
  return typeof (source as { destroy?: unknown }).destroy === 'function';
}

/** An iterator's `next()` answer, refused unless it is an object (as `for...of` refuses it), so a bad source fails instead of sending `undefined` forever. */
export function checkedResult<T>(r: IteratorResult<T>): IteratorResult<T> {
  if (typeof r !== 'object' || r === null) {
    throw new TypeError(`Iterator result ${String(r)} is not an object (the source's next() must return { value, done })`);
  }
  return r;
}
