// A permit of `limiter()` (local.ts): given back once, by `release()`, or, never used, by its refund.
import type { Permit } from './types';

/** A permit's undoing: it was granted and never used (`refundAll` in use.ts). */
export const kRefund = Symbol('velo.refund');

/** What a permit gives itself back to: its limiter. */
export interface PermitOwner {
  releaseKey(key: number): void;
  refundKey(key: number, cost: number): void;
}

/**
 * A permit, held from its grant to `release()` whatever the limits are meanwhile (so a concurrency limit that
 * `setLimits()` brings back counts it); `release()` gives it back once.
 */
export class LocalPermit implements Permit {
  #limiter: PermitOwner | undefined;
  readonly #key: number;
  readonly #cost: number;
  constructor(limiter: PermitOwner, key: number, cost: number) {
    this.#limiter = limiter;
    this.#key = key;
    this.#cost = cost;
  }
  release(): void {
    const limiter = this.#limiter;
    if (limiter === undefined) return;
    this.#limiter = undefined;
    limiter.releaseKey(this.#key);
  }
  /** Instead of `release()`, for a permit never used: its rate units come back too, and it is counted refunded. */
  [kRefund](): void {
    const limiter = this.#limiter;
    if (limiter === undefined) return;
    this.#limiter = undefined;
    limiter.refundKey(this.#key, this.#cost);
  }
}
