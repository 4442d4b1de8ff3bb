// How long a worker's session openings may hold the event loop before its leases' renewals run.
import type { Clock } from '../common/clock';

/** The most openings hold the event loop before the next waits a turn, ms (an eighth of the lease at most). */
const OPENING_SLICE_MS = 50;

/**
 * Time the worker spent opening sessions (their states through the codec and `migrate`), all its partitions together,
 * since the event loop's last turn: past a slice, each partition's next opening waits for the next turn (`turn()`),
 * so that the renewals due meanwhile run first. One per worker: the renewals of every partition it holds wait behind
 * the openings of any of them.
 */
export class OpeningSlice {
  #spent = 0;
  #turn: Promise<void> | null = null;
  readonly #slice: number;

  constructor(
    readonly clock: Clock,
    ttl: number,
  ) {
    this.#slice = Math.min(OPENING_SLICE_MS, ttl / 8);
  }

  spent(ms: number): void {
    this.#spent += ms;
    if (this.full) void this.turn();
  }

  /** The openings since the last turn took a slice (of the lease): the next waits for `turn()`. */
  get full(): boolean {
    return this.#spent >= this.#slice;
  }

  /** The next turn, after the callbacks due by now (a renewal among them): the slice starts again then. */
  turn(): Promise<void> {
    return (this.#turn ??= new Promise((resolve) =>
      this.clock.setTimeout(() => {
        this.#turn = null;
        this.#spent = 0;
        resolve();
      }, 0),
    ));
  }
}
