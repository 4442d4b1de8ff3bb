// How much a partition's reads ask for, and when dispatching a large one gives the event loop a turn.
import { type Clock, realClock } from '../common/clock';

/** A partition behind (its reads come back full) reads up to this many times `readCount` at a time. */
const BACKLOG_READS = 4;

/**
 * A partition's first entries are dispatched in a slice of this many (or `readCount`, if fewer), then the event loop
 * gets a turn: the outbox commits that slice's outputs then, so a worker started on a backlog commits its first
 * outputs after a slice, not after its first read of `readCount` (its commit, with Postgres' `effects`, a round trip
 * per output, waited behind the others' reads: 1.0-1.8 s to a worker's first output, bench/first-output.mjs).
 */
const FIRST_SLICE = 4;

/**
 * The longest the partitions of a process dispatch entries in one turn of its event loop, ms (by the clock's `now`),
 * while some of them dispatch their first entries (a worker's start, a takeover): past it, those wait for the next turn,
 * in turn. The replies their first commits wait for (a Postgres commit with `effects` is a transaction of a round
 * trip per output) are then handled between, not behind every partition's first read (a worker's 64 partitions read
 * 256 entries each on a backlog, in one turn of up to 1.35 s). Past its first `readCount` entries a partition
 * dispatches its reads whole again: a read's outputs then go in one commit (split at each turn, a drain on Postgres
 * made 1.5-2x the commits and ran at 0.57x).
 */
const TURN_MS = 10;

/** The dispatch of every partition run on one clock (one event loop): how long it has held the current turn. */
class LoopShare {
  /** When the current turn's dispatch began (-1: none yet). */
  #since = -1;
  /** The next turn, while some partition waits for it. */
  #next: Promise<void> | null = null;
  readonly #reset = (): void => {
    this.#since = -1;
  };

  constructor(readonly clock: Clock) {}

  /** Before an entry is dispatched: undefined while the turn has time left, else the next turn. */
  turn(): Promise<void> | undefined {
    const now = this.clock.now();
    if (this.#since < 0) {
      this.#since = now;
      this.clock.setImmediate(this.#reset);
      return undefined;
    }
    if (now - this.#since < TURN_MS) return undefined;
    return (this.#next ??= new Promise<void>((resolve) =>
      this.clock.setImmediate(() => {
        this.#next = null;
        this.#since = -1;
        resolve();
      }),
    ));
  }
}

/**
 * The process's share: on the machine's clock only. A virtual clock's time does not move while entries are
 * dispatched (a simulated process has no event loop to share).
 */
let loopShare: LoopShare | undefined;

function shareOf(clock: Clock): LoopShare | undefined {
  return clock === realClock ? (loopShare ??= new LoopShare(clock)) : undefined;
}

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
  /** Entries dispatched before the next turn of the event loop: FIRST_SLICE until the first such turn. */
  #slice: number;
  readonly #loop: LoopShare | undefined;
  /** The partition's first entries still to dispatch within the process's turns (`LoopShare`). */
  #sharing: number;

  constructor(
    readonly readCount: number,
    readonly clock: Clock,
  ) {
    this.#want = readCount;
    this.#slice = Math.min(readCount, FIRST_SLICE);
    this.#loop = shareOf(clock);
    this.#sharing = readCount;
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
   * the leases' renewals, do not wait for the whole read's sessions to open; the partition's first turn comes after
   * FIRST_SLICE), the next turn while its first `readCount` entries find the process's turn used up (`LoopShare`), a
   * microtask after an entry that opened a session (`OPENED`), or undefined.
   */
  turn(): Promise<void> | undefined {
    if (++this.#given > this.#slice) {
      this.#given = 1;
      this.#opened = false;
      if (this.#slice < this.readCount) {
        // After the first slice, two: its outputs reach the outbox in microtasks after this, and the outbox's flush
        // (a turn of its own) must come before the dispatch goes on.
        this.#slice = this.readCount;
        const clock = this.clock;
        return new Promise<void>((resolve) => clock.setImmediate(() => clock.setImmediate(resolve)));
      }
      return new Promise<void>((resolve) => this.clock.setImmediate(resolve));
    }
    const shared = this.#sharing > 0 ? (this.#sharing--, this.#loop?.turn()) : undefined;
    if (shared !== undefined) {
      this.#given = 1;
      this.#opened = false;
      return shared;
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
