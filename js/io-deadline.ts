// A deadline on a call answered over a socket, judged only after the event loop has read what its sockets hold.
//
// When the process was frozen (SIGSTOP, a paused VM or container) or its event loop blocked past a deadline, the
// timer and the answer it bounds are both due when it runs again, and Node runs due timers before it reads sockets:
// a plain timer would fail a call whose answer is already in its socket (and, on Postgres, destroy the connection
// that holds it). So the timer only queues the verdict for the check phase of the same turn (`setImmediate`), after
// the poll phase has read the sockets; a call answered there clears the deadline before the verdict runs. A call
// that is really late is failed one turn of the loop later than `ms`.

export class IoDeadline {
  #timer: NodeJS.Timeout | undefined;
  #verdict: NodeJS.Immediate | undefined;

  /** `onPast` runs once `ms` have passed and the sockets ready by then were read, unless `clear()` came first. */
  constructor(onPast: () => void, ms: number) {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#verdict = setImmediate(onPast);
    }, ms);
  }

  clear(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#verdict);
  }
}
