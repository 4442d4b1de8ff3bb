// A worker's backend that cannot be reached: every loop of every partition fails each call with a refused or lost
// connection, and would retry and report each failure every RETRY_MS (hundreds a second, against a server that is
// starting again). While such failures last (an outage: none more than QUIET_MS apart), a loop's wait before its
// retry grows with the outage, up to MAX_RETRY_MS, and `onError` gets at most one of them a second; every failure
// is still counted (`stats().errors`). One owner: the worker (its `report` and its loops' `retryWait`).
import type { Clock } from '../common/clock';

/** Wait before retrying after a non-fencing error, ms (longer during an outage: `Outage.retryMs`). */
export const RETRY_MS = 100;
/** Longest wait of a loop before its retry during an outage, ms. */
export const MAX_RETRY_MS = 2000;
/** At most one report of an outage's failures per this, ms. */
export const REPORT_EVERY_MS = 1000;
/** An outage is over once no call failed for it this long, ms (longer than a loop's longest wait). */
const QUIET_MS = 2 * MAX_RETRY_MS + 1000;

export class Outage {
  /** When the outage started and when a call last failed for it (ms on the clock), -1: none. */
  #since = -1;
  #last = -1;
  #reported = -1;

  constructor(
    private readonly clock: Clock,
    /** In [0, 1): spreads the workers' retries (a fleet's would otherwise reach the server together). */
    private readonly random: () => number = Math.random,
  ) {}

  /** Whether an outage is on at `now`. */
  #on(now: number): boolean {
    return this.#since >= 0 && now - this.#last <= QUIET_MS;
  }

  /** A call failed because the backend could not be reached. Returns whether to report it (one a second). */
  failed(): boolean {
    const now = this.clock.now();
    if (!this.#on(now)) {
      this.#since = now;
      this.#reported = -1;
    }
    this.#last = now;
    if (this.#reported >= 0 && now - this.#reported < REPORT_EVERY_MS) return false;
    this.#reported = now;
    return true;
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
}
