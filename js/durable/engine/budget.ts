// A partition's part of `maxBufferedEvents`, owned by one object: entries reserved for a read in flight, read and
// not yet dispatched, and delivered to sessions whose handlers have not taken them. Held entries are not in it. The
// count is an upper bound: `reconcile` (the run's) takes out what handlers without hooks took since.
import type { Clock } from '../common/clock';

/**
 * A partition at its share learns that a handler took events at the handler's next output or end; one that takes
 * events without either is found by re-checking, first after this (ms), then twice as long each time, up to
 * RECHECK_MAX_MS.
 */
const RECHECK_MS = 5;
const RECHECK_MAX_MS = 200;

export class EventBudget {
  #used = 0;
  /** Waiting for room (the pump, the held entries' drains). */
  readonly #waiters = new Set<() => void>();

  constructor(
    /** The partition's share now (it changes as the worker's partitions do). */
    readonly share: () => number,
    readonly clock: Clock,
    /** Lowers the count to what is still untaken (`PartitionRun.reconcile`). */
    readonly reconcile: () => void,
    /** The partition stops: a reservation gets nothing. */
    readonly stopped: () => boolean,
  ) {}

  /** Entries counted now (an upper bound). */
  get used(): number {
    return this.#used;
  }

  /** Someone waits for room. */
  get waiting(): boolean {
    return this.#waiters.size > 0;
  }

  /** Takes up to `want`, waiting while none is free; how much it took (0 once the partition stops). */
  async reserve(want: number): Promise<number> {
    let delay = RECHECK_MS;
    for (;;) {
      if (this.stopped()) return 0;
      let free = this.share() - this.#used;
      if (free <= 0) {
        this.reconcile();
        free = this.share() - this.#used;
      }
      if (free > 0) {
        const n = Math.min(free, want);
        this.#used += n;
        return n;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          this.clock.clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = this.clock.setTimeout(done, delay);
        this.#waiters.add(done);
      });
      delay = Math.min(delay * 2, RECHECK_MAX_MS);
    }
  }

  /** Gives back `n` entries: unread of a reservation, dispatched elsewhere (acked, held), or taken by a handler. */
  release(n = 1): void {
    this.#used -= n;
  }

  /** Wakes whatever waits for room (a handler may have taken events; the share may have grown). */
  freed(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}
