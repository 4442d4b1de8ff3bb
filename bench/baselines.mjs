// The baselines of the benchmark suite, written the way a careful user would
// write them by hand, so that velo-stream is compared with real alternatives.
import { Duplex } from 'node:stream';
import { once } from 'node:events';

const RESOLVED = Promise.resolve();
const DONE = Object.freeze({ done: true, value: undefined });

/**
 * Baseline (a): a hand-written bounded async queue (array + promise
 * resolvers, capacity 256) feeding an async generator.
 */
export class BoundedQueue {
  constructor(capacity = 256) {
    this.capacity = capacity;
    this.items = [];
    this.head = 0;
    this.reader = null; // resolve of a pending next()
    this.writers = []; // [value, resolve] waiting for room
    this.ended = false;
  }

  get size() {
    return this.items.length - this.head;
  }

  send(value) {
    if (this.ended) return Promise.reject(new Error('queue ended'));
    if (this.reader !== null) {
      const r = this.reader;
      this.reader = null;
      r({ value, done: false });
      return RESOLVED;
    }
    if (this.size < this.capacity && this.writers.length === 0) {
      this.items.push(value);
      return RESOLVED;
    }
    return new Promise((resolve) => this.writers.push([value, resolve]));
  }

  end() {
    this.ended = true;
    if (this.reader !== null && this.size === 0 && this.writers.length === 0) {
      const r = this.reader;
      this.reader = null;
      r(DONE);
    }
  }

  next() {
    if (this.size > 0) {
      const value = this.items[this.head];
      this.items[this.head++] = undefined;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
      if (this.writers.length > 0) {
        const [v, resolve] = this.writers.shift();
        this.items.push(v);
        resolve();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.writers.length > 0) {
      const [value, resolve] = this.writers.shift();
      resolve();
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) return Promise.resolve(DONE);
    return new Promise((resolve) => (this.reader = resolve));
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/** Baseline (a) as a stream: the queue, the generator over it, and its output iterator. */
export function openQueued(handler, capacity = 256) {
  const queue = new BoundedQueue(capacity);
  const outputs = handler(queue)[Symbol.asyncIterator]();
  return { queue, outputs };
}

/** Baseline (a) for batch runs: send everything with backpressure while collecting outputs. */
export async function runQueued(handler, events, capacity = 256) {
  const { queue, outputs } = openQueued(handler, capacity);
  const sending = (async () => {
    for (const e of events) {
      const p = queue.send(e);
      if (p !== RESOLVED) await p;
    }
    queue.end();
  })();
  const out = [];
  for (;;) {
    const r = await outputs.next();
    if (r.done) break;
    out.push(r.value);
  }
  await sending;
  return out;
}

/** Baseline (b): Node's Duplex.from(async generator function), with write()/'drain'. */
export async function runDuplex(handler, events) {
  const duplex = Duplex.from(handler);
  const sending = (async () => {
    for (const e of events) if (!duplex.write(e)) await once(duplex, 'drain');
    duplex.end();
  })();
  const out = [];
  for await (const v of duplex) out.push(v);
  await sending;
  return out;
}
