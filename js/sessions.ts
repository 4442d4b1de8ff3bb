// Per-key sessions: one stream per key (a user, a device) for events that
// arrive in separate requests, and one merged, bounded output of all of them.
import { StreamClosedError } from './errors';
import { Fifo } from './fifo';
import { type Endpoints, kDrain, kWaitOutput } from './internal';
import type { SessionItem, Stream, StreamFn } from './types';

type Live<I, O> = Stream<I, O> & Endpoints<I, O>;

const DONE: IteratorResult<never, undefined> = Object.freeze({ done: true, value: undefined });

export class Sessions<K, I, O> implements AsyncIterable<SessionItem<K, O>> {
  /** The function the sessions' streams belong to (with the sessions' config): for stats and metrics. */
  readonly fn: StreamFn<I, O>;
  readonly #open: () => Live<I, O>;
  readonly #live = new Map<K, Live<I, O>>();
  // The merged output: bounded; a forwarder that finds it full waits, so its
  // session's own output buffer fills and that session's handler pauses.
  readonly #merged = new Fifo<SessionItem<K, O>>();
  readonly #capacity: number;
  readonly #space = new Fifo<() => void>();
  #reader: ((r: IteratorResult<SessionItem<K, O>>) => void) | null = null;
  #forwarders = 0;
  #closed = false;
  #allDone: (() => void) | null = null;

  constructor(fn: StreamFn<I, O>, open: () => Live<I, O>) {
    this.fn = fn;
    this.#open = open;
    this.#capacity = fn.config.buffer;
  }

  /** Live sessions. */
  get size(): number {
    return this.#live.size;
  }

  /** The key's stream, or undefined. */
  get(key: K): Stream<I, O> | undefined {
    return this.#live.get(key);
  }

  /**
   * Sends to the key's session, opening it on first use (or after it ended).
   * Rejects with `StreamLimitError` when `maxConcurrent` sessions are live,
   * and with `StreamClosedError` after `close()`.
   */
  send(key: K, event: I): Promise<void> {
    if (this.#closed) return Promise.reject(new StreamClosedError('The sessions are closed'));
    let stream = this.#live.get(key);
    if (stream === undefined || stream.state !== 'open') {
      try {
        stream = this.#open();
      } catch (error) {
        return Promise.reject(error);
      }
      this.#live.set(key, stream);
      void this.#forward(key, stream);
    }
    return stream.send(event);
  }

  /** Ends the key's session (its handler finishes; its outputs still arrive). */
  end(key: K): void {
    this.#live.get(key)?.end();
  }

  /**
   * Ends every session and refuses new sends. Resolves once every session has
   * finished and its outputs went into the merged output (so keep reading it,
   * or leave it, which cancels the rest); the merged iteration then ends.
   */
  close(): Promise<void> {
    this.#closed = true;
    for (const stream of this.#live.values()) stream.end();
    if (this.#forwarders === 0) {
      this.#wakeReader();
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#allDone = resolve));
  }

  /** Moves one session's outputs into the merged output, in order, until it ends. */
  async #forward(key: K, stream: Live<I, O>): Promise<void> {
    this.#forwarders++;
    const batch: O[] = [];
    try {
      for (;;) {
        batch.length = 0;
        const finished = stream[kDrain](batch);
        for (const value of batch) {
          const waited = this.#push({ key, value });
          if (waited !== null) await waited;
        }
        if (finished) break;
        await stream[kWaitOutput]();
      }
    } catch (error) {
      const waited = this.#push({ key, error });
      if (waited !== null) await waited;
    } finally {
      if (this.#live.get(key) === stream) this.#live.delete(key);
      if (--this.#forwarders === 0 && this.#closed) {
        this.#allDone?.();
        this.#wakeReader();
      }
    }
  }

  /** Adds an item; null if there was room, else a promise for when there is. */
  #push(item: SessionItem<K, O>): Promise<void> | null {
    if (this.#reader !== null) {
      const resolve = this.#reader;
      this.#reader = null;
      resolve({ value: item, done: false });
      return null;
    }
    if (this.#merged.length < this.#capacity) {
      this.#merged.push(item);
      return null;
    }
    return new Promise((resolve) =>
      this.#space.push(() => {
        this.#merged.push(item);
        resolve();
      }),
    );
  }

  #wakeReader(): void {
    const resolve = this.#reader;
    if (resolve !== null && this.#merged.length === 0 && this.#closed && this.#forwarders === 0) {
      this.#reader = null;
      resolve(DONE);
    }
  }

  #next(): Promise<IteratorResult<SessionItem<K, O>>> {
    const item = this.#merged.shift();
    if (item !== undefined) {
      this.#space.shift()?.();
      return Promise.resolve({ value: item, done: false });
    }
    if (this.#closed && this.#forwarders === 0) return Promise.resolve(DONE);
    return new Promise((resolve) => (this.#reader = resolve));
  }

  /** The merged outputs of every session, as `{ key, value }` (or `{ key, error }` when a session's handler threw). Leaving it early cancels every session. */
  [Symbol.asyncIterator](): AsyncIterator<SessionItem<K, O>> {
    return {
      next: () => this.#next(),
      return: async () => {
        this.#closed = true;
        const streams = [...this.#live.values()];
        for (const resume of this.#space.drain()) resume();
        await Promise.all(streams.map((s) => s.cancel()));
        return DONE;
      },
    };
  }
}
