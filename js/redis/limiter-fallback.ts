// The in-process limit redisLimiter({ whenRedisFails: 'local' }) falls back to while Redis is away: the same
// rules (concurrency per key, GCRA rate per key, a FIFO line per key bounded by maxWaiting, reject mode) on this
// process' clock, with a share of the fleet's limits (limiter-options.ts, localShare). A minimal stand-in, kept
// behind the Permit interface, until the in-process limiter of velo-stream (`limiter()`) replaces it.
import type { Permit } from '../limits/types';
import { limitCostError, limitQueueFullError, limiterClosedError, rateLimitedError } from '../errors';
import type { Limits } from './limiter-options';

interface Waiter {
  cost: number;
  resolve: (permit: Permit) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface KeyState {
  held: number;
  tat: number;
  line: Waiter[];
  timer?: NodeJS.Timeout;
}

export class LocalShare {
  #limits: Limits;
  readonly #name: string;
  readonly #mode: 'throttle' | 'reject';
  readonly #maxWaiting: number;
  readonly #keys = new Map<string, KeyState>();
  #closed = false;

  constructor(name: string, limits: Limits, mode: 'throttle' | 'reject', maxWaiting: number) {
    this.#name = name;
    this.#limits = limits;
    this.#mode = mode;
    this.#maxWaiting = maxWaiting;
  }

  get inUse(): number {
    let n = 0;
    for (const state of this.#keys.values()) n += state.held;
    return n;
  }

  get waiting(): number {
    let n = 0;
    for (const state of this.#keys.values()) n += state.line.length;
    return n;
  }

  setLimits(limits: Limits): void {
    this.#limits = limits;
    for (const key of [...this.#keys.keys()]) this.#serve(key);
  }

  /** 0 if `cost` conforms to the rate now (and takes it when `take`), else ms to wait. */
  #rateWait(state: KeyState, cost: number, take: boolean): number {
    const rate = this.#limits.rate;
    if (rate === undefined) return 0;
    const now = performance.now();
    const T = rate.period / rate.limit;
    const next = Math.max(state.tat, now) + cost * T;
    const over = next - now - rate.burst * T;
    if (over > 0) return Math.ceil(over);
    if (take) state.tat = next;
    return 0;
  }

  #room(state: KeyState): boolean {
    return this.#limits.concurrency === undefined || state.held < this.#limits.concurrency;
  }

  #state(key: string): KeyState {
    let state = this.#keys.get(key);
    if (state === undefined) this.#keys.set(key, (state = { held: 0, tat: 0, line: [] }));
    return state;
  }

  #permit(key: string, state: KeyState): Permit {
    if (this.#limits.concurrency === undefined) return { release() {} };
    state.held++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        state.held--;
        this.#serve(key);
      },
    };
  }

  acquire(key: string, cost: number, signal?: AbortSignal): Promise<Permit> {
    if (this.#closed) return Promise.reject(limiterClosedError(this.#name));
    if (this.#limits.rate !== undefined && cost > this.#limits.rate.burst) {
      return Promise.reject(
        limitCostError(
          `Limiter "${this.#name}": cost ${cost} is above this process' share of the burst (${this.#limits.rate.burst}) while Redis is away`,
        ),
      );
    }
    const state = this.#state(key);
    if (state.line.length === 0 && this.#room(state)) {
      const wait = this.#rateWait(state, cost, true);
      if (wait === 0) return Promise.resolve(this.#permit(key, state));
      if (this.#mode === 'reject')
        return Promise.reject(Object.assign(rateLimitedError(this.#name, 'acquire'), { retryAfter: wait }));
    } else if (this.#mode === 'reject')
      return Promise.reject(Object.assign(rateLimitedError(this.#name, 'acquire'), { retryAfter: 0 }));
    if (state.line.length >= this.#maxWaiting) return Promise.reject(limitQueueFullError(this.#name, this.#maxWaiting));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { cost, resolve, reject, signal };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const i = state.line.indexOf(waiter);
          if (i >= 0) state.line.splice(i, 1);
          reject(signal.reason as Error);
          this.#serve(key);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      state.line.push(waiter);
      this.#serve(key);
    });
  }

  /** Grants the line of `key` from its head while permits fit; a head waiting for the rate gets one timer. */
  #serve(key: string): void {
    const state = this.#keys.get(key);
    if (state === undefined) return;
    clearTimeout(state.timer);
    state.timer = undefined;
    while (state.line.length > 0 && this.#room(state)) {
      const head = state.line[0];
      const wait = this.#rateWait(state, head.cost, true);
      if (wait > 0) {
        state.timer = setTimeout(() => this.#serve(key), wait);
        return;
      }
      state.line.shift();
      if (head.onAbort !== undefined) head.signal?.removeEventListener('abort', head.onAbort);
      head.resolve(this.#permit(key, state));
    }
    if (state.held === 0 && state.line.length === 0 && state.tat <= performance.now()) this.#keys.delete(key);
  }

  close(): void {
    this.#closed = true;
    for (const state of this.#keys.values()) {
      clearTimeout(state.timer);
      for (const waiter of state.line.splice(0)) {
        if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
        waiter.reject(limiterClosedError(this.#name));
      }
    }
  }
}
