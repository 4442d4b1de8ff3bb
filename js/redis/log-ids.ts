// Entry ids of a partition's log (`<ms>-<seq>`): Redis' time when each entry was added, and their order.

/** Redis' clock when the entry was added, ms: the first part of its id. */
export function idTime(id: string): number {
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
