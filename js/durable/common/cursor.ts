// The text of a resume cursor (any backend's key readers): where a reader of some keys' outputs is in each of their partitions' output
// streams, as `<partition>:<ms>-<seq>` pairs joined by commas, partitions ascending (one pair for one key).
// Parsed strictly (one spelling per cursor, a bound on its length before anything else is looked at), so that a
// client's `Last-Event-ID` is either a position a reader of these keys could have written, or refused.
import { ResumeCursorError, describe } from '../../errors';

/** The largest id part, ms or seq: 2^64 - 1. */
const MAX_PART = '18446744073709551615';
/** The longest pair: a partition (at most 16384: 5 digits), `:`, and an id of two 20-digit parts. */
const PAIR_MAX = 5 + 1 + 20 + 1 + 20;
/** An id part as Redis writes it: no leading zero, at most 20 digits. */
const PART = /^(?:0|[1-9][0-9]{0,19})$/;
/** A partition number as a cursor writes it. */
const PARTITION = /^(?:0|[1-9][0-9]{0,4})$/;

/** The longest cursor of a reader of `count` partitions. */
export function maxCursorLength(count: number): number {
  return count * (PAIR_MAX + 1) - 1;
}

/** A 64-bit id part (digits, no leading zero) compared with another: negative, 0 or positive. */
function comparePart(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** Whether `id` is an entry id as Redis writes it (`<ms>-<seq>`, each 0 to 2^64 - 1, no leading zero). */
export function isEntryId(id: string): boolean {
  const dash = id.indexOf('-');
  if (dash < 0) return false;
  const ms = id.slice(0, dash);
  const seq = id.slice(dash + 1);
  return PART.test(ms) && PART.test(seq) && comparePart(ms, MAX_PART) <= 0 && comparePart(seq, MAX_PART) <= 0;
}

/** Two entry ids (as Redis writes them) in log order: negative if `a` is before `b`, 0 if the same. Exact to 2^64. */
export function compareIds(a: string, b: string): number {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  return comparePart(a.slice(0, da), b.slice(0, db)) || comparePart(a.slice(da + 1), b.slice(db + 1));
}

/** The entry id right before `id` (`id` not `0-0`): no entry can lie between the two. Exact to 2^64. */
export function idBefore(id: string): string {
  const dash = id.indexOf('-');
  const ms = BigInt(id.slice(0, dash));
  const seq = BigInt(id.slice(dash + 1));
  return seq > 0n ? `${ms}-${seq - 1n}` : `${ms - 1n}-${MAX_PART}`;
}

/** The cursor of `positions` (entry ids) in `partitions` (ascending, one id each). */
export function formatCursor(partitions: readonly number[], positions: readonly string[]): string {
  let text = '';
  for (let i = 0; i < partitions.length; i++) text += `${i === 0 ? '' : ','}${partitions[i]}:${positions[i]}`;
  return text;
}

/** A cursor's text in a message: at most 60 characters of it, as JSON. */
function shown(text: string): string {
  return text.length > 60 ? `${JSON.stringify(text.slice(0, 57))}...` : JSON.stringify(text);
}

/**
 * The positions a cursor gives for `partitions` (ascending: the partitions of the keys read), one entry id per
 * partition; a `ResumeCursorError` when it is longer than such a cursor can be (checked first), not in the
 * cursor's one spelling, or names other partitions. `what`: where it came from, for the message.
 */
export function parseCursor(text: unknown, partitions: readonly number[], what: string): string[] {
  if (typeof text !== 'string') {
    throw new ResumeCursorError('syntax', `${what} must be a string, not ${describe(text)}`);
  }
  const max = maxCursorLength(partitions.length);
  if (text.length > max) {
    throw new ResumeCursorError(
      'length',
      `${what} is ${text.length} characters long; a cursor of ${partitions.length === 1 ? 'one key' : `keys in ${partitions.length} partitions`} has at most ${max}`,
    );
  }
  const pairs = text.split(',');
  const malformed = () =>
    new ResumeCursorError('syntax', `${what} is not a cursor ("<partition>:<ms>-<seq>" pairs joined by commas): ${shown(text)}`);
  const positions: string[] = [];
  for (const pair of pairs) {
    const colon = pair.indexOf(':');
    if (colon < 0 || !PARTITION.test(pair.slice(0, colon)) || !isEntryId(pair.slice(colon + 1))) throw malformed();
    positions.push(pair.slice(colon + 1));
  }
  const named = pairs.map((pair) => Number(pair.slice(0, pair.indexOf(':'))));
  if (named.length !== partitions.length || named.some((p, i) => p !== partitions[i])) {
    throw new ResumeCursorError(
      'partitions',
      `${what} names partition${named.length === 1 ? '' : 's'} ${named.join(', ')}, not ${partitions.length === 1 ? 'the partition' : 'the partitions'} of the keys read (${partitions.join(', ')}): it is a cursor of other keys`,
    );
  }
  return positions;
}
