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

// ----- (g) the floor of a stream -----
//
// The cheapest stream written by hand that keeps the promises velo-stream
// makes for every stream (docs/semantics.md), each tested in
// __test__/bench-baselines.test.mjs: admission against `maxConcurrent`; a
// full input makes the sender wait; a reader that does not read pauses the
// handler at its `yield` (at most `capacity` outputs wait); a cancel runs the
// handler's `finally`, whether it waits for input (nothing is ever sent) or
// at its `yield`, and settles every pending read; an idle input ends the
// stream as `end()` does, never early, with one shared timer per function; a
// pending read keeps the process alive; the counts in and out and each
// event's queue wait (a histogram of powers of two of microseconds) per
// stream and per function; outputs made before a handler error come before
// it. What it leaves out: limiters, signals, sessions, pipes, metrics while
// running beyond the counts, collection of abandoned streams.
//
// How it stays cheap: a stream is one object of prototype methods and its
// handler's input a second; the handler is stepped by two reactions bound
// once per stream; an event sent to a handler waiting for it, and an output
// yielded to a waiting read, are handed over with no buffer in between
// (the generator's own `{ value, done }` goes to the read); no clock is
// read for a handoff (its wait is 0) and none for the idle deadline (the
// shared timer counts steps, and a send notes the step it was made in).

/** A floor stream's idle deadline is judged every `idleMs / IDLE_STEPS` ms. */
const IDLE_STEPS = 4;
function floorError(message, code) {
  return Object.assign(new Error(message), { code });
}

/** A function of floor streams: admission, the totals of its streams, and the one idle timer. */
export class FloorFn {
  constructor(handler, { maxConcurrent = 10_000, idleMs = 30_000, capacity = 256 } = {}) {
    this.handler = handler;
    this.maxConcurrent = maxConcurrent;
    this.idleMs = idleMs;
    this.capacity = capacity;
    this.active = 0;
    this.totals = { opened: 0, completed: 0, failed: 0, cancelled: 0, eventsIn: 0, eventsOut: 0, waits: new Array(32).fill(0) };
    /** Streams whose idle clock runs (input open, no send waiting for room). */
    this.idle = new Set();
    /** Idle steps so far: a stream idle for more than IDLE_STEPS whole steps has been idle at least `idleMs`. */
    this.step = 0;
    this.sweeper = null;
    /** Streams whose pending read waits on their input (see `FloorStream.hold`): the timer is ref'd while any do. */
    this.holding = 0;
  }

  open() {
    if (this.active >= this.maxConcurrent) {
      throw floorError(`${this.maxConcurrent} streams are open (maxConcurrent)`, 'ERR_FLOOR_STREAM_LIMIT');
    }
    this.active++;
    this.totals.opened++;
    return new FloorStream(this);
  }

  /** One idle step: streams idle for more than IDLE_STEPS steps end their input (setInterval never fires early). */
  sweep() {
    const step = ++this.step;
    for (const stream of this.idle) if (step - stream.seen > IDLE_STEPS) stream.end();
    if (this.idle.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  watchIdle(stream) {
    if (this.idleMs === 0) return;
    this.idle.add(stream);
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), this.idleMs / IDLE_STEPS);
      this.sweeper.unref();
    }
  }
}

/** What the handler iterates: the stream's input. */
class FloorInput {
  constructor(stream) {
    this.stream = stream;
  }
  next() {
    return this.stream.take();
  }
  return() {
    this.stream.end();
    return Promise.resolve(DONE);
  }
  [Symbol.asyncIterator]() {
    return this;
  }
}

/** One floor stream: its input, its outputs, its figures; `send`/`end`/`cancel`, and the async iterator of its outputs. */
class FloorStream {
  constructor(fn) {
    this.fn = fn;
    this.inputEnded = false;
    this.cancelled = false;
    this.finished = false;
    this.failure = null;
    /** Buffered events and the times they were sent (made at the first event buffered). */
    this.events = null;
    this.sentAt = null;
    this.eventsHead = 0;
    /** Sends waiting for room: [event, resolve, reject, time]. */
    this.senders = null;
    /** The handler's pending take: its resolve. */
    this.taker = null;
    this.outputs = null;
    this.outputsHead = 0;
    this.reader = null;
    this.rejectReader = null;
    /** The handler waits at its `yield` for room. */
    this.paused = false;
    this.whenFinished = null;
    /** Counted in `fn.holding`. */
    this.holding = false;
    this.eventsIn = 0;
    this.eventsOut = 0;
    this.zeroWaits = 0;
    this.waits = null;
    this.seen = fn.step;
    this.onStep = (r) => this.stepped(r);
    this.onThrow = (error) => this.finish(error, true);
    fn.watchIdle(this);
    this.it = fn.handler(new FloorInput(this))[Symbol.asyncIterator]();
    this.it.next().then(this.onStep, this.onThrow);
  }

  get bufferedIn() {
    return this.events === null ? 0 : this.events.length - this.eventsHead;
  }

  get bufferedOut() {
    return this.outputs === null ? 0 : this.outputs.length - this.outputsHead;
  }

  send(event) {
    if (this.inputEnded) return Promise.reject(floorError('The stream is closed', 'ERR_FLOOR_STREAM_CLOSED'));
    this.eventsIn++;
    this.seen = this.fn.step;
    const taker = this.taker;
    if (taker !== null) {
      this.taker = null;
      this.unhold();
      this.zeroWaits++;
      taker({ value: event, done: false });
      return RESOLVED;
    }
    if (this.senders === null && this.bufferedIn < this.fn.capacity) {
      if (this.events === null) {
        this.events = [];
        this.sentAt = [];
      }
      this.events.push(event);
      this.sentAt.push(performance.now());
      return RESOLVED;
    }
    // No room: the idle clock stops while a send waits (it runs again when the handler takes one).
    this.fn.idle.delete(this);
    return new Promise((resolve, reject) => (this.senders ??= []).push([event, resolve, reject, performance.now()]));
  }

  /** The handler's next event. */
  take() {
    if (this.bufferedIn > 0) {
      const i = this.eventsHead++;
      const event = this.events[i];
      this.record((performance.now() - this.sentAt[i]) * 1000);
      this.events[i] = undefined;
      if (this.eventsHead === this.events.length) this.events.length = this.sentAt.length = this.eventsHead = 0;
      this.admitSender();
      return Promise.resolve({ value: event, done: false });
    }
    if (this.senders !== null) {
      const [event, resolve, , time] = this.senders.shift();
      this.record((performance.now() - time) * 1000);
      if (this.senders.length === 0) this.senderless();
      resolve();
      return Promise.resolve({ value: event, done: false });
    }
    if (this.inputEnded) return Promise.resolve(DONE);
    const taking = new Promise((resolve) => (this.taker = resolve));
    this.hold();
    return taking;
  }

  /**
   * A read waits while the handler waits for input, which only a send, an
   * end, a cancel or the idle deadline can settle: the idle timer keeps the
   * process alive meanwhile. (While the handler runs, its own work does.)
   */
  hold() {
    if (this.holding || this.reader === null || this.taker === null || this.fn.sweeper === null) return;
    this.holding = true;
    if (this.fn.holding++ === 0) this.fn.sweeper.ref();
  }

  unhold() {
    if (!this.holding) return;
    this.holding = false;
    if (--this.fn.holding === 0) this.fn.sweeper?.unref();
  }

  /** A sender waiting for room takes the room a take made. */
  admitSender() {
    if (this.senders === null) return;
    const [event, resolve, , time] = this.senders.shift();
    this.events.push(event);
    this.sentAt.push(time);
    if (this.senders.length === 0) this.senderless();
    resolve();
  }

  /** No send waits any more: the idle clock runs again, from now. */
  senderless() {
    this.senders = null;
    this.seen = this.fn.step;
    if (!this.inputEnded) this.fn.watchIdle(this);
  }

  record(waitedUs) {
    if (waitedUs < 1) this.zeroWaits++;
    else (this.waits ??= new Array(32).fill(0))[Math.min(31, 32 - Math.clz32(waitedUs))]++;
  }

  end() {
    if (this.inputEnded) return;
    this.inputEnded = true;
    this.fn.idle.delete(this);
    const taker = this.taker;
    if (taker !== null && this.senders === null) {
      this.taker = null;
      this.unhold();
      taker(DONE);
    }
  }

  /** The handler's next step: an output, or its end. */
  stepped(r) {
    if (r.done) return this.finish(null, false);
    if (this.cancelled) return this.stop();
    this.eventsOut++;
    const reader = this.reader;
    if (reader !== null) {
      this.reader = this.rejectReader = null;
      this.unhold();
      reader(r);
    } else {
      (this.outputs ??= []).push(r.value);
      if (this.bufferedOut >= this.fn.capacity) {
        this.paused = true;
        return;
      }
    }
    this.it.next().then(this.onStep, this.onThrow);
  }

  /** Stops the handler at its `yield`: its `finally` runs. */
  stop() {
    this.paused = false;
    Promise.resolve(this.it.return?.()).then(() => this.finish(null, false), this.onThrow);
  }

  finish(error, threw) {
    if (this.finished) return;
    this.finished = true;
    this.end();
    const fn = this.fn;
    fn.active--;
    const totals = fn.totals;
    if (threw) {
      this.failure = { error };
      totals.failed++;
    } else if (this.cancelled) totals.cancelled++;
    else totals.completed++;
    totals.eventsIn += this.eventsIn;
    totals.eventsOut += this.eventsOut;
    totals.waits[0] += this.zeroWaits;
    if (this.waits !== null) for (let i = 0; i < 32; i++) totals.waits[i] += this.waits[i];
    if (this.reader !== null && this.bufferedOut === 0) this.answerEnd();
    this.whenFinished?.resolve();
  }

  /** The read waiting at the end: done, or the handler's error (once). */
  answerEnd() {
    const [resolve, reject] = [this.reader, this.rejectReader];
    this.reader = this.rejectReader = null;
    this.unhold();
    const failure = this.failure;
    this.failure = null;
    if (failure !== null) reject(failure.error);
    else resolve(DONE);
  }

  next() {
    if (this.bufferedOut > 0) {
      const i = this.outputsHead++;
      const value = this.outputs[i];
      this.outputs[i] = undefined;
      if (this.outputsHead === this.outputs.length) this.outputs.length = this.outputsHead = 0;
      if (this.paused) {
        this.paused = false;
        this.it.next().then(this.onStep, this.onThrow);
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.finished) {
      const failure = this.failure;
      this.failure = null;
      return failure === null ? Promise.resolve(DONE) : Promise.reject(failure.error);
    }
    if (this.reader !== null) return Promise.reject(floorError('One read at a time', 'ERR_FLOOR_READ_PENDING'));
    const read = new Promise((resolve, reject) => {
      this.reader = resolve;
      this.rejectReader = reject;
    });
    this.hold();
    return read;
  }

  /** Drops what is buffered, refuses the waiting sends, stops the handler (its `finally` runs) and ends every pending read. Resolves once the handler finished. */
  cancel() {
    if (this.finished) return RESOLVED;
    if (!this.cancelled) {
      this.cancelled = true;
      this.events = this.sentAt = this.outputs = null;
      this.eventsHead = this.outputsHead = 0;
      const senders = this.senders;
      this.senders = null;
      this.end();
      if (senders !== null)
        for (const [, , reject] of senders) reject(floorError('The stream was cancelled', 'ERR_FLOOR_STREAM_CLOSED'));
      if (this.paused) this.stop();
      if (this.reader !== null) this.answerEnd();
    }
    if (this.whenFinished === null) {
      let resolve;
      const promise = new Promise((r) => (resolve = r));
      this.whenFinished = { promise, resolve };
    }
    return this.whenFinished.promise;
  }

  return() {
    return this.cancel().then(() => DONE);
  }

  metrics() {
    const waits = this.waits === null ? new Array(32).fill(0) : [...this.waits];
    waits[0] += this.zeroWaits;
    return { eventsIn: this.eventsIn, eventsOut: this.eventsOut, waits };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
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
