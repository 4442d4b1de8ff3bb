// The baselines of the benchmark suite, written the way a careful user would
// write them by hand, so that velo-stream is compared with real alternatives.
import { Duplex, Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { pMapIterable } from 'p-map';

/** What a queue's `send()` returns when the value went in at once (no need to await it). */
export const RESOLVED = Promise.resolve();
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
    this.rejectReader = null;
    this.writers = []; // [value, resolve] waiting for room
    this.ended = false;
    this.error = null; // set by fail(): next() rejects with it once the items are read
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
      const [resolve, reject] = [this.reader, this.rejectReader];
      this.reader = null;
      if (this.error === null) resolve(DONE);
      else reject(this.error);
    }
  }

  /** Ends the queue with an error, which next() throws after the items already in it. */
  fail(error) {
    this.error = error;
    this.end();
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
    if (this.ended) return this.error === null ? Promise.resolve(DONE) : Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.reader = resolve;
      this.rejectReader = reject;
    });
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

/**
 * Baseline (d): both directions bounded, as a careful user writes it when a
 * consumer must not be able to stall the handler's memory either: the input
 * queue of (a), a second queue for outputs, and a pump that moves each output
 * of the generator into it, waiting while it is full. The pump is the extra
 * hop per output that (a) does not have (its consumer awaits the generator
 * itself, so outputs are not buffered at all).
 */
export function openBuffered(handler, capacity = 256) {
  const queue = new BoundedQueue(capacity);
  const outputs = new BoundedQueue(capacity);
  (async () => {
    try {
      for await (const v of handler(queue)) await outputs.send(v);
      outputs.end();
    } catch (error) {
      outputs.fail(error);
    }
  })();
  return { queue, outputs };
}

/**
 * The input queue of (f): (a)'s queue that also keeps its stream's figures,
 * as velo-stream's core does per event: each send's time (the idle deadline
 * restarts there), how long each event waited until the handler took it (in
 * a histogram of powers of two of microseconds; 0 for an event handed to a
 * handler already waiting), and the count in.
 */
class TimedQueue extends BoundedQueue {
  constructor(capacity, figures) {
    super(capacity);
    this.figures = figures;
    this.times = [];
    this.timesHead = 0;
  }

  send(value) {
    const now = performance.now();
    const figures = this.figures;
    figures.lastSend = now;
    figures.eventsIn++;
    if (this.reader !== null) figures.waits[0]++;
    else if (!this.ended) this.times.push(now);
    return super.send(value);
  }

  next() {
    if (this.size > 0 || this.writers.length > 0) {
      const waitedUs = (performance.now() - this.times[this.timesHead]) * 1000;
      this.times[this.timesHead++] = undefined;
      if (this.timesHead === this.times.length) this.times.length = this.timesHead = 0;
      this.figures.waits[waitedUs < 1 ? 0 : Math.min(31, 32 - Math.clz32(waitedUs))]++;
    }
    return super.next();
  }
}

/** Open (f) streams, and the one timer that ends those idle longer than their timeout. */
const idleWatched = new Set();
let idleSweeper = null;

function sweepIdle() {
  const now = performance.now();
  for (const figures of idleWatched) {
    if (now - figures.lastSend >= figures.idleMs) {
      idleWatched.delete(figures);
      figures.queue.fail(Object.assign(new Error('idle'), { code: 'IDLE' }));
    }
  }
  if (idleWatched.size === 0) {
    clearInterval(idleSweeper);
    idleSweeper = null;
  }
}

/**
 * Baseline (f): (d) with the figures and the idle deadline written by hand,
 * what velo-stream keeps for every stream beyond (d)'s bounds: the counts in
 * and out, each event's queue wait (`TimedQueue`), and an idle timeout
 * restarted by each send, checked by one shared timer (a stream idle longer
 * than `idleMs` fails its handler's input). Still none of velo-stream's
 * limits, admission, cancel of a parked handler or GC of abandoned streams.
 */
export function openMeasured(handler, idleMs = 30_000, capacity = 256) {
  const figures = { eventsIn: 0, eventsOut: 0, waits: new Array(32).fill(0), lastSend: performance.now(), idleMs, queue: null };
  const queue = (figures.queue = new TimedQueue(capacity, figures));
  const outputs = new BoundedQueue(capacity);
  idleWatched.add(figures);
  if (idleSweeper === null) {
    idleSweeper = setInterval(sweepIdle, Math.max(1, idleMs / 4));
    idleSweeper.unref();
  }
  (async () => {
    try {
      for await (const v of handler(queue)) {
        figures.eventsOut++;
        const p = outputs.send(v);
        if (p !== RESOLVED) await p;
      }
      outputs.end();
    } catch (error) {
      outputs.fail(error);
    } finally {
      idleWatched.delete(figures);
    }
  })();
  return { queue, outputs, figures };
}

/**
 * Baseline (d) for a pipe (S7): each stage a (d) stream, its handler reading
 * the bounded output queue of the stage before and its pump filling its own.
 * Every stage runs ahead of the next up to `capacity` outputs, and a stage's
 * wait for input is the queue's promise, which `end()` or `fail()` settles
 * whatever the stage before does: the shape of velo-stream's pipe.
 */
export function pipeBuffered(handlers, source, capacity = 256) {
  let input = source;
  let outputs;
  for (const handler of handlers) {
    outputs = new BoundedQueue(capacity);
    const into = outputs;
    const from = input;
    (async () => {
      try {
        for await (const v of handler(from)) {
          const p = into.send(v);
          if (p !== RESOLVED) await p;
        }
        into.end();
      } catch (error) {
        into.fail(error);
      }
    })();
    input = outputs;
  }
  return outputs;
}

/**
 * An async iterator whose `next()` answers with a promise of its own, settled
 * from the source's: `cancel()` settles a pending one (done) even while the
 * source never answers. The least a stage needs to be stopped from outside
 * while the stage before it is parked on a wait of its own (an async
 * generator's `return()` waits for its pending `next()`).
 */
export class CancellableInput {
  constructor(source) {
    this.it = source[Symbol.asyncIterator]();
    this.resolve = null;
    this.reject = null;
    this.cancelled = false;
    this.onNext = (r) => {
      const resolve = this.resolve;
      this.resolve = this.reject = null;
      resolve?.(r);
    };
    this.onError = (error) => {
      const reject = this.reject;
      this.resolve = this.reject = null;
      reject?.(error);
    };
  }

  next() {
    if (this.cancelled) return Promise.resolve(DONE);
    const wait = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.it.next().then(this.onNext, this.onError);
    return wait;
  }

  cancel() {
    this.cancelled = true;
    this.onNext(DONE);
  }

  return() {
    this.cancel();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/**
 * Baseline (e) for a pipe (S7): the chained generators of (c), each stage
 * after the first reading the one before through a `CancellableInput`, so
 * that a cancel can end every stage's wait. No buffers: each output goes
 * through the stages one at a time, as in (c).
 */
export function pipeCancellable(handlers, source) {
  let it = handlers[0](source);
  for (let i = 1; i < handlers.length; i++) it = handlers[i](new CancellableInput(it));
  return it;
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

// ----- task stages: hand-written concurrent maps and a batcher -----

const noop = () => {};

function argError(ErrorClass, code, message) {
  return Object.assign(new ErrorClass(message), { code });
}

function checkFunction(fn) {
  if (typeof fn !== 'function') throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', `fn must be a function, got ${typeof fn}`);
}

function checkCount(name, value) {
  if (!Number.isSafeInteger(value) || value < 1)
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', `${name} must be a positive integer, got ${value}`);
}

/** The source's iterator, and whether it is synchronous (then its next() is not awaited: an await per item is a tick per item). */
function iterate(source) {
  if (source != null && typeof source[Symbol.asyncIterator] === 'function') return [source[Symbol.asyncIterator](), false];
  if (source != null && typeof source[Symbol.iterator] === 'function') return [source[Symbol.iterator](), true];
  throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', 'source must be an iterable or an async iterable');
}

/** `fn(item)`: its value or promise, or a rejected promise if it throws (then, as for an async fn, the error arrives in order). */
function call(fn, item) {
  try {
    return fn(item);
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * The ordered concurrent map a careful user writes by hand: a ring of at most
 * `concurrency` calls, started in input order, results yielded in input
 * order. While the ring is full the source is not pulled (backpressure); a
 * call's result, finished or not, holds its slot until it is yielded. A
 * rejection is thrown when its turn comes; the calls after it are dropped
 * with their rejections handled, and the source is closed.
 *
 * Two versions were measured in 4 interleaved rounds (`async x => x + 1`,
 * 1M numbers, concurrency 16): this one, which yields the head promise, did
 * 2.3-4.0M/s; one that settles each call into slots by a `then` and awaits
 * only an unsettled head did 2.0-3.3M/s.
 */
export async function* mapOrdered(source, fn, concurrency = 16) {
  checkFunction(fn);
  checkCount('concurrency', concurrency);
  const [it, sync] = iterate(source);
  const ring = new Array(concurrency);
  let head = 0;
  let size = 0;
  let exhausted = false;
  try {
    for (;;) {
      while (size < concurrency && !exhausted) {
        const r = sync ? it.next() : await it.next();
        if (r.done) {
          exhausted = true;
          break;
        }
        const tail = head + size < concurrency ? head + size : head + size - concurrency;
        const result = call(fn, r.value);
        // A call that rejects while an earlier one is still pending would
        // otherwise be reported as an unhandled rejection (and end the
        // process); its error is thrown below when its turn comes.
        if (result instanceof Promise) result.catch(noop);
        ring[tail] = result;
        size++;
      }
      if (size === 0) return;
      const result = ring[head];
      ring[head] = undefined;
      head = head + 1 === concurrency ? 0 : head + 1;
      size--;
      // An async generator's yield awaits a promise (and throws its rejection here).
      yield result;
    }
  } finally {
    if (!exhausted) await it.return?.();
  }
}

/**
 * The same map with results in completion order: at most `concurrency` calls
 * running or finished-but-not-yielded; the first rejection to happen is
 * thrown, the other calls are dropped with their rejections handled, and the
 * source is closed.
 */
export async function* mapUnordered(source, fn, concurrency = 16) {
  checkFunction(fn);
  checkCount('concurrency', concurrency);
  const [it, sync] = iterate(source);
  // Settled calls in completion order, as pairs (fulfilled?, value or error).
  const settled = [];
  let first = 0;
  let held = 0; // running + settled but not yet yielded
  let wake = null;
  let exhausted = false;
  const settle = (ok, value) => {
    settled.push(ok, value);
    if (wake !== null) {
      const w = wake;
      wake = null;
      w();
    }
  };
  const fulfilled = (value) => settle(true, value);
  const rejected = (error) => settle(false, error);
  try {
    for (;;) {
      while (held < concurrency && !exhausted) {
        const r = sync ? it.next() : await it.next();
        if (r.done) {
          exhausted = true;
          break;
        }
        held++;
        const result = call(fn, r.value);
        if (result instanceof Promise) result.then(fulfilled, rejected);
        else settle(true, result);
      }
      if (first < settled.length) {
        const ok = settled[first];
        const value = settled[first + 1];
        settled[first] = settled[first + 1] = undefined;
        first += 2;
        if (first === settled.length) {
          settled.length = 0;
          first = 0;
        }
        held--;
        if (!ok) throw value;
        yield value;
      } else if (held === 0) {
        return;
      } else {
        await new Promise((resolve) => (wake = resolve));
      }
    }
  } finally {
    if (!exhausted) await it.return?.();
  }
}

/**
 * A hand-written batching stage: items grouped in input order into arrays of
 * `maxSize`, one `await fn(group)` per group, the final partial group
 * included; one output per group.
 */
export async function* batchMap(source, fn, maxSize) {
  checkFunction(fn);
  checkCount('maxSize', maxSize);
  const [it, sync] = iterate(source);
  let group = [];
  let exhausted = false;
  try {
    for (;;) {
      const r = sync ? it.next() : await it.next();
      if (r.done) {
        exhausted = true;
        break;
      }
      group.push(r.value);
      if (group.length === maxSize) {
        const full = group;
        group = [];
        yield fn(full);
      }
    }
    if (group.length > 0) yield fn(group);
  } finally {
    if (!exhausted) await it.return?.();
  }
}

/** Collects an async iterable into an array. */
export async function collect(iterable) {
  const out = [];
  for await (const v of iterable) out.push(v);
  return out;
}

/** p-map's pMapIterable (options: concurrency, backpressure, preserveOrder), collected. */
export const runPMap = (input, fn, options) => collect(pMapIterable(input, fn, options));

/** Node's `Readable.from(input).map(fn, { concurrency })` (ordered), collected. */
export const runReadableMap = (input, fn, concurrency) => Readable.from(input).map(fn, { concurrency }).toArray();

// ----- worker threads (bench/workers.mjs) -----

const PINNED_THREAD = new URL('./workers/pinned-thread.mjs', import.meta.url);

/**
 * One stream's handler pinned to a worker thread of its own, fed through the
 * worker's MessagePort in batches of `batch` events, at most two batches
 * ahead of what the handler read (credits the thread sends back), outputs
 * batched the same way: the hand-written alternative to workerFn.
 */
export class PinnedWorker {
  #worker;
  #credits = 2;
  #roomWaiter = null;
  #outputs = [];
  /** Whoever waits for outputs (the outputs() reader, a round trip). */
  #outWaiters = [];
  #ended = false;

  constructor(handler, batch = 256) {
    this.batch = batch;
    this.#worker = new Worker(PINNED_THREAD, { workerData: { handler, batch } });
    this.#worker.on('message', (m) => {
      if (m.credit) {
        this.#credits += m.credit;
        this.#roomWaiter?.();
      } else {
        if (m.end) this.#ended = true;
        else for (const v of m.values) this.#outputs.push(v);
        const waiters = this.#outWaiters;
        this.#outWaiters = [];
        for (const wake of waiters) wake();
      }
    });
  }

  /** Sends one batch, waiting for a credit first. */
  async sendBatch(values, transfer) {
    while (this.#credits === 0) await new Promise((resolve) => (this.#roomWaiter = resolve));
    this.#roomWaiter = null;
    this.#credits--;
    this.#worker.postMessage({ values }, transfer);
  }

  end() {
    this.#worker.postMessage({ end: true });
  }

  /** Outputs as they come, until the handler ends; then the thread is stopped. */
  async *outputs() {
    for (;;) {
      if (this.#outputs.length > 0) {
        const got = this.#outputs;
        this.#outputs = [];
        yield* got;
        continue;
      }
      if (this.#ended) break;
      await new Promise((resolve) => this.#outWaiters.push(resolve));
    }
    await this.#worker.terminate();
  }

  /** One event in, one output back (the live path): posts one message each way. */
  async roundTrip(value) {
    this.#worker.postMessage({ values: [value] });
    while (this.#outputs.length === 0) await new Promise((resolve) => this.#outWaiters.push(resolve));
    return this.#outputs.shift();
  }
}

/** run() on a pinned worker: events in batches, outputs collected. */
export async function runPinned(handler, events, batch = 256) {
  const w = new PinnedWorker(handler, batch);
  const collecting = collect(w.outputs());
  for (let i = 0; i < events.length; i += batch) await w.sendBatch(events.slice(i, i + batch));
  w.end();
  return collecting;
}

/** Piscina, one task per event, at most `window` tasks in flight, results in order. */
export async function runPiscina(pool, name, events, window = 512) {
  const out = new Array(events.length);
  let next = 0;
  async function lane() {
    while (next < events.length) {
      const i = next++;
      out[i] = await pool.run(events[i], { name });
    }
  }
  await Promise.all(Array.from({ length: window }, lane));
  return out;
}
