// A clock that moves only when its owner moves it: the in-memory log and the session simulator run on one, so a
// run is a function of its inputs and a seed (no machine time, no real timers, no race between them).
import type { Clock, ClockTimer } from '../common/clock';

/**
 * A timer of a virtual clock: due at `at`, ordered among those of the same time by `order` (made first, fires
 * first). A postponable one may be moved later by `postpone()` (a simulated process's timers, while it has nothing
 * to do but keep its leases).
 */
class VirtualTimer implements ClockTimer {
  constructor(
    public at: number,
    readonly order: number,
    readonly fn: () => void,
    readonly postponable: boolean,
  ) {}
  unref(): ClockTimer {
    return this;
  }
}

/**
 * Time and timers that move by `step()` only. `step()` runs the immediates queued so far (all of them, in order),
 * or, with none, moves the time to the first timer's due time and fires that one timer. Between two steps the
 * caller lets the promises the last one settled run (see `settle()` in the simulator), so that each step sees the
 * work of the one before: the order of everything is the order of the steps.
 */
export class VirtualClock implements Clock {
  #now: number;
  #order = 0;
  /** Pending timers, by due time then by creation: a sorted array (a simulation has tens of them at once). */
  #timers: VirtualTimer[] = [];
  #immediates: (() => void)[] = [];

  /** `start`: the time the clock shows first, ms since the epoch. */
  constructor(start: number) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /**
   * `postponable`: `postpone()` may move it later. `order`: its place among timers of the same due time, by default
   * after every one made before it; a callback held and set again keeps the place it had (`orderNow`, `orderOf`), so
   * one held again and again never falls behind work queued after it.
   */
  setTimeout(fn: () => void, ms: number, postponable = false, order = this.#order++): ClockTimer {
    const timer = new VirtualTimer(this.#now + Math.max(0, ms), order, fn, postponable);
    let i = this.#timers.length;
    while (
      i > 0 &&
      (this.#timers[i - 1].at > timer.at || (this.#timers[i - 1].at === timer.at && this.#timers[i - 1].order > order))
    )
      i--;
    this.#timers.splice(i, 0, timer);
    return timer;
  }

  /** A place after every timer made so far (for a callback run now and held: an immediate). */
  orderNow(): number {
    return this.#order++;
  }

  /** The place of a timer of a virtual clock among those of its due time. */
  static orderOf(timer: ClockTimer): number {
    return (timer as VirtualTimer).order;
  }

  /** The due time of the first pending timer that cannot be postponed, or undefined with none. */
  nextFixed(): number | undefined {
    return this.#timers.find((t) => !t.postponable)?.at;
  }

  /**
   * Moves the time `by` ms on at once, and every postponable timer `by` ms later (their order kept): time passes
   * for everything else as if those had been stopped meanwhile. Nothing else may be due before the new time.
   */
  postpone(by: number): void {
    const time = this.#now + by;
    if (this.#immediates.length > 0 || (this.nextFixed() ?? Infinity) < time) {
      throw new Error(`The virtual clock has work due before ${time}: run it first`);
    }
    for (const t of this.#timers) if (t.postponable) t.at += by;
    this.#timers.sort((a, b) => a.at - b.at || a.order - b.order);
    this.#now = time;
  }

  clearTimeout(timer: ClockTimer | null | undefined): void {
    const i = this.#timers.indexOf(timer as VirtualTimer);
    if (i >= 0) this.#timers.splice(i, 1);
  }

  setImmediate(fn: () => void): void {
    this.#immediates.push(fn);
  }

  /** The due time of the first pending timer, or undefined with none. */
  next(): number | undefined {
    return this.#timers[0]?.at;
  }

  /** Whether immediates are queued. */
  get busy(): boolean {
    return this.#immediates.length > 0;
  }

  /** Moves the time to `time` (when nothing is due before it: the caller has run everything due). */
  idleUntil(time: number): void {
    if (this.#immediates.length > 0 || (this.#timers[0]?.at ?? Infinity) < time) {
      throw new Error(`The virtual clock has work due before ${time}: run it first`);
    }
    if (time > this.#now) this.#now = time;
  }

  /**
   * One step: the queued immediates, or else the first timer (the time moves to its due time). False when there
   * was nothing to run.
   */
  step(): boolean {
    if (this.#immediates.length > 0) {
      const batch = this.#immediates;
      this.#immediates = [];
      for (const fn of batch) fn();
      return true;
    }
    const timer = this.#timers.shift();
    if (timer === undefined) return false;
    if (timer.at > this.#now) this.#now = timer.at;
    timer.fn();
    return true;
  }
}

/** Resolves once every promise settled so far has run its reactions (they all run before a macrotask of Node's). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Steps `clock` until `promise` settles, letting the promises each step settles run in between; its outcome.
 * Rejects when the clock has nothing left to run and the promise is still pending (it never will settle).
 */
export async function runUntil<T>(clock: VirtualClock, promise: Promise<T>): Promise<T> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  while (!done) {
    if (!clock.step()) throw new Error('Nothing is left to run on the virtual clock, and the promise is still pending');
    await settle();
  }
  return promise;
}
