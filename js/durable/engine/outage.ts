// A worker's backend that cannot be reached: every loop of every partition fails each call with a refused or lost
// connection, and would retry and report each failure every RETRY_MS (hundreds a second, against a server that is
// starting again). While such failures last (an outage: none more than QUIET_MS apart, and no call reached the
// server since the first):
// - a loop's wait before its retry grows with the outage (a quarter of it so far, up to MAX_RETRY_MS, give or take
//   a fifth), and is at least its share of the worker's pace (MIN_GAP_MS per loop waiting): the worker's retries
//   together come at most once per MIN_GAP_MS;
// - the first call that reaches the server (any: a lease's renewal, another loop's retry) ends the outage, and every
//   loop waiting retries at once;
// - `onError` gets at most one of its failures a second; every failure is still counted (`stats().errors`).
// One owner: the worker (its `report`, its log's calls, its loops' `retryWait`, its `close`).
import type { Clock, ClockTimer } from '../common/clock';
import { sleepOn } from '../common/clock';

/** Wait before retrying after a non-fencing error, ms (longer during an outage). */
export const RETRY_MS = 100;
/** Longest wait of a loop before its retry during an outage, ms (unless its share of the pace is longer). */
export const MAX_RETRY_MS = 2000;
/** During an outage, the worker's retries come at most once per this, ms (each loop waits its share). */
export const MIN_GAP_MS = 50;
/** At most one report of an outage's failures per this, ms. */
export const REPORT_EVERY_MS = 1000;
/** An outage is over once no call failed for it this long, ms (longer than a loop's longest wait). */
const QUIET_MS = 2 * MAX_RETRY_MS + 1000;

export class Outage {
  /** When the outage started and when a call last failed for it (ms on the clock), -1: none. */
  #since = -1;
  #last = -1;
  #reported = -1;
  /** The loops waiting to retry: each one's wake-up (ends its wait now). */
  readonly #waiting = new Set<() => void>();

  constructor(
    private readonly clock: Clock,
    /** In [0, 1): spreads the workers' retries (a fleet's would otherwise reach the server together). */
    private readonly random: () => number = Math.random,
  ) {}

  /** Whether an outage is on at `now`. */
  #on(now: number): boolean {
    return this.#since >= 0 && now - this.#last <= QUIET_MS;
  }

  /**
   * A call failed because the backend could not be reached. Returns whether to report it: one a second, also across
   * outages (a server that answers one call in two starts one at each failure).
   */
  failed(): boolean {
    const now = this.clock.now();
    if (!this.#on(now)) this.#since = now;
    this.#last = now;
    if (this.#reported >= 0 && now - this.#reported < REPORT_EVERY_MS) return false;
    this.#reported = now;
    return true;
  }

  /** A call reached the server: an outage is over, and every loop waiting retries now. */
  reached(): void {
    if (this.#since < 0) return;
    this.#since = -1;
    this.wakeAll();
  }

  /** Ends every loop's wait now (the server reached, or the worker closing). */
  wakeAll(): void {
    for (const wake of [...this.#waiting]) wake();
  }

  /**
   * How long a loop waits after a failed call, ms: RETRY_MS, or during an outage a quarter of its length so far,
   * within RETRY_MS and MAX_RETRY_MS, give or take a fifth.
   */
  retryMs(): number {
    const now = this.clock.now();
    if (!this.#on(now)) return RETRY_MS;
    const wait = Math.min(MAX_RETRY_MS, Math.max(RETRY_MS, (now - this.#since) / 4));
    return Math.round(wait * (0.8 + 0.4 * this.random()));
  }

  /** Loops waiting now. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * A loop's wait after a failed call: `retryMs()`, during an outage at least its share of the pace (MIN_GAP_MS for
   * each loop waiting, itself included), ended early by `reached` or `wakeAll`.
   */
  wait(): Promise<void> {
    if (!this.#on(this.clock.now())) return sleepOn(this.clock, RETRY_MS);
    const ms = Math.max(this.retryMs(), (this.#waiting.size + 1) * MIN_GAP_MS);
    return new Promise((resolve) => {
      let timer: ClockTimer | null = null;
      const wake = (): void => {
        this.#waiting.delete(wake);
        this.clock.clearTimeout(timer);
        resolve();
      };
      this.#waiting.add(wake);
      timer = this.clock.setTimeout(wake, ms);
    });
  }
}
