// Entry ids of a partition's log (`<ms>-<seq>`): Redis' time when each entry was added, and their order.

/**
 * Redis' clock when the entry was added, ms: the first part of its id. Read digit by digit (several times per
 * event on the drain's path: a slice and a string-to-number conversion cost more); anything but 1 to 15 digits
 * and a dash (15 digits are exact as a double) takes the plain reading, so the answer is that of
 * `Number(id.slice(0, id.indexOf('-')))` for every string.
 */
export function idTime(id: string): number {
  let ms = 0;
  for (let i = 0; i < id.length && i <= 15; i++) {
    const digit = id.charCodeAt(i) - 48;
    if (digit >= 0 && digit <= 9) ms = ms * 10 + digit;
    else if (digit === -3 && i > 0) return ms;
    else break;
  }
  return Number(id.slice(0, id.indexOf('-')));
}

/** The entry id just before `id` in the log (XREADGROUP with an id returns the entries after it). */
export function idBefore(id: string): string {
  const dash = id.indexOf('-');
  const seq = Number(id.slice(dash + 1));
  const ms = Number(id.slice(0, dash));
  return seq > 0 ? `${ms}-${seq - 1}` : `${ms - 1}-18446744073709551615`;
}

/** Negative if entry id `a` is before `b` in the log, 0 if the same. */
export function logOrder(a: string, b: string): number {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  return Number(a.slice(0, da)) - Number(b.slice(0, db)) || Number(a.slice(da + 1)) - Number(b.slice(db + 1));
}
