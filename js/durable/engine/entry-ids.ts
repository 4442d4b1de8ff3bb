// The ids of a session's entries, kept until it acks them (at its end, or with a checkpoint): as the two numbers of
// each `<ms>-<seq>` id in one array of doubles, 16 bytes an id, rather than a string each (40 bytes with its slot).
// A live session keeps every entry id it was given, for as long as it lives: on a drain, most of what outlived the
// young generation. The text is made again when the acks are committed.

/** Digits of an id part read as a number: 15 are exact in a double. */
const MAX_DIGITS = 15;

/** The number `text` from `from` to `to` writes, if canonical (digits, no leading zero but `0` itself), else NaN. */
function part(text: string, from: number, to: number): number {
  const n = to - from;
  if (n <= 0 || n > MAX_DIGITS || (n > 1 && text.charCodeAt(from) === 48)) return NaN;
  let value = 0;
  for (let i = from; i < to; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return NaN;
    value = value * 10 + digit;
  }
  return value;
}

export class EntryIds {
  /** Each id's ms and seq; NaN, NaN for an id of another form, kept as text in `#texts` by its index. */
  #parts: number[] = [];
  /** Ids of another form than `<ms>-<seq>` (none from Redis' own ids), by index; null while there are none. */
  #texts: Map<number, string> | null = null;

  get length(): number {
    return this.#parts.length >> 1;
  }

  push(id: string): void {
    const dash = id.indexOf('-');
    const ms = dash < 0 ? NaN : part(id, 0, dash);
    const seq = dash < 0 ? NaN : part(id, dash + 1, id.length);
    if (Number.isNaN(ms) || Number.isNaN(seq)) {
      (this.#texts ??= new Map()).set(this.length, id);
      this.#parts.push(NaN, NaN);
    } else if (this.#parts.length === 0) {
      // (A session's first id, most often its only one for a while: an array of two, not of room for 17.)
      this.#parts = [ms, seq];
    } else this.#parts.push(ms, seq);
  }

  /** The `i`-th id, as text. */
  at(i: number): string {
    const ms = this.#parts[2 * i];
    return Number.isNaN(ms) ? (this.#texts?.get(i) as string) : `${ms}-${this.#parts[2 * i + 1]}`;
  }

  /** Every id, as text, in order. */
  all(): string[] {
    const out = new Array<string>(this.length);
    for (let i = 0; i < out.length; i++) out[i] = this.at(i);
    return out;
  }

  /** Takes out the first `n` ids: as text, in order. */
  shift(n: number): string[] {
    const out = new Array<string>(Math.min(n, this.length));
    for (let i = 0; i < out.length; i++) out[i] = this.at(i);
    if (out.length === this.length) this.#parts = [];
    else this.#parts.splice(0, 2 * out.length);
    const texts = this.#texts;
    if (texts !== null) {
      const moved = new Map<number, string>();
      for (const [i, id] of texts) if (i >= out.length) moved.set(i - out.length, id);
      this.#texts = moved.size === 0 ? null : moved;
    }
    return out;
  }
}
