// The time a partition's run and its log see. Production uses the machine's
// clock and Node's timers; the in-memory log and the session simulator pass a
// virtual clock that they advance themselves, so a run is a function of its
// inputs and a seed.

/** A timer made by a `Clock`; `unref` lets the process exit while it waits (a no-op on a virtual clock). */
export interface ClockTimer {
  unref(): ClockTimer;
}

/** Time and timers, ms. */
export interface Clock {
  /** The current time, ms since the epoch. */
  now(): number;
  /** Calls `fn` once, `ms` from now (0 or less: at the clock's next step). */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer | null | undefined): void;
  /** Calls `fn` after the current step's pending work (Node: `setImmediate`). */
  setImmediate(fn: () => void): void;
}

/** The machine's clock and Node's timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
  setImmediate: (fn) => void setImmediate(fn),
};

/** A promise resolved `ms` from now on `clock`. */
export function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => void clock.setTimeout(resolve, ms));
}
