// How long a worker's session openings may hold the event loop before its leases' renewals run.
import type { Clock } from '../common/clock';

/** The most openings hold the event loop before the next one pauses, ms (an eighth of the lease at most). */
const OPENING_SLICE_MS = 50;

/**
 * Time the worker spent opening sessions (their states through the codec and `migrate`), all its partitions together,
 * since its openings last paused, while they held most of the event loop: past a slice, each partition's next opening
 * waits (`turn()`) as long again as they held it (an eighth of the lease at most), so that openings take at most about
 * half of it and the renewals due meanwhile, with their few round trips (a pool's connection, a statement), complete
 * in between. Openings that held less than half of the time since the count began start it again: sessions opened
 * now and then, however many, never pause. One per worker: the renewals of every partition it holds wait behind the
 * openings of any of them.
 */
export class OpeningSlice {
  #spent = 0;
  /** When the count began (`clock.now()`). */
  #from = -Infinity;
  #turn: Promise<void> | null = null;
  readonly #slice: number;
  readonly #pause: number;

  constructor(
    readonly clock: Clock,
    ttl: number,
  ) {
    this.#slice = Math.min(OPENING_SLICE_MS, ttl / 8);
    this.#pause = ttl / 8;
  }

  spent(ms: number): void {
    const now = this.clock.now();
    if (now - this.#from > 2 * (this.#spent + ms)) {
      this.#from = now - ms;
      this.#spent = ms;
    } else this.#spent += ms;
    if (this.full) void this.turn();
  }

  /** The openings since the last pause took a slice (of the lease): the next waits for `turn()`. */
  get full(): boolean {
    return this.#spent >= this.#slice;
  }

  /** The end of the pause: after the time the openings took (at least a turn), the slice starts again then. */
  turn(): Promise<void> {
    return (this.#turn ??= new Promise((resolve) =>
      this.clock.setTimeout(
        () => {
          this.#turn = null;
          this.#spent = 0;
          this.#from = this.clock.now();
          resolve();
        },
        Math.min(this.#spent, this.#pause),
      ),
    ));
  }
}
