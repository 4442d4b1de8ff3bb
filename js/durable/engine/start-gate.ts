// A worker's first partitions served first. Started on a backlog, a worker's partitions would all load what their
// last owners left, read and commit at once, and its first commit would wait behind every other partition's
// statements (on Postgres, a transaction of several round trips among 64 partitions' loads and reads). Until the
// worker's first commit is answered, only a few partition runs go; the others wait for one of them to catch up with
// its log or stop, for that first commit, or at most `OPEN_AFTER_MS`, whichever comes first. From then on every run
// goes at once: the gate never closes again.
import type { Clock, ClockTimer } from '../common/clock';

/** The partition runs that go at once while the gate is shut. */
export const FIRST_RUNS = 4;

/**
 * The longest a run waits at the gate, ms: the first runs' handlers may commit nothing for long (sessions that
 * answer only at their end), and the rest must not wait for that.
 */
export const OPEN_AFTER_MS = 200;

export class StartGate {
  #open = false;
  /** Runs past the gate while it is shut, not yet caught up or stopped. */
  #going = 0;
  readonly #waiting: (() => void)[] = [];
  #timer: ClockTimer | null = null;

  constructor(readonly clock: Clock) {}

  /** Before a run's first statement: undefined if it may go now, else when it may. Each is matched by `leave()`. */
  enter(): Promise<void> | undefined {
    if (this.#open) return undefined;
    if (this.#going < FIRST_RUNS) {
      this.#going++;
      return undefined;
    }
    this.#timer ??= this.clock.setTimeout(() => this.open(), OPEN_AFTER_MS).unref();
    return new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  /** A run that went caught up with its log, or stopped: the next waiting one goes. */
  leave(): void {
    if (this.#open) return;
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.#going--;
  }

  /** A commit was answered (or the worker closes): every run goes, now and from now on. */
  open(): void {
    if (this.#open) return;
    this.#open = true;
    if (this.#timer !== null) this.clock.clearTimeout(this.#timer);
    this.#timer = null;
    for (const go of this.#waiting.splice(0)) go();
  }
}
