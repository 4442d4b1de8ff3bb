// How much a partition's reads ask for, and when dispatching a large one gives the event loop a turn.
import type { Clock } from '../common/clock';

/** A partition behind (its reads come back full) reads up to this many times `readCount` at a time. */
const BACKLOG_READS = 4;

/**
 * After each session a read's dispatch opens, the dispatch waits for a microtask: the handler then takes its first event
 * before the next opening, not after the whole read's (an opening costs about 2-3x a later event: a read of 256 new
 * keys held the first key's event behind 255 openings). Not a turn of the event loop: that let the outbox commit
 * every few openings (7x the commits per opening, measured).
 */
const OPENED: Promise<void> = Promise.resolve();

/**
 * Entries asked for: `readCount`, doubled after each read that came back full and went to its sessions without
 * waiting, up to BACKLOG_READS times it (a backlog the sessions keep up with: each commit then carries more outputs
 * per session, so fewer marks written per output); back to `readCount` after any other read (a short one, or one
 * whose sessions made it wait: a slow handler or onOutput leaves the backlog in the log).
 */
export class ReadPace {
  #want: number;
  /** Entries of the current read dispatched since the last turn. */
  #given = 0;
  /** An entry of the current read opened a session since the last `turn`. */
  #opened = false;
  #waited = false;

  constructor(
    readonly readCount: number,
    readonly clock: Clock,
  ) {
    this.#want = readCount;
  }

  /** The entries the next read asks for. */
  get want(): number {
    return this.#want;
  }

  /** A read came back (or failed): the next asks for `readCount` unless `done` says otherwise. */
  read(): void {
    this.#want = this.readCount;
    this.#given = 0;
    this.#opened = false;
    this.#waited = false;
  }

  /** An entry of the read opened a session. */
  opened(): void {
    this.#opened = true;
  }

  /**
   * Before an entry of the read is dispatched: a turn of the event loop after each `readCount` entries (its timers,
   * the leases' renewals, do not wait for the whole read's sessions to open), a microtask after an entry that opened
   * a session (`OPENED`), or undefined.
   */
  turn(): Promise<void> | undefined {
    if (++this.#given > this.readCount) {
      this.#given = 1;
      this.#opened = false;
      return new Promise<void>((resolve) => this.clock.setImmediate(resolve));
    }
    if (!this.#opened) return undefined;
    this.#opened = false;
    return OPENED;
  }

  /** An entry of the read had to wait for its session. */
  waited(): void {
    this.#waited = true;
  }

  /** Every entry of a read of `asked` that gave `got` was dispatched. */
  done(asked: number, got: number): void {
    if (got === asked && !this.#waited) this.#want = Math.min(asked * 2, this.readCount * BACKLOG_READS);
  }
}
