// One running stream: the JavaScript half of a stream's state.
//
// The core (NativeStream) holds the events and outputs, and decides: a send
// that finds no room is told PARKED, a take that finds nothing is told EMPTY.
// This file owns only what must live in JavaScript: the promises of whoever
// waits (parked senders, the handler waiting for input, readers, the handler
// paused at a yield), and the driving of the handler's async iterator.
//
// Per event, nothing here allocates beyond the `{ value, done }` result an
// async iterator must return; promises are made only when someone waits.
import type { Duplex } from 'node:stream';
import { toDuplex } from '../integrations/duplex';
import { StreamClosedError, describe, invalidReturn, invalidType } from '../errors';
import { Fifo } from './fifo';
import {
  ACCEPTED,
  CLOSED,
  EMPTY,
  ENDED,
  HANDOFF,
  PARKED,
  PHASES,
  type IdleTarget,
  holdAlive,
  holdIdle,
  VALUES,
  ops,
  scratch,
  scratchU32,
  releaseAlive,
  unwatchIdle,
  watchIdle,
} from './addon';
import { drop, put, reap, take } from './values';
import { type Endpoints, ReadKind, type SendControl, kCancelled, kDrain, kInputError, kRead, kSendAll, kSignal, kWaitOutput } from './protocol';
import type { EventSource, FeedOutputs, Stream, StreamContext, StreamHandler, StreamMetrics, StreamState } from '../types';

/** The handler's stream finished (used by pipes). */
export const kFinished = Symbol.for('velo-stream.finished');
/** The handler's error, if it threw (used by pipes). */
export const kFailure = Symbol.for('velo-stream.failure');
/** Once every output is read, reads reject with `error` (a pipe's earlier stage failed). */
export const kFailAtEnd = Symbol.for('velo-stream.failAtEnd');
const kHandlerSignal = Symbol.for('velo-stream.handlerSignal');
const kNextInput = Symbol.for('velo-stream.nextInput');
const kReleaseInput = Symbol.for('velo-stream.releaseInput');

interface Settle<T> {
  resolve(value: T): void;
  reject(reason: unknown): void;
}

interface Reader extends Settle<unknown> {
  kind: ReadKind;
}

const DONE: IteratorResult<never, undefined> = Object.freeze({ done: true, value: undefined });
/** Stands for a waiting queue not made yet: always empty, never pushed to. */
const NO_QUEUE = new Fifo<never>();
/** Stands for a batch array not made yet (never written to). */
const NO_BUFFER: unknown[] = Object.freeze([]) as unknown as unknown[];
const RESOLVED: Promise<void> = Promise.resolve();
/** `poll` found nothing yet. */
const NOT_YET = Symbol('velo.notYet');

/**
 * Frees what a garbage-collected stream held: its idle watch (a weak one,
 * left while its clock was paused: the core never reports a disarmed
 * deadline, so nothing else would remove it), its native state, and the
 * value-table entries the core dropped with it.
 */
const reclaim = new FinalizationRegistry<number>((handle) => {
  unwatchIdle(ops.key(handle));
  ops.free(handle);
  reap();
});

/** Moves a run that a take left in the scratch buffer into `buf`; returns its length (or the EMPTY/ENDED code). */
function unpackRun(code: number, buf: unknown[]): number {
  if (code >= VALUES) {
    const n = code - VALUES;
    for (let i = 0; i < n; i++) buf[i] = take(scratchU32[i] as number);
    return n;
  }
  for (let i = 0; i < code; i++) buf[i] = scratch[i];
  return code;
}

/**
 * Pushes `values[start..start+n]` (which fit in the lane's room) through the
 * scratch buffer: one native call per run of numbers or of other values.
 */
function pushRuns(
  h: number,
  values: readonly unknown[],
  start: number,
  n: number,
  pushNumbers: (h: number, count: number) => number,
  pushValues: (h: number, count: number) => number,
): void {
  let k = 0;
  while (k < n) {
    let len = 0;
    if (typeof values[start + k] === 'number') {
      for (; k < n && typeof values[start + k] === 'number'; k++) scratch[len++] = values[start + k] as number;
      pushNumbers(h, len);
    } else {
      for (; k < n && typeof values[start + k] !== 'number'; k++) scratchU32[len++] = put(values[start + k]);
      pushValues(h, len);
    }
  }
}

/**
 * Sends (or yields) one value: numbers as they are, anything else through the
 * value table. `waiting`: the receiving side waits right now, so the core may
 * hand the value straight over (HANDOFF).
 */
function pushOne(
  h: number,
  value: unknown,
  waiting: boolean,
  pushNumber: (h: number, n: number, waiting: boolean) => number,
  pushValue: (h: number, i: number, waiting: boolean) => number,
): number {
  if (typeof value === 'number') return pushNumber(h, value, waiting);
  const i = put(value);
  const code = pushValue(h, i, waiting);
  // Refused, or handed straight to the waiting side: the core kept no reference.
  if (code === HANDOFF || code === CLOSED) drop(i);
  return code;
}

/** Whether `value` can be a source of events. Strings are refused: iterating one sends characters, never what was meant. */
export function assertSource(value: unknown, name = 'events'): asserts value is EventSource<unknown> {
  const ok =
    value !== null &&
    typeof value === 'object' &&
    // A String object iterates its characters, as a string would.
    Object.prototype.toString.call(value) !== '[object String]' &&
    (typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function' ||
      typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function');
  if (!ok) {
    throw invalidType(`The "${name}" argument must be an iterable or async iterable of events. Received ${describe(value)}`);
  }
}

/** The async iterable a handler reads its events from. */
class Input<I> implements AsyncIterableIterator<I> {
  readonly #stream: StreamImpl<I, unknown>;
  constructor(stream: StreamImpl<I, unknown>) {
    this.#stream = stream;
  }
  next(): Promise<IteratorResult<I>> {
    return this.#stream[kNextInput]();
  }
  /** The handler left its `for await` early: it will read no more events. */
  return(): Promise<IteratorResult<I>> {
    this.#stream[kReleaseInput]();
    return Promise.resolve(DONE);
  }
  [Symbol.asyncIterator](): this {
    return this;
  }
}

class Context implements StreamContext {
  readonly #stream: StreamImpl<unknown, unknown>;
  constructor(stream: StreamImpl<unknown, unknown>) {
    this.#stream = stream;
  }
  get id(): string {
    return this.#stream.id;
  }
  get signal(): AbortSignal {
    return this.#stream[kHandlerSignal];
  }
}

/** The consumer's iterator over a stream's outputs. Leaving it early (`break`) cancels the stream. */
export class Outputs<O> implements AsyncIterableIterator<O> {
  readonly #stream: Endpoints<unknown, O>;
  constructor(stream: Endpoints<unknown, O>) {
    this.#stream = stream;
  }
  next(): Promise<IteratorResult<O>> {
    return this.#stream[kRead](ReadKind.Iter) as Promise<IteratorResult<O>>;
  }
  async return(value?: unknown): Promise<IteratorResult<O>> {
    await this.#stream.cancel();
    return { done: true, value: value as O };
  }
  async throw(error?: unknown): Promise<IteratorResult<O>> {
    await this.#stream.cancel(error);
    throw error;
  }
  [Symbol.asyncIterator](): this {
    return this;
  }
}

/**
 * Starts sending `source` into `stream`. `failure()` tells whether the source
 * failed (a source error cancels the stream with that error); `stop()`, once
 * the outputs are finished, closes a source still waiting for its next event
 * (its `return()`), since the stream will never take another.
 */
function startSending<I, O>(stream: Endpoints<I, O>, source: EventSource<I>) {
  let sourceError: { error: unknown } | undefined;
  const control: SendControl = {};
  stream[kSendAll](source, true, control).catch((error: unknown) => {
    sourceError = { error };
    void stream.cancel(error);
  });
  return { failure: () => sourceError, stop: () => control.stop?.() };
}

/** After the last output: the source's error, or the abort reason, if either ended the stream. */
function throwIfStopped<I, O>(stream: Endpoints<I, O>, sourceFailure: { error: unknown } | undefined): void {
  if (sourceFailure !== undefined) throw sourceFailure.error;
  const signal = stream[kSignal];
  if (stream.state === 'cancelled' && signal?.aborted) throw signal.reason;
}

/**
 * `stream.feed(events)`, for single and piped streams. A stream whose input
 * is already closed refuses the feed as it would refuse a send: the
 * iteration rejects with that error (or the abort reason, if its signal
 * cancelled it) and the source is not read.
 */
export function feedStream<I, O>(stream: Endpoints<I, O>, events: EventSource<I>): FeedOutputs<O> {
  assertSource(events);
  const refused = stream[kInputError]();
  // A stream stopped by its signal refuses with the signal's reason, as run() and feed() report an abort.
  const signal = stream[kSignal];
  const error = stream.state === 'cancelled' && signal?.aborted ? signal.reason : refused;
  const control = { cancelled: false };
  const outputs = refused === undefined ? feedOutputs(stream, events, control) : refusedFeed<O>(error);
  const cancel = (reason?: unknown): Promise<void> => {
    // Ends the iteration even when the stream itself has already finished
    // and only this feed still holds outputs.
    control.cancelled = true;
    return stream.cancel(reason);
  };
  return Object.assign(outputs, { cancel });
}

// eslint-disable-next-line require-yield
async function* refusedFeed<O>(error: unknown): AsyncGenerator<O, void> {
  throw error;
}

/** `feed`: outputs one by one as they come, while the source is sent. */
async function* feedOutputs<I, O>(
  stream: Endpoints<I, O>,
  source: EventSource<I>,
  control: { cancelled: boolean },
): AsyncGenerator<O, void> {
  const sending = startSending(stream, source);
  const batch: O[] = [];
  let finished = false;
  try {
    outputs: for (;;) {
      batch.length = 0;
      finished = stream[kDrain](batch);
      for (const value of batch) {
        // A cancel drops the outputs not yet read, these included.
        if (control.cancelled || stream[kCancelled]) break outputs;
        yield value;
      }
      if (finished) break;
      await stream[kWaitOutput]();
    }
  } finally {
    // Left early: by `break`, or by the stream's own error. Either way the
    // stream (and so the source) must stop.
    if (!finished) await stream.cancel();
    sending.stop();
  }
  throwIfStopped(stream, sending.failure());
}

/** `run`: every output, collected in batches straight into the result. */
export async function collectOutputs<I, O>(stream: Endpoints<I, O>, source: EventSource<I>): Promise<O[]> {
  const sending = startSending(stream, source);
  const out: O[] = [];
  try {
    while (!stream[kDrain](out)) await stream[kWaitOutput]();
  } catch (error) {
    await stream.cancel();
    throw error;
  } finally {
    sending.stop();
  }
  throwIfStopped(stream, sending.failure());
  return out;
}

export class StreamImpl<I, O> implements Stream<I, O>, Endpoints<I, O>, IdleTarget {
  /** The stream's handle in the native slab. */
  readonly #h: number;
  readonly #label: string;
  readonly #capacity: number;
  #id: string | undefined;
  readonly #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;
  #abort: AbortController | undefined;
  #cancelReason: unknown;

  // Input side: parked senders, and the batch lent to the handler.
  /** Senders waiting for room (a shared empty queue until the first one). */
  #senders: Fifo<Settle<void>> = NO_QUEUE as Fifo<Settle<void>>;
  /** The batch lent to the handler (made on first use). */
  #inBuf: unknown[] = NO_BUFFER;
  #inPos = 0;
  #inLen = 0;
  #inWaiter: ((r: IteratorResult<I>) => void) | null = null;
  #inWaiting: Promise<IteratorResult<I>> | null = null;
  /**
   * The core may hold something for the handler: events queued or waiting,
   * a lent batch to acknowledge, or the end of input to report. While false,
   * a take would find nothing, so the handler waits without asking the core.
   */
  #inPending = false;
  #idleOn: boolean;
  /** The handler left its input loop (`Input.return()`); it may still be running. */
  #inputReleased = false;
  /** Whether the idle deadline runs (and the stream is held for it); see `#syncKeepAlive`. */
  #idleRunning: boolean;
  #key = -1;

  // Output side: readers, the batch lent to them, and the paused handler.
  /** The batch lent to readers (made on first use). */
  #outBuf: unknown[] = NO_BUFFER;
  #outPos = 0;
  #outLen = 0;
  /** Reads waiting for an output (a shared empty queue until the first one). */
  #readers: Fifo<Reader> = NO_QUEUE as Fifo<Reader>;
  #pumpWaiter: (() => void) | null = null;
  /** As `#inPending`, for outputs and their readers. */
  #outPending = false;
  /**
   * Outputs yielded but not yet handed to the core, within `#credit`: room
   * the core granted, so they are within the bound. Committed in one call
   * before anyone reads, so a batch reader costs no native call per output.
   */
  #stage: unknown[] = NO_BUFFER;
  #credit = 0;
  #wakeScheduled = false;
  #keepingAlive = false;

  // Endings.
  #failure: { error: unknown } | undefined;
  #cancelled = false;
  /** Settles when the handler has returned; made only when someone asks (see kFinished). */
  #finished: Promise<void> | null = null;
  #resolveFinished: (() => void) | null = null;
  #handlerDone = false;

  constructor(
    handle: number,
    handler: StreamHandler<I, O>,
    label: string,
    capacity: number,
    idle: boolean,
    signal: AbortSignal | undefined,
  ) {
    this.#h = handle;
    reclaim.register(this, handle);
    this.#label = label;
    this.#capacity = capacity;
    this.#idleOn = this.#idleRunning = idle;
    this.#signal = signal;
    if (idle) watchIdle(this.#streamKey(), this);

    let iterator: AsyncIterator<O> | undefined;
    try {
      const iterable: unknown = handler(new Input(this), new Context(this as StreamImpl<unknown, unknown>));
      if (iterable !== null && typeof (iterable as AsyncIterable<O>)?.[Symbol.asyncIterator] === 'function') {
        iterator = (iterable as AsyncIterable<O>)[Symbol.asyncIterator]();
      } else {
        // An `async function` (not `async function*`) returns a promise: its
        // own rejection would go unhandled and crash the process, on top of
        // this error. This error is the one to report.
        if (typeof (iterable as PromiseLike<unknown> | null)?.then === 'function') {
          Promise.resolve(iterable).catch(() => {});
        }
        throw invalidReturn(
          `The handler of "${label}" must return an async iterable (write it as an async function*). Received ${describe(iterable)}`,
        );
      }
    } catch (error) {
      this.#handlerThrew(error);
    }
    if (iterator !== undefined) void this.#pump(iterator);

    if (signal !== undefined) {
      if (signal.aborted) {
        void this.cancel(signal.reason);
      } else if (ops.phase(this.#h) < 2) {
        this.#onAbort = () => void this.cancel(signal.reason);
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  #streamKey(): number {
    if (this.#key < 0) this.#key = ops.key(this.#h);
    return this.#key;
  }

  get id(): string {
    return (this.#id ??= `s${this.#streamKey()}`);
  }

  get state(): StreamState {
    return PHASES[ops.phase(this.#h)] as StreamState;
  }

  get metrics(): StreamMetrics {
    this.#commitStage();
    return ops.metrics(this.#h, this.#inLen - this.#inPos, this.#outLen - this.#outPos) as StreamMetrics;
  }

  get [kSignal](): AbortSignal | undefined {
    return this.#signal;
  }

  /** The handler's `ctx.signal`, made on first use (most handlers never look). */
  get [kHandlerSignal](): AbortSignal {
    if (this.#abort === undefined) {
      this.#abort = new AbortController();
      if (this.#cancelled) this.#abort.abort(this.#cancelReason);
    }
    return this.#abort.signal;
  }

  get [kFinished](): Promise<void> {
    if (this.#finished === null) {
      this.#finished = this.#handlerDone ? RESOLVED : new Promise((resolve) => (this.#resolveFinished = resolve));
    }
    return this.#finished;
  }

  get [kFailure](): { error: unknown } | undefined {
    return this.#failure;
  }

  // ----- input -----

  send(event: I): Promise<void> {
    const code = pushOne(this.#h, event, this.#inWaiter !== null, ops.sendNumber, ops.sendValue);
    if (code === HANDOFF) {
      // The handler was waiting for input: it gets the event directly.
      const resolve = this.#inWaiter as (r: IteratorResult<I>) => void;
      this.#inWaiter = this.#inWaiting = null;
      resolve({ value: event, done: false });
      return RESOLVED;
    }
    if (code === ACCEPTED) {
      this.#inPending = true;
      this.#wakeInput();
      return RESOLVED;
    }
    if (code === PARKED) {
      this.#inPending = true;
      return this.#waitAsSender();
    }
    // Refused because the handler left its input loop but still runs: it is
    // answered when the handler finishes (see `kReleaseInput`).
    if (this.#inputReleased && !this.#handlerDone && !this.#cancelled) return this.#waitAsSender();
    return Promise.reject(this.#closedError());
  }

  #waitAsSender(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#senders === NO_QUEUE) this.#senders = new Fifo();
      this.#senders.push({ resolve, reject });
      this.#syncKeepAlive();
    });
  }

  end(): void {
    if (ops.end(this.#h)) {
      this.#inPending = true;
      this.#idleOff();
      this.#wakeInput();
    }
  }

  feed(events: EventSource<I>): FeedOutputs<O> {
    return feedStream(this, events);
  }

  get [kCancelled](): boolean {
    return this.#cancelled;
  }

  [kInputError](): Error | undefined {
    if (this.#cancelled || this.#handlerDone || this.#inputReleased || ops.phase(this.#h) !== 0) return this.#closedError();
    return undefined;
  }

  duplex(): Duplex {
    return toDuplex(this);
  }

  async [kSendAll](source: EventSource<I>, end: boolean, control?: SendControl): Promise<boolean> {
    let sent: boolean;
    if (Array.isArray(source)) sent = await this.#sendArray(source);
    else if (typeof (source as AsyncIterable<I>)[Symbol.asyncIterator] === 'function') {
      sent = await this.#sendAsync(source as AsyncIterable<I>, control);
    } else sent = await this.#sendSync(source as Iterable<I>);
    if (sent && end) this.end();
    return sent;
  }

  /** One ordinary send; false if the stream is closed. */
  #sendOne(event: I): boolean | Promise<boolean> {
    const sent = this.send(event);
    if (sent === RESOLVED) return true;
    return sent.then(
      () => true,
      (error: unknown) => {
        if (error instanceof StreamClosedError) return false;
        throw error;
      },
    );
  }

  // Arrays cross into the core in slices that fit the free room: one native
  // call per slice instead of one per event.
  async #sendArray(events: readonly I[]): Promise<boolean> {
    let i = 0;
    while (i < events.length) {
      const room = ops.room(this.#h);
      if (room === 0) {
        // Full, closed, or senders waiting: an ordinary send finds out which.
        if (!(await this.#sendOne(events[i++] as I))) return false;
        continue;
      }
      const n = Math.min(room, events.length - i, scratch.length);
      this.#sendSlice(events, i, n);
      i += n;
    }
    return true;
  }

  /**
   * Sends `values[start..start+n]` (which fit in the room) through the
   * scratch buffer, one native call per run of numbers or of other values,
   * then wakes the handler if it waits.
   */
  #sendSlice(values: readonly I[], start: number, n: number): void {
    pushRuns(this.#h, values, start, n, ops.sendNumbers, ops.sendValues);
    this.#inPending = true;
    this.#wakeInput();
  }

  async #sendSync(source: Iterable<I>): Promise<boolean> {
    const it = source[Symbol.iterator]();
    const stage: I[] = [];
    for (;;) {
      const room = ops.room(this.#h);
      if (room === 0) {
        const r = it.next();
        if (r.done) return true;
        if (!(await this.#sendOne(r.value))) {
          it.return?.();
          return false;
        }
        continue;
      }
      stage.length = 0;
      const max = Math.min(room, scratch.length);
      let r: IteratorResult<I> | undefined;
      while (stage.length < max && !(r = it.next()).done) stage.push(r.value);
      if (stage.length > 0) this.#sendSlice(stage, 0, stage.length);
      if (r?.done) return true;
    }
  }

  async #sendAsync(source: AsyncIterable<I>, control: SendControl | undefined): Promise<boolean> {
    const it = source[Symbol.asyncIterator]();
    let stopped = false;
    if (control !== undefined) {
      // The stream may finish (an idle timeout, its handler returning) while
      // the source waits for its next event, perhaps forever: close it then.
      // (An async generator runs the return() once its pending next() settles.)
      control.stop = () => {
        if (stopped) return;
        stopped = true;
        Promise.resolve(it.return?.()).catch(() => {});
      };
    }
    try {
      for (;;) {
        const r = await it.next();
        if (stopped) return false;
        if (r.done) return true;
        const sent = this.#sendOne(r.value);
        if (sent === true || (await sent)) continue;
        stopped = true;
        await it.return?.();
        return false;
      }
    } finally {
      // Finished, or failed: nothing left to stop.
      stopped = true;
    }
  }

  [kNextInput](): Promise<IteratorResult<I>> {
    if (this.#inPos < this.#inLen) {
      const value = this.#inBuf[this.#inPos] as I;
      this.#inBuf[this.#inPos++] = undefined;
      return Promise.resolve({ value, done: false });
    }
    const r = this.#pollInput();
    if (r !== null) return Promise.resolve(r);
    // The handler is about to wait for input: whatever it yielded so far is
    // all there is for now, so batch readers need not wait any longer.
    if (this.#readers.length > 0) this.#serveReaders();
    // A second next() before the first settled (not something for-await
    // does) waits its turn rather than taking the first one's place.
    if (this.#inWaiting !== null) return this.#inWaiting.then(() => this[kNextInput]());
    return (this.#inWaiting = new Promise((resolve) => (this.#inWaiter = resolve)));
  }

  /** Take the next batch of events from the core; null if the handler must wait. */
  #pollInput(): IteratorResult<I> | null {
    if (!this.#inPending) return null;
    if (this.#inBuf === NO_BUFFER) this.#inBuf = [];
    const n = unpackRun(ops.takeInput(this.#h, this.#capacity), this.#inBuf);
    this.#inPending = n !== EMPTY;
    if (this.#senders.length > 0) this.#admitSenders(ops.admitted(this.#h));
    if (n > 0) {
      this.#inPos = 1;
      this.#inLen = n;
      const value = this.#inBuf[0] as I;
      this.#inBuf[0] = undefined;
      return { value, done: false };
    }
    this.#inPos = this.#inLen = 0;
    return n === ENDED ? DONE : null;
  }

  #wakeInput(): void {
    const resolve = this.#inWaiter;
    if (resolve === null) return;
    const r = this.#pollInput();
    if (r === null) return;
    this.#inWaiter = this.#inWaiting = null;
    resolve(r);
  }

  #admitSenders(count: number): void {
    for (let i = 0; i < count; i++) this.#senders.shift()?.resolve();
    if (count > 0) this.#syncKeepAlive();
  }

  [kReleaseInput](): void {
    ops.releaseInput(this.#h);
    reap();
    this.#inPending = true;
    this.#inPos = this.#inLen = 0;
    this.#inBuf = NO_BUFFER;
    this.#idleOff();
    this.#inputReleased = true;
    // Waiting sends are not rejected yet. Leaving a `for await` by a throw
    // calls this first, and the error comes out of the handler only after its
    // `finally` blocks, which may await real cleanup: sends are answered when
    // the handler finishes (`#afterHandler`), with its error as the cause if
    // it threw. Until then they wait, as they would for a handler that is
    // slow to read; `cancel()` answers them at once.
  }

  /** Errors are made only when someone is waiting: capturing a stack costs microseconds. */
  #rejectSenders(makeError: () => Error): void {
    if (this.#senders.length === 0) return;
    const error = makeError();
    for (const sender of this.#senders.drain()) sender.reject(error);
    this.#syncKeepAlive();
  }

  // ----- idle -----

  idleFired(): void {
    if (ops.idleFire(this.#h)) {
      this.#inPending = true;
      this.#idleOff();
      this.#wakeInput();
    }
  }

  #idleOff(): void {
    if (!this.#idleOn) return;
    this.#idleOn = this.#idleRunning = false;
    unwatchIdle(this.#streamKey());
    this.#syncKeepAlive();
  }

  /**
   * Follows whether this stream's idle deadline runs (it pauses while a send
   * waits for room): while it runs, the stream is held (see `holdIdle`), and
   * a pending read keeps the process alive, as the deadline will settle it.
   */
  #syncKeepAlive(): void {
    const running = this.#idleOn && this.#senders.length === 0;
    // (#idleRunning is false whenever #idleOn is.)
    if (running !== this.#idleRunning) this.#idleClockChanged(running);
    const want = running && this.#readers.length > 0;
    if (want === this.#keepingAlive) return;
    this.#keepingAlive = want;
    if (want) holdAlive();
    else releaseAlive();
  }

  #idleClockChanged(running: boolean): void {
    this.#idleRunning = running;
    holdIdle(this.#streamKey(), this, running);
  }

  // ----- the handler -----

  async #pump(it: AsyncIterator<O>): Promise<void> {
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        if (this.#cancelled) {
          await it.return?.();
          break;
        }
        // A one-at-a-time reader waiting on an empty buffer can take the
        // output straight from the handler. Otherwise outputs are staged
        // within the room the core granted, and committed in batches.
        const reader = this.#readers.peek();
        const direct =
          reader !== undefined && reader.kind !== ReadKind.Wake && this.#outPos === this.#outLen && this.#credit === 0;
        if (!direct) {
          if (this.#credit === 0) {
            this.#commitStage();
            this.#credit = ops.outputRoom(this.#h);
          }
          if (this.#credit > 0) {
            this.#credit--;
            if (this.#stage === NO_BUFFER) this.#stage = [];
            this.#stage.push(r.value);
            if (reader !== undefined) this.#outputArrived();
            continue;
          }
        }
        const code = pushOne(this.#h, r.value, direct, ops.yieldNumber, ops.yieldValue);
        if (code === HANDOFF) {
          this.#readers.shift();
          (reader as Reader).resolve(reader?.kind === ReadKind.Recv ? r.value : { value: r.value, done: false });
          this.#syncKeepAlive();
        } else if (code === ACCEPTED) {
          this.#outPending = true;
          this.#outputArrived();
        } else if (code === PARKED) {
          // Paused at its yield until a reader makes room.
          this.#outPending = true;
          this.#serveReaders();
          await new Promise<void>((resolve) => (this.#pumpWaiter = resolve));
          if (this.#cancelled) {
            await it.return?.();
            break;
          }
        } else {
          await it.return?.();
          break;
        }
      }
    } catch (error) {
      this.#handlerThrew(error);
      return;
    }
    this.#commitStage();
    ops.handlerReturned(this.#h);
    reap();
    this.#afterHandler(() => new StreamClosedError(`${this.#describe()} has finished: its handler returned`));
  }

  #handlerThrew(error: unknown): void {
    if (this.#cancelled) {
      // Thrown while being cancelled: nobody is left to see it.
      this.#afterHandler(() => this.#closedError());
      return;
    }
    this.#failure = { error };
    this.#commitStage();
    ops.handlerFailed(this.#h);
    reap();
    this.#afterHandler(() => new StreamClosedError(`${this.#describe()} failed: its handler threw`, { cause: error }));
  }

  #afterHandler(senderError: () => Error): void {
    this.#inPending = this.#outPending = true;
    this.#rejectSenders(senderError);
    this.#inPos = this.#inLen = 0;
    this.#inBuf = NO_BUFFER;
    this.#idleOff();
    this.#detachSignal();
    this.#serveReaders();
    this.#handlerDone = true;
    this.#resolveFinished?.();
  }

  #detachSignal(): void {
    if (this.#onAbort !== undefined) {
      this.#signal?.removeEventListener('abort', this.#onAbort);
      this.#onAbort = undefined;
    }
  }

  // ----- output -----

  recv(): Promise<O> {
    return this[kRead](ReadKind.Recv) as Promise<O>;
  }

  [Symbol.asyncIterator](): AsyncIterator<O> {
    return new Outputs<O>(this);
  }

  [kRead](kind: ReadKind): Promise<unknown> {
    if (this.#outPos < this.#outLen && kind !== ReadKind.Wake) return Promise.resolve(this.#shiftOut(kind));
    try {
      const r = this.#poll(kind);
      if (r !== NOT_YET) return Promise.resolve(r);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      if (this.#readers === NO_QUEUE) this.#readers = new Fifo();
      this.#readers.push({ kind, resolve, reject });
      this.#syncKeepAlive();
    });
  }

  [kWaitOutput](): Promise<unknown> {
    return this[kRead](ReadKind.Wake);
  }

  [kDrain](out: O[]): boolean {
    const before = out.length;
    for (;;) {
      while (this.#outPos < this.#outLen) {
        out.push(this.#outBuf[this.#outPos] as O);
        this.#outBuf[this.#outPos++] = undefined;
      }
      const n = this.#takeOutput();
      if (n > 0) continue;
      if (n === EMPTY) return false;
      if (this.#failure === undefined) return true;
      // Outputs made before the failure come first: the caller delivers this
      // batch, and its next drain (the stream stays ended) throws.
      if (out.length > before) return false;
      throw this.#failure.error;
    }
  }

  #shiftOut(kind: ReadKind): unknown {
    const value = this.#outBuf[this.#outPos];
    this.#outBuf[this.#outPos++] = undefined;
    return kind === ReadKind.Recv ? value : { value, done: false };
  }

  /**
   * A reader waits and the handler just yielded. One-at-a-time readers (recv,
   * iteration) get it now; batch readers (run, feed, pipe links) get it when
   * the handler stops producing (it waits for input, is paused at a full
   * output, or finishes) or at the latest on the next turn of the event loop,
   * so that outputs cross the boundary in batches rather than one by one.
   */
  #outputArrived(): void {
    if (this.#readers.peek()?.kind !== ReadKind.Wake) {
      this.#serveReaders();
    } else if (!this.#wakeScheduled) {
      this.#wakeScheduled = true;
      setImmediate(() => {
        this.#wakeScheduled = false;
        this.#serveReaders();
      });
    }
  }

  /** Hands the staged outputs to the core (they fit: they are within the credit). */
  #commitStage(): void {
    this.#credit = 0;
    const n = this.#stage.length;
    if (n === 0) return;
    for (let start = 0; start < n; start += scratch.length) {
      pushRuns(this.#h, this.#stage, start, Math.min(scratch.length, n - start), ops.yieldNumbers, ops.yieldValues);
    }
    this.#stage.length = 0;
    this.#outPending = true;
  }

  #takeOutput(): number {
    this.#commitStage();
    if (!this.#outPending) return EMPTY;
    if (this.#outBuf === NO_BUFFER) this.#outBuf = [];
    const n = unpackRun(ops.takeOutput(this.#h, this.#capacity), this.#outBuf);
    this.#outPending = n !== EMPTY;
    if (this.#pumpWaiter !== null && ops.admitted(this.#h) > 0) {
      const resume = this.#pumpWaiter;
      this.#pumpWaiter = null;
      resume();
    }
    this.#outPos = 0;
    this.#outLen = n > 0 ? n : 0;
    return n;
  }

  /** The answer for a read now, or NOT_YET; throws what the read must reject with. */
  #poll(kind: ReadKind): unknown {
    if (this.#outPos >= this.#outLen) {
      const n = this.#takeOutput();
      if (n === EMPTY) return NOT_YET;
      if (n === ENDED) {
        if (kind === ReadKind.Wake) return true;
        if (this.#failure !== undefined) throw this.#failure.error;
        if (kind === ReadKind.Iter) return DONE;
        if (this.#cancelled) throw this.#closedError();
        throw new StreamClosedError(`${this.#describe()} has no more outputs`);
      }
    }
    return kind === ReadKind.Wake ? true : this.#shiftOut(kind);
  }

  #serveReaders(): void {
    while (this.#readers.length > 0) {
      const reader = this.#readers.peek() as Reader;
      let r: unknown;
      try {
        r = this.#poll(reader.kind);
      } catch (error) {
        this.#readers.shift();
        reader.reject(error);
        continue;
      }
      if (r === NOT_YET) break;
      this.#readers.shift();
      reader.resolve(r);
    }
    this.#syncKeepAlive();
  }

  // ----- cancel -----

  cancel(reason?: unknown): Promise<void> {
    if (!this.#cancelled && ops.cancel(this.#h) >= 0) {
      reap();
      this.#cancelled = true;
      this.#inPending = this.#outPending = true;
      this.#cancelReason = reason;
      this.#abort?.abort(reason);
      this.#inPos = this.#inLen = this.#outPos = this.#outLen = 0;
      this.#inBuf = this.#outBuf = this.#stage = NO_BUFFER;
      this.#credit = 0;
      this.#rejectSenders(() => this.#closedError());
      this.#idleOff();
      this.#detachSignal();
      this.#wakeInput();
      const resume = this.#pumpWaiter;
      this.#pumpWaiter = null;
      resume?.();
      this.#serveReaders();
    }
    return this[kFinished];
  }

  [kFailAtEnd](error: unknown): void {
    if (this.#failure === undefined && ops.phase(this.#h) < 2) this.#failure = { error };
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.cancel();
  }

  #describe(): string {
    return `Stream ${this.id} of "${this.#label}"`;
  }

  #closedError(): StreamClosedError {
    if (this.#failure !== undefined) {
      return new StreamClosedError(`${this.#describe()} failed: its handler threw`, { cause: this.#failure.error });
    }
    if (this.#cancelled) {
      const options = this.#cancelReason === undefined ? undefined : { cause: this.#cancelReason };
      return new StreamClosedError(`${this.#describe()} was cancelled`, options);
    }
    if (this.#inputReleased && !this.#handlerDone) {
      return new StreamClosedError(`${this.#describe()} no longer reads its input`);
    }
    return new StreamClosedError(`${this.#describe()} is closed: its input has ended`);
  }
}
