// Texts made from the application's values (an error's name and message, a cancel reason, a key) for places
// that must not fail because of them: a span, an output entry, a message to another thread. Reading such a
// value may throw (a revoked Proxy, a getter that throws, an object without `toString`); these never do, and
// they bound what they return without splitting a character.

/** `text` cut to at most `max` UTF-16 units, ending with `…` when cut, never between a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 0) return '';
  let end = max - 1;
  // A high surrogate at the cut would be left without its low half.
  const last = text.charCodeAt(end - 1);
  if (end > 0 && last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

/** What `read()` gives, if it is a string and reading it did not throw; else undefined. */
export function readString(read: () => unknown): string | undefined {
  try {
    const value = read();
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `value` is an Error (false for a revoked Proxy, whose prototype cannot be read). */
export function isError(value: unknown): value is Error {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

/** The text of a value that is not known to be readable: `String(value)`, or `fallback` when that throws. */
export function textOf(value: unknown, fallback = 'an unprintable value'): string {
  try {
    return String(value);
  } catch {
    return fallback;
  }
}

/**
 * Whether `text` is well-formed UTF-16 (no lone surrogate). Redis and Postgres store text as UTF-8, where a lone
 * surrogate becomes U+FFFD: two names or keys that differ only there would name one thing.
 */
export function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}
