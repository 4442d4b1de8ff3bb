// A limiter for the simulator (simulator.ts), as the simulated processes use it through `redisWorker`'s `limiter`
// option (session-permits.ts): a concurrency limit the processes share (as a fleet shares a `redisLimiter`), whose
// line is first come first served, whose grants reach their process late (after some immediates or some virtual
// ms, drawn from the run's seed), whose acquires fail now and then (a drawn refusal, as a full line refuses), and
// whose permits a crashed process held come back a lease after the crash, and those of a process paused past a lease
// a lease after the pause began (as a `redisLimiter`'s do). Deterministic:
// the virtual clock and the seed only. The processes' own code is the library's; only this limiter is simulated.
import { limitQueueFullError } from '../../errors';
import type { AcquireOptions, Limiter, LimiterStats, Permit } from '../../limits/types';
import type { Clock } from '../common/clock';
import type { Prng } from '../common/prng';

/** A process that holds permits: its clock (a crashed one runs nothing more), and whether it crashed. */
export interface SimHolder {
  readonly clock: Clock;
  readonly dead: boolean;
}

interface Waiter {
  readonly holder: SimHolder;
  resolve(permit: Permit): void;
  reject(error: unknown): void;
  aborted: boolean;
}

class SimPermit implements Permit {
  #released = false;
  /** Its holder crashed: it comes back a lease later, whatever the holder's code does. */
  orphaned = false;
  constructor(
    readonly limiter: SimLimiter,
    readonly holder: SimHolder,
  ) {}
  release(): void {
    if (this.#released || this.orphaned) return;
    this.#released = true;
    this.limiter.free(this);
  }
}

export class SimLimiter {
  readonly #held = new Set<SimPermit>();
  readonly #line: Waiter[] = [];
  /** Until when each paused process is paused (virtual ms). */
  readonly #pausedUntil = new Map<SimHolder, number>();
  /** Most permits held at once, and permits granted, so far. */
  max = 0;
  granted = 0;

  constructor(
    readonly name: string,
    readonly concurrency: number,
    readonly random: Prng,
    /** The shared clock: a crashed holder's permits come back on it. */
    readonly base: Clock,
    /** How long after a crash its permits come back, ms. */
    readonly lease: number,
    /** Probability that an acquire fails. */
    readonly fail: number,
  ) {}

  #take(holder: SimHolder): SimPermit {
    const permit = new SimPermit(this, holder);
    this.#held.add(permit);
    this.granted++;
    this.max = Math.max(this.max, this.#held.size);
    // Granted to a process that stays paused past a lease from now: nothing renews it, so it comes back then (as a
    // `redisLimiter` permit whose holder stopped renewing).
    const until = this.#pausedUntil.get(holder) ?? -Infinity;
    if (until - this.base.now() > this.lease) this.#expireAfterLease(permit);
    return permit;
  }

  /** The permit comes back a lease from now, whatever its holder does (it is orphaned). */
  #expireAfterLease(permit: SimPermit): void {
    this.base.setTimeout(() => {
      if (permit.orphaned || !this.#held.has(permit)) return;
      permit.orphaned = true;
      this.free(permit);
    }, this.lease);
  }

  free(permit: SimPermit): void {
    if (!this.#held.delete(permit)) return;
    this.#serve();
  }

  /** Grants the line's head while a permit is free; each grant reaches its process later, on its clock. */
  #serve(): void {
    while (this.#held.size < this.concurrency && this.#line.length > 0) {
      const waiter = this.#line.shift() as Waiter;
      const permit = this.#take(waiter.holder);
      const deliver = () => {
        if (waiter.aborted) permit.release();
        else waiter.resolve(permit);
      };
      if (this.random.chance(0.5)) waiter.holder.clock.setImmediate(deliver);
      else waiter.holder.clock.setTimeout(deliver, this.random.int(1, 20));
    }
  }

  /** A process crashed: its waiters leave the line, and its permits (granted, delivered or not) come back a lease later. */
  crashed(holder: SimHolder): void {
    for (let i = this.#line.length - 1; i >= 0; i--) if (this.#line[i].holder === holder) this.#line.splice(i, 1);
    for (const permit of this.#held) {
      if (permit.holder !== holder || permit.orphaned) continue;
      permit.orphaned = true;
      this.base.setTimeout(() => this.free(permit), this.lease);
    }
  }

  /**
   * A process paused for `ms`: past a lease its permits (those it holds then) come back, as a `redisLimiter`'s whose
   * renewals stopped do; its own release later frees nothing (a `redisLimiter`'s is fenced).
   */
  paused(holder: SimHolder, ms: number): void {
    this.#pausedUntil.set(holder, Math.max(this.#pausedUntil.get(holder) ?? -Infinity, this.base.now() + ms));
    if (ms <= this.lease) return;
    this.base.setTimeout(() => {
      for (const permit of this.#held) {
        if (permit.holder !== holder || permit.orphaned) continue;
        permit.orphaned = true;
        this.free(permit);
      }
    }, this.lease);
  }

  /** The limiter as one process uses it. */
  view(holder: SimHolder): Limiter<unknown> {
    const stats = (): LimiterStats => ({
      name: this.name,
      inUse: this.#held.size,
      waiting: this.#line.length,
      admitted: this.granted,
      refunded: 0,
      rejected: 0,
      waitedMs: { p50: 0, p99: 0 },
      keys: 1,
      oldestWaitMs: 0,
    });
    return {
      name: this.name,
      acquire: (_item: unknown, options?: AcquireOptions): Promise<Permit> => {
        const signal = options?.signal;
        if (signal?.aborted) return Promise.reject(signal.reason as Error);
        if (this.random.chance(this.fail)) return Promise.reject(limitQueueFullError(this.name, 0));
        return new Promise<Permit>((resolve, reject) => {
          const waiter: Waiter = { holder, resolve, reject, aborted: false };
          this.#line.push(waiter);
          signal?.addEventListener(
            'abort',
            () => {
              waiter.aborted = true;
              const at = this.#line.indexOf(waiter);
              if (at >= 0) this.#line.splice(at, 1);
              reject(signal.reason as Error);
            },
            { once: true },
          );
          this.#serve();
        });
      },
      tryAcquire: (): Permit | undefined => {
        if (this.#held.size >= this.concurrency || this.#line.length > 0 || !this.random.chance(0.5)) return undefined;
        return this.#take(holder);
      },
      setLimits: (): void => {},
      stats,
      close: () => Promise.resolve(),
    };
  }
}
