// The drivers of the stream-kind protocol (protocol.ts): the loops that move
// events into any kind of stream and outputs out of it. Each is written once
// here, for every kind.
import type { Duplex } from 'node:stream';
import { describe, feedInProgressError, invalidType } from '../errors';
import { toDuplex } from './duplex';
import { abortsWith, closeUnread, madeForSignal } from './source';
import type { EventSource, FeedOutputs, SourceFactory, StreamMetrics, StreamState } from '../types';
import {
  doneResult,
  ReadKind,
  type SendControl,
  type StreamKind,
  kCancelled,
  kDrain,
  kFinished,
  kFuse,
  kInputError,
  kLeftCut,
  kRead,
  kReadNow,
  kReadTo,
  kRefusesInput,
  type ReadTarget,
  kSendAll,
  kSendNow,
  kSettle,
  kSignal,
  kStalled,
  kTaken,
  kTakenEnd,
  kTraceAttributes,
  kUnreadWatch,
  kWaitOutput,
  NOT_NOW,
} from './protocol';

/**
 * The streams a feed is sending its source to, until that source is done. A second feed meanwhile is refused: the
 * first source's end ends the input, so the second's events after it would be refused one by one, and a generator
 * handler pulling from the first source would never see the second's. (A set beside the streams, not a field of
 * each: a field is initialized in every stream's constructor, fed or not, and opening a stream is the hotter path.)
 */
const feeding = new WeakSet<object>();
const isFeeding = (stream: object): boolean => feeding.has(stream);
const setFeeding = (stream: object, on: boolean): void => void (on ? feeding.add(stream) : feeding.delete(stream));

/**
 * What every kind of stream has in common, written once in terms of the
 * protocol: `recv`, iteration, `feed`, `duplex` and `await using`. A new kind
 * extends it and implements the protocol.
 */
export abstract class StreamBase<I, O> implements StreamKind<I, O> {
  abstract readonly id: string;
  abstract readonly state: StreamState;
  abstract readonly metrics: StreamMetrics;
  abstract send(event: I): Promise<void>;
  abstract end(): void;
  abstract cancel(reason?: unknown): Promise<void>;
  abstract readonly [kSignal]: AbortSignal | undefined;
  abstract [kRead](kind: ReadKind): Promise<unknown>;
  abstract [kReadTo](reader: ReadTarget): void;
  abstract [kSendAll](source: EventSource<I>, end: boolean, control?: SendControl): Promise<boolean>;
  abstract [kInputError](): Error | undefined;
  abstract [kDrain](out: O[]): boolean;
  abstract [kWaitOutput](): Promise<unknown>;
  abstract [kReadNow](): O | typeof NOT_NOW;
  abstract [kSettle](): Promise<void> | undefined;
  abstract readonly [kFinished]: Promise<void>;
  abstract [kTaken](): number;
  abstract [kTakenEnd](): boolean;
  abstract [kTraceAttributes](attributes: Record<string, string>): void;

  /** `send()` as `kSendNow` answers it; a kind that can tell a send that did not wait answers `true` for it. */
  [kSendNow](event: I): true | Promise<void> {
    return this.send(event);
  }

  /**
   * The next output.
   * @throws {StreamClosedError} (rejects) when no output is left, or the stream was cancelled.
   * @throws the handler's own error (rejects), once the outputs it yielded before are read.
   */
  recv(): Promise<O> {
    return this[kRead](ReadKind.Recv) as Promise<O>;
  }

  /** Iterates the outputs; leaving the loop early (`break`, a throw) cancels the stream. */
  [Symbol.asyncIterator](): AsyncIterator<O> {
    return new Outputs<O>(this);
  }

  /**
   * Sends every event of `events` with backpressure, then ends the input,
   * yielding outputs as they come. A source error or an abort cancels the
   * stream and the iteration rejects with it; a refusal from a
   * `kRefusesInput` source (`ndjsonEvents`) ends the input instead, and the
   * iteration rejects with it after the last output. A source that stalls
   * (no event for `idleTimeout` while the stream waits on it) is closed, and
   * the iteration rejects with `SourceStalledError` after the outputs. A
   * function (`SourceFactory`) is called at once with a signal of the feed's,
   * aborted when the source is closed before its end.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `events` is not an iterable or async iterable, or a function that returns one.
   */
  feed(events: EventSource<I> | SourceFactory<I>): FeedOutputs<O> {
    return feedStream(this, events);
  }

  /** The stream as an object-mode Node `Duplex` (for `stream.pipeline`), backpressure and errors both ways. */
  duplex(): Duplex {
    return toDuplex(this);
  }

  /** `await using stream = fn.open()`: cancels the stream when the scope exits. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.cancel();
  }

  /** The error of the cancel that ended the reads, if one did (protocol.ts). */
  [kCancelled](): Error | undefined {
    return this.state === 'cancelled' ? this[kInputError]() : undefined;
  }
}

/** The consumer's iterator over a stream's outputs. Leaving it early (`break`) cancels the stream. */
class Outputs<O> implements AsyncIterableIterator<O> {
  readonly #stream: StreamKind<never, O>;
  constructor(stream: StreamKind<never, O>) {
    this.#stream = stream;
  }
  next(): Promise<IteratorResult<O>> {
    return this.#stream[kRead](ReadKind.Iter) as Promise<IteratorResult<O>>;
  }
  async return(value?: unknown): Promise<IteratorResult<O>> {
    await this.#stream.cancel();
    return { value: value as O, done: true };
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
 * The one drain loop of batch readers: moves the stream's outputs out batch
 * by batch, waiting for more in between, until none will ever come.
 * `deliver` gets each batch (the same array, refilled once it returns or its
 * promise settles); a promise it returns is awaited (backpressure), and one
 * that resolves false stops the loop. Without `deliver`, outputs accumulate
 * in `batch` (`run()` writes this case out itself). Resolves true when
 * the stream has no more outputs, false when `deliver` stopped it; throws the
 * stream's error after delivering the outputs made before it.
 */
export async function drainOutputs<O>(
  stream: StreamKind<never, O>,
  deliver?: (batch: O[]) => void | Promise<boolean | void>,
  batch: O[] = [],
): Promise<boolean> {
  for (;;) {
    if (deliver !== undefined) batch.length = 0;
    const finished = stream[kDrain](batch);
    if (deliver !== undefined && batch.length > 0) {
      const delivered = deliver(batch);
      if (delivered !== undefined && (await delivered) === false) return false;
    }
    if (finished) return true;
    await stream[kWaitOutput]();
  }
}

/**
 * Whether `value` can be a source of events. Strings are refused: iterating
 * one sends characters, never what was meant. A value that cannot be looked
 * at (a revoked Proxy) is refused with the same coded error. Returns the
 * error a `Symbol.asyncIterator` or `Symbol.iterator` getter threw, if one
 * did: that is the source failing, not a bad argument, and it ends the
 * stream as any other source error does (the caller decides how).
 */
export function assertSource(value: unknown, name = 'events'): { error: unknown } | undefined {
  // (A function with an iterator method is a source too, as for `for await`.)
  let ok = value !== null && (typeof value === 'object' || typeof value === 'function');
  let thrown: { error: unknown } | undefined;
  if (ok) {
    try {
      // A String object iterates its characters, as a string would. (This throws for a revoked Proxy.)
      ok = Object.prototype.toString.call(value) !== '[object String]';
    } catch {
      ok = false;
    }
  }
  if (ok) {
    try {
      ok =
        typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function' ||
        typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
    } catch (error) {
      thrown = { error };
    }
  }
  if (!ok && thrown === undefined) {
    throw invalidType(`The "${name}" argument must be an iterable or async iterable of events. Received ${describe(value)}`);
  }
  return thrown;
}

/**
 * Starts sending `source` into `stream`. `failure()` tells whether the source
 * failed (a source error cancels the stream with that error, a refusal of a
 * `kRefusesInput` source ends its input); `stop()`, once
 * the outputs are finished, closes a source still waiting for its next event
 * (its `return()`), since the stream will never take another.
 */
function startSending<I, O>(stream: StreamKind<I, O>, source: EventSource<I>): Sending<I, O> {
  return new Sending(stream, source);
}

/** One source being sent into its stream (`startSending`): an object of shared methods, where closures cost four functions per feed. */
class Sending<I, O> {
  readonly #control: SendControl = {};
  readonly #stream: StreamKind<I, O>;
  readonly #source: EventSource<I>;
  #failure: { error: unknown } | undefined;

  constructor(stream: StreamKind<I, O>, source: EventSource<I>) {
    this.#stream = stream;
    this.#source = source;
    setFeeding(stream, true);
    void this.#send(stream, source);
  }

  async #send(stream: StreamKind<I, O>, source: EventSource<I>): Promise<void> {
    try {
      await stream[kSendAll](source, true, this.#control);
      setFeeding(stream, false);
    } catch (error) {
      setFeeding(stream, false);
      this.#failure = { error };
      // A refusal of the rest of the input ends it: the error follows the outputs; any other failure cancels.
      if ((source as { [kRefusesInput]?: unknown })[kRefusesInput] === true) stream.end();
      else void stream.cancel(error);
    }
  }

  /**
   * The source's failure, the loss of an item it was left in the middle of (`kLeftCut`), or its stall: the idle
   * deadline passed while the stream waited on it (`kStalled`).
   */
  failure(): { error: unknown } | undefined {
    if (this.#failure !== undefined) return this.#failure;
    const cut = (this.#source as { [kLeftCut]?: unknown })[kLeftCut];
    if (cut !== undefined) return { error: cut };
    const stalled = (this.#stream as { [kStalled]?: () => Error | undefined })[kStalled]?.();
    return stalled === undefined ? undefined : { error: stalled };
  }

  stop(): void {
    this.#control.stop?.();
  }
}

/** After the last output: the source's error, or the abort reason, if either ended the stream. */
function throwIfStopped<I, O>(stream: StreamKind<I, O>, sourceFailure: { error: unknown } | undefined): void {
  if (sourceFailure !== undefined) throw sourceFailure.error;
  const signal = stream[kSignal];
  if (stream.state === 'cancelled' && signal?.aborted) throw signal.reason;
}

/**
 * `stream.feed(events)`, for every kind. A stream whose input is already
 * closed refuses the feed as it would refuse a send: the iteration rejects
 * with that error (or the abort reason, if its signal cancelled it) and the
 * source is not read.
 */
function feedStream<I, O>(stream: StreamKind<I, O>, events: EventSource<I> | SourceFactory<I>): FeedOutputs<O> {
  if (isFactory(events)) return feedMade(stream, events);
  let thrown: { error: unknown } | undefined;
  try {
    thrown = assertSource(events);
  } catch (error) {
    refuseArgument(stream, error);
  }
  const refused = stream[kInputError]();
  // (A refused feed's iteration has ended already: its cancel is the stream's.)
  const cancel = (reason?: unknown): Promise<void> => stream.cancel(reason);
  if (refused !== undefined) {
    // Never to be read: closed now, as one the stream stops reading is.
    void closeUnread(events);
    return Object.assign(refusedFeed<O>(refusal(stream, refused)), { cancel });
  }
  if (thrown !== undefined) {
    // The source failed as it was looked at: the stream is cancelled with its error and the iteration rejects with
    // it, as for a source whose next() throws.
    void stream.cancel(thrown.error);
    return Object.assign(refusedFeed<O>(thrown.error), { cancel });
  }
  return new FeedIterator(stream, events);
}

/**
 * `feed()` refuses its argument: the stream is cancelled with the error, which is thrown. Its input was given to
 * the feed, and in `fn.open().feed(x)` nothing else holds the stream: left open, it would hold its function's slot.
 */
function refuseArgument<I, O>(stream: StreamKind<I, O>, error: unknown): never {
  void stream.cancel(error);
  throw error;
}

/** A function with no iterator method of its own: a `SourceFactory` (a function with one is a source, as for `for await`). */
function isFactory<I>(events: EventSource<I> | SourceFactory<I>): events is SourceFactory<I> {
  if (typeof events !== 'function') return false;
  try {
    const f = events as unknown as Partial<Iterable<I> & AsyncIterable<I>>;
    return typeof f[Symbol.asyncIterator] !== 'function' && typeof f[Symbol.iterator] !== 'function';
  } catch {
    // (A revoked Proxy: `assertSource` refuses it with its coded error.)
    return false;
  }
}

/**
 * `feed(make)`: the source made by `make(signal)`, with a signal of the feed's that aborts when the source is closed
 * before its end (`abortsWith`). A stream whose input is closed refuses the feed without calling `make`; a `make`
 * that throws fails the feed as a source that fails when looked at; one that returns no source is a bad argument.
 */
function feedMade<I, O>(stream: StreamKind<I, O>, make: SourceFactory<I>): FeedOutputs<O> {
  const refused = stream[kInputError]();
  if (refused !== undefined) {
    const cancel = (reason?: unknown): Promise<void> => stream.cancel(reason);
    return Object.assign(refusedFeed<O>(refusal(stream, refused)), { cancel });
  }
  const controller = new AbortController();
  let source: EventSource<I>;
  try {
    source = make(controller.signal);
  } catch (error) {
    void stream.cancel(error);
    const cancel = (reason?: unknown): Promise<void> => stream.cancel(reason);
    return Object.assign(refusedFeed<O>(error), { cancel });
  }
  if (!isSourceValue(source)) {
    const error = invalidType(
      `The function passed to feed() must return an iterable or async iterable of events (not a promise: make it a plain function). Received ${describe(source)}`,
    );
    controller.abort(error);
    refuseArgument(stream, error);
  }
  abortsWith(source, controller);
  return feedStream(stream, source);
}

/** Whether `feed()` can go on with `value` as its source (`assertSource` then judges it whole). */
function isSourceValue(value: unknown): value is EventSource<unknown> {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
  try {
    assertSource(value);
    return true;
  } catch {
    return false;
  }
}

/** What a feed refused by a closed input rejects with: a stream stopped by its signal refuses with the signal's reason, as run() and feed() report an abort. */
function refusal<I, O>(stream: StreamKind<I, O>, inputError: Error): unknown {
  const signal = stream[kSignal];
  return stream.state === 'cancelled' && signal?.aborted ? signal.reason : inputError;
}

// eslint-disable-next-line require-yield, @typescript-eslint/require-await
async function* refusedFeed<O>(error: unknown): AsyncGenerator<O, void> {
  throw error;
}

/** The resolvers of a feed iteration's pending read. */
interface ReadSettle<O> {
  resolve(r: IteratorResult<O> | Promise<never>): void;
  reject(reason: unknown): void;
}

/** Where a feed's iteration is: not started (the source is not read yet), reading outputs, or finished. */
const enum FeedPhase {
  Idle,
  Reading,
  Finished,
}

/** A feed iteration's pending read answered (`FeedReader`). */
const kReadAnswered = Symbol('velo.feedReadAnswered');
const kReadFailed = Symbol('velo.feedReadFailed');

/**
 * A feed iteration as the stream's reader (`kReadTo`), one read at a time:
 * one object of shared methods, where closures cost two functions per feed
 * (a server opens one feed per request).
 */
class FeedReader implements ReadTarget {
  readonly kind = ReadKind.Iter;
  readonly #it: FeedIterator<unknown, unknown>;
  constructor(it: FeedIterator<unknown, unknown>) {
    this.#it = it;
  }
  resolve(r: unknown): void {
    this.#it[kReadAnswered](r as IteratorResult<unknown>);
  }
  reject(error: unknown): void {
    this.#it[kReadFailed](error);
  }
}

/**
 * `feed`: outputs one by one as they come, while the source is sent. Written
 * as an iterator rather than an async generator over the stream's reads:
 * each output then reaches the consumer through one reaction to the read,
 * where a generator resumes, yields and settles its own promise (callgrind,
 * `bench/instructions.cjs feed`: ~1,250 instructions per output). It keeps
 * an async generator's rules:
 * calls made while one waits run after it, `return()` before the first
 * `next()` reads nothing (it cancels the stream and closes the source, as
 * leaving later does), and once finished every call answers done.
 */
class FeedIterator<I, O> implements AsyncIterableIterator<O>, FeedOutputs<O> {
  readonly #stream: StreamKind<I, O>;
  readonly #source: EventSource<I>;
  /** `cancel()` was called: the outputs not yet read are dropped. */
  #cancelled = false;
  /** Refused because another feed reads the stream (`ERR_INVALID_STATE`): its `cancel()` is not the stream's. */
  #notTheStreams = false;
  #phase = FeedPhase.Idle;
  #sending: Sending<I, O> | undefined;
  /** The last call's answer, while it may still wait: `return()` and `throw()` run after it. */
  #last: Promise<unknown> | undefined;

  constructor(stream: StreamKind<I, O>, source: EventSource<I>) {
    this.#stream = stream;
    this.#source = source;
    (source as { [kUnreadWatch]?(feed: FeedIterator<I, O>): void })[kUnreadWatch]?.(this);
  }

  cancel(reason?: unknown): Promise<void> {
    // A feed refused, or not started, while another feed reads the stream is not the stream's: its cancel ends it
    // alone, and leaves its source to its caller, as the refusal does.
    if (this.#notTheStreams || (this.#phase === FeedPhase.Idle && isFeeding(this.#stream))) {
      // (A source this feed made for its signal is nobody else's: closed.)
      if (this.#phase === FeedPhase.Idle && madeForSignal(this.#source)) void this.#closeUnread();
      this.#phase = FeedPhase.Finished;
      return Promise.resolve();
    }
    // Ends the iteration even when the stream itself has already finished
    // and only this feed still holds outputs.
    this.#cancelled = true;
    // (Not read yet: it never will be. An HTTP writer whose client left before it started cancels here.)
    if (this.#phase === FeedPhase.Idle) void this.#closeUnread();
    return this.#stream.cancel(reason);
  }

  /** The outputs ready along with one just read (protocol.ts): a cancel drops them, as it drops the iteration's. */
  [kReadNow](): O | typeof NOT_NOW {
    return this.#cancelled ? NOT_NOW : this.#stream[kReadNow]();
  }

  [kSettle](): Promise<void> | undefined {
    return this.#stream[kSettle]();
  }

  /** The error of the cancel that ended this iteration (the stream's, or this feed's, which drops the outputs left), if one did. */
  [kCancelled](): Error | undefined {
    const stream = this.#stream;
    return this.#cancelled || stream.state === 'cancelled' ? stream[kInputError]() : undefined;
  }

  next(): Promise<IteratorResult<O>> {
    if (this.#phase === FeedPhase.Finished) return Promise.resolve(doneResult());
    if (this.#phase === FeedPhase.Idle) {
      // The input may have closed since feed() was called (an end() before
      // the iteration started): refuse now as feed() would have then,
      // reading nothing from the source.
      const refused = this.#stream[kInputError]();
      if (refused !== undefined) {
        this.#phase = FeedPhase.Finished;
        void this.#closeUnread();
        return Promise.reject(refusal(this.#stream, refused));
      }
      if (isFeeding(this.#stream)) {
        // (The stream goes on with the first feed: this source is the caller's still, to merge or feed later,
        // unless this feed made it, for a signal of its own: then nobody else can close it.)
        this.#phase = FeedPhase.Finished;
        this.#notTheStreams = true;
        if (madeForSignal(this.#source)) void this.#closeUnread();
        return Promise.reject(feedInProgressError());
      }
      this.#phase = FeedPhase.Reading;
      this.#sending = startSending(this.#stream, this.#source);
      // This iteration is the outputs' one reader, and it pulls: the handler runs as it reads (pull fusion).
      this.#stream[kFuse]?.();
    }
    // Read as iteration reads: one output at a time, as the consumer asks.
    let read: Promise<IteratorResult<O>>;
    if (this.#settleRead === null) {
      // The read answers this iteration's own promise (no promise of the read's, no reaction passing it on).
      read = new Promise((resolve, reject) => (this.#settleRead = { resolve, reject }));
      this.#stream[kReadTo]((this.#reader ??= new FeedReader(this as FeedIterator<unknown, unknown>)));
    } else {
      // (A second next() while one waits, which for-await never does: the reader is in use.)
      read = (this.#stream[kRead](ReadKind.Iter) as Promise<IteratorResult<O>>).then(
        (r) => this.#onRead(r),
        (error: unknown) => this.#onError(error),
      );
    }
    this.#last = read;
    return read;
  }

  /** The pending read's promise, while `#reader` is in the stream's queue or being answered. */
  #settleRead: ReadSettle<O> | null = null;

  /** This iteration as the stream's reader (`kReadTo`), made at the first read. */
  #reader: FeedReader | null = null;

  /** The pending read is answered (`FeedReader`). */
  [kReadAnswered](r: IteratorResult<O>): void {
    const settle = this.#settleRead as ReadSettle<O>;
    this.#settleRead = null;
    let answer: IteratorResult<O>;
    try {
      answer = this.#onRead(r);
    } catch (error) {
      settle.reject(error);
      return;
    }
    settle.resolve(answer);
  }

  /** The pending read failed with the stream's error (`FeedReader`). */
  [kReadFailed](error: unknown): void {
    const settle = this.#settleRead as ReadSettle<O>;
    this.#settleRead = null;
    settle.resolve(this.#onError(error));
  }

  #onRead(r: IteratorResult<O>): IteratorResult<O> {
    if (this.#phase === FeedPhase.Finished) return doneResult();
    // A cancel drops the outputs not yet read.
    if (!r.done && !this.#cancelled) return r;
    this.#phase = FeedPhase.Finished;
    const sending = this.#sending as Sending<I, O>;
    sending.stop();
    throwIfStopped(this.#stream, sending.failure());
    return doneResult();
  }

  /** The stream's own error: it (and so the source) must stop before the iteration rejects with it. */
  async #onError(error: unknown): Promise<never> {
    await this.#leave();
    throw error;
  }

  /** Left early (`break`, a throw, the stream's error): the stream and the source stop. */
  async #leave(): Promise<void> {
    if (this.#phase === FeedPhase.Finished) return;
    const started = this.#phase === FeedPhase.Reading;
    // (Not started while another feed reads the stream: not the stream's, it ends alone, as its `cancel()` does.)
    const another = !started && isFeeding(this.#stream);
    this.#phase = FeedPhase.Finished;
    if (another) {
      if (madeForSignal(this.#source)) void this.#closeUnread();
      return;
    }
    await this.#stream.cancel();
    if (started) this.#sending?.stop();
    else void this.#closeUnread();
  }

  /** The source will never be read (this iteration was refused, cancelled or left before its first read): closed, once. */
  #closeUnread(): Promise<void> {
    return (this.#unreadClosed ??= closeUnread(this.#source));
  }

  #unreadClosed: Promise<void> | undefined;

  /** After the call still waiting, if any (as an async generator queues its calls). */
  #after<T>(then: () => Promise<T>): Promise<T> {
    const last = this.#last;
    const answer = last === undefined ? then() : last.then(then, then);
    this.#last = answer;
    return answer;
  }

  return(value?: unknown): Promise<IteratorResult<O>> {
    return this.#after(async () => {
      await this.#leave();
      return { value: value as O, done: true };
    });
  }

  throw(error?: unknown): Promise<IteratorResult<O>> {
    return this.#after(async () => {
      await this.#leave();
      throw error;
    });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** `run`: every output, collected in batches straight into the result. */
export async function collectOutputs<I, O>(stream: StreamKind<I, O>, source: EventSource<I>): Promise<O[]> {
  const sending = startSending(stream, source);
  const out: O[] = [];
  try {
    // drainOutputs' loop, without a `deliver`: written out here because the
    // extra async call costs ~2 % of S1's instructions (callgrind, `run`).
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
