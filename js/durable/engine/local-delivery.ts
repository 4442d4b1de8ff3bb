// Local delivery (`onOutput`): the outputs this worker's commits wrote, handed over one call at a time.
import { OnOutputError } from '../../errors';
import type { OutputItem } from '../common/outputs';

/**
 * Committed outputs on their way to `onOutput`: one call at a time, in the order commits pushed them. At most
 * `limit` outputs are queued, being delivered, or reserved by commits in flight.
 */
export class LocalDelivery<O> {
  readonly #queue: OutputItem<O>[] = [];
  #reserved = 0;
  #inCall = false;
  #active = false;
  readonly #room: (() => void)[] = [];
  readonly #drained: (() => void)[] = [];
  delivered = 0;

  constructor(
    readonly onOutput: (output: OutputItem<O>) => void | PromiseLike<void>,
    readonly limit: number,
    readonly report: (error: unknown) => void,
  ) {}

  get undelivered(): number {
    return this.#queue.length + (this.#inCall ? 1 : 0);
  }

  /**
   * Takes room for a commit of up to `n` outputs (n <= limit) and resolves to how much it took, never past `limit`
   * (the commit carries no more outputs than that). With the queue short of full: `n`, or what is left (the queue is
   * then full). Waiting for all `n` there left it short of full for good behind a smaller commit (a partition's first
   * slice) while onOutput was slow. With the queue full: once room for all `n` is back (or the queue is empty), as
   * before; refilled each time one output is delivered, it would take a commit per output.
   */
  async reserve(n: number): Promise<number> {
    if (n > 0 && this.#reserved >= this.limit)
      while (this.#reserved > 0 && this.#reserved + n > this.limit)
        await new Promise<void>((resolve) => this.#room.push(resolve));
    const room = Math.min(n, this.limit - this.#reserved);
    this.#reserved += room;
    return room;
  }

  /** Gives back room reserved for outputs that will not be delivered (written before, or never committed). */
  unreserve(n: number): void {
    if (n === 0) return;
    this.#reserved -= n;
    for (const wake of this.#room.splice(0)) wake();
  }

  /** Queues outputs whose room was reserved. */
  push(items: OutputItem<O>[]): void {
    for (const item of items) this.#queue.push(item);
    if (this.#active || this.#queue.length === 0) return;
    this.#active = true;
    void this.#run();
  }

  async #run(): Promise<void> {
    for (let item = this.#queue.shift(); item !== undefined; item = this.#queue.shift()) {
      this.#inCall = true;
      try {
        const pending = this.onOutput(item);
        if (pending !== null && typeof (pending as PromiseLike<void> | undefined)?.then === 'function') await pending;
      } catch (error) {
        // (The worker's report never throws: a throw of onError is a warning, and the queue goes on.)
        this.report(new OnOutputError(item, error));
      }
      this.#inCall = false;
      this.delivered++;
      this.unreserve(1);
    }
    this.#active = false;
    for (const resolve of this.#drained.splice(0)) resolve();
  }

  /** Resolves once nothing is queued or being delivered. */
  drained(): Promise<void> {
    if (!this.#active) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }
}
