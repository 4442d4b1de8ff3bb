// The output collector of a service harness: a function's outputs read from the start by the backend's own reader
// (redisOutputs, postgresOutputs), kept in the order read, with a wait for "enough of them".
import type { OutputItem } from '../common/outputs';
import { DEFAULT_TIMEOUT } from './service-process';

/** The outputs of one function, read from the start with the backend's outputs reader as they are written. */
export interface OutputCollector<O> extends AsyncDisposable {
  /** Every output read so far, in the order read. */
  readonly items: readonly OutputItem<O>[];
  /**
   * Resolves with `items` once there are `count` of them (or `count(items)` is true); rejects after `timeout` ms
   * (default 10000), saying how many it had, or at once if the reader failed.
   */
  until(count: number | ((items: readonly OutputItem<O>[]) => boolean), timeout?: number): Promise<readonly OutputItem<O>[]>;
  /** Stops reading. */
  close(): Promise<void>;
}

/**
 * Opens the backend's reader of one function's outputs, ended by `signal`. A synchronous throw (options refused)
 * is thrown by `outputs()` itself; a rejection fails the collector's `until()`.
 */
export type OpenOutputs<O> = (signal: AbortSignal) => AsyncIterable<OutputItem<O>> | Promise<AsyncIterable<OutputItem<O>>>;

export class Collector<O> implements OutputCollector<O> {
  readonly items: OutputItem<O>[] = [];
  readonly #abort = new AbortController();
  readonly #loop: Promise<void>;
  #error: unknown;
  readonly #waiters = new Set<() => void>();
  #closed: Promise<void> | undefined;

  constructor(open: OpenOutputs<O>) {
    const source = open(this.#abort.signal);
    this.#loop = (async () => {
      try {
        for await (const item of await source) {
          this.items.push(item);
          for (const wake of this.#waiters) wake();
        }
      } catch (error) {
        if (!this.#abort.signal.aborted) this.#error = error;
      } finally {
        for (const wake of this.#waiters) wake();
      }
    })();
  }

  until(
    count: number | ((items: readonly OutputItem<O>[]) => boolean),
    timeout = DEFAULT_TIMEOUT,
  ): Promise<readonly OutputItem<O>[]> {
    const enough = typeof count === 'number' ? () => this.items.length >= count : () => count(this.items);
    return new Promise((resolve, reject) => {
      const wake = () => {
        if (enough()) finish(() => resolve(this.items));
        else if (this.#error !== undefined) finish(() => reject(this.#error));
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new Error(
                `outputs: ${this.items.length} read within ${timeout} ms, not enough${typeof count === 'number' ? ` (wanted ${count})` : ''}`,
              ),
            ),
          ),
        timeout,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        settle();
      };
      this.#waiters.add(wake);
      wake();
    });
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#abort.abort();
      await this.#loop;
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
