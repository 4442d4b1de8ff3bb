// A session's inbox: the entries of its key delivered to it that its handler has not taken, in log order, with
// those kept out of its stream (delivered while its handler waited, or for a step's permits) and the first one its
// codec could not decode. One owner: every change is a method here; the run delivers, `SessionInputs` gives.
import type { InputEntry } from '../common/transport';

/** `give`'s answer for an entry already in the session's stream (its handler takes it from there). */
export const IN_STREAM: unique symbol = Symbol('in stream');
/** `give`'s answer for the entry its codec could not decode. */
export const POISON: unique symbol = Symbol('poison');

export class Inbox {
  /**
   * Entries delivered, in log order, that its handler has not taken (counted in the partition's `buffered`): sent
   * into its stream ahead of the handler, a prefetch; those it never takes go to the key's next session.
   */
  #sent: InputEntry[] = [];
  /** Entries delivered before `sent[0]`: all taken. */
  #base = 0;
  /**
   * Entries at the front of `sent` the rule gave a session without hooks (in its stream; its handler takes them
   * in order). Always 0 with hooks: an entry given leaves `sent`.
   */
  #given = 0;
  /**
   * Entries of `sent` (its tail) decoded but kept out of its stream until the rule gives them, and their values, at
   * the same index (two arrays, not an object per entry: most of a drain's entries pass here).
   */
  readonly #outside: InputEntry[] = [];
  readonly #outsideValues: unknown[] = [];
  /** An entry its codec could not decode (every later one stays out of its stream): its input ends in front of it. */
  #poison: InputEntry | null = null;
  #poisonError: Error | null = null;
  /** The id of the last entry delivered (taken or not): the session's ids are trimmed by its checkpoints' acks. */
  #lastReceived: string | undefined = undefined;

  /** Entries delivered and not taken. */
  get length(): number {
    return this.#sent.length;
  }
  /** Entries delivered before the first not taken (all taken). */
  get base(): number {
    return this.#base;
  }
  /** Entries given to a session without hooks, not yet known taken. */
  get given(): number {
    return this.#given;
  }
  /** The first entry not given, if any. */
  get next(): InputEntry | undefined {
    return this.#sent[this.#given];
  }
  /** The first entry not taken, if any. */
  get first(): InputEntry | undefined {
    return this.#sent[0];
  }
  /** Its first entry is the one its codec could not decode. */
  get poisonFirst(): boolean {
    return this.#poison !== null && this.#sent[0] === this.#poison;
  }
  /** An entry its codec could not decode was delivered: later entries stay out of its stream. */
  get poisoned(): boolean {
    return this.#poison !== null;
  }
  /** Entries kept out of its stream. */
  get outside(): number {
    return this.#outside.length;
  }
  /** The value of its first entry, if that is kept out of its stream (decoded). */
  get firstValue(): unknown {
    return this.#outside[0] === this.#sent[0] ? this.#outsideValues[0] : undefined;
  }
  /** The id of the last entry delivered, if any. */
  get lastReceived(): string | undefined {
    return this.#lastReceived;
  }
  /** Entries delivered and not taken (read-only: for counting). */
  entries(): readonly InputEntry[] {
    return this.#sent;
  }

  // Most of the time each array holds one entry or none, between a session's events: one emptied drops its backing
  // store (`length = 0`), which a push made room for 17 in, so that an idle session keeps none of them.
  /** An entry delivered (into its stream, or kept out by `keepOut`/`poison`). */
  receive(entry: InputEntry): void {
    this.#sent.push(entry);
    this.#lastReceived = entry.id;
  }
  /** The entry just received stays out of its stream, decoded as `value`. */
  keepOut(entry: InputEntry, value: unknown): void {
    this.#outside.push(entry);
    this.#outsideValues.push(value);
  }
  /** The entry just received could not be decoded. */
  poison(entry: InputEntry, error: Error): void {
    this.#poison = entry;
    this.#poisonError = error;
  }

  /**
   * The rule gives the next entry (`next`): its value if it was kept out of the stream, else `IN_STREAM`; with
   * hooks (`taken`) it is taken now and leaves the inbox, without it is counted given. `POISON`: it is the entry
   * that could not be decoded (it leaves the inbox, kept by the session: `poisonError` says why its input ends).
   */
  give(taken: boolean): unknown {
    const entry = this.#sent[this.#given];
    if (entry === this.#poison) {
      this.#sent.splice(this.#given, 1);
      return POISON;
    }
    const outside = this.#outside.length > 0 && this.#outside[0] === entry;
    const value = outside ? this.shiftOutside() : IN_STREAM;
    if (taken) {
      this.#sent.shift();
      // (Emptied: its backing store goes too.)
      if (this.#sent.length === 0) this.#sent.length = 0;
      this.#base++;
    } else this.#given++;
    return value;
  }
  /** The error of the entry that could not be decoded. */
  get poisonError(): Error {
    return this.#poisonError as Error;
  }

  /** Takes out the first entry kept out of the stream: its value (its handler runs again: it goes into the stream). */
  shiftOutside(): unknown {
    this.#outside.shift();
    const value = this.#outsideValues.shift();
    if (this.#outside.length === 0) {
      this.#outside.length = 0;
      this.#outsideValues.length = 0;
    }
    return value;
  }

  /** Without hooks: drops the entries its handler has taken (`taken`: its stream's count since it opened); how many. */
  trimTaken(taken: number): number {
    const n = Math.min(taken - this.#base, this.#given);
    if (n <= 0) return 0;
    this.#sent.splice(0, n);
    if (this.#sent.length === 0) this.#sent.length = 0;
    this.#given -= n;
    this.#base += n;
    return n;
  }

  /** The session ended: every entry not taken, taken out (the inbox is empty after). */
  clear(): InputEntry[] {
    const sent = this.#sent;
    this.#sent = [];
    this.#outside.length = 0;
    this.#outsideValues.length = 0;
    return sent;
  }
}
