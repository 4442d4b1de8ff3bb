// The stream-kind protocol: what every kind of stream implements so that
// every driver works on it.
//
// A kind of stream (today a single handler's `HandlerStream` and the stages of
// a `PipedStream`; next, task stages, worker-thread streams, Redis-backed
// sessions) implements `StreamKind` by extending `StreamBase` (drive.ts).
// The drivers then work on it unchanged: `run()` and `feed()` (drive.ts),
// the consumer's iterator and `recv()`, pipe links (pipe.ts), sessions
// (core/sessions.ts), the HTTP helpers (through `feed()`,
// iteration and `kReadNow`) and `duplex()`. The contract is written down in
// docs/design.md ("The stream-kind protocol").
//
// The symbols are registered ones (`Symbol.for`): copies of the module loaded
// in one process (Jest) share one native state per thread (see addon.ts), so
// the streams of one copy may be driven by another.
import type { EventSource, JournalCall, JournalStreamCall, Stream, StreamHandler } from '../types';

export const kRead = Symbol.for('velo-stream.read');
/** `[kReadTo](reader)`: `kRead`, answering `reader` (now or later) rather than a promise of its own (see `ReadTarget`). */
export const kReadTo = Symbol.for('velo-stream.readTo');
export const kSendAll = Symbol.for('velo-stream.sendAll');
export const kDrain = Symbol.for('velo-stream.drain');
export const kWaitOutput = Symbol.for('velo-stream.waitOutput');
export const kSignal = Symbol.for('velo-stream.signal');
export const kInputError = Symbol.for('velo-stream.inputError');
export const kFinished = Symbol.for('velo-stream.finished');
export const kTaken = Symbol.for('velo-stream.taken');
export const kTakenEnd = Symbol.for('velo-stream.takenEnd');
/** `[kCheckpoint](state)`: a handler's `ctx.checkpoint(state)`, passed to its stream's `SessionHooks`. */
export const kCheckpoint = Symbol.for('velo-stream.checkpoint');

/**
 * A handler's `ctx.signal` as a journaled call needs it: the signal (made on first read), and whether it is aborted,
 * told without making it (true once the handler is cancelled: its signal, made or not, is aborted then), so that
 * the journal needs no listener on it.
 */
export interface CallSignal {
  readonly signal: AbortSignal;
  readonly aborted: boolean;
}

/**
 * The durable side of a session (the Redis tier gives one to each session it opens): the snapshot its handler
 * starts from (`ctx.restored`), and where its checkpoints go, with how many events the handler had taken and how
 * many outputs it had yielded when it called `ctx.checkpoint`. Without hooks (in-process streams), `ctx.restored`
 * is undefined and a checkpoint is a no-op.
 */
export interface SessionHooks {
  readonly restored: unknown;
  checkpoint(state: unknown, taken: number, yielded: number): void;
  /** `ctx.wakeAt(time, payload, { key })`, checked (`time` a finite number, `key` a string or undefined). */
  wakeAt(time: number, payload: unknown, key: string | undefined): void;
  /** `ctx.cancelTimer(key)`, checked (`key` a string): whether a pending timer of that key was cancelled. */
  cancelTimer(key: string): boolean;
  /** `ctx.run(name, body)` on a durable session: the result recorded at its place, or the body's, recorded. */
  run?(name: string, body: (call: JournalCall) => unknown, signal: CallSignal): Promise<unknown>;
  /** `ctx.stream(name, factory)` on a durable session: the recorded chunks, then the factory's, recorded. */
  stream?(
    name: string,
    factory: (call: JournalStreamCall) => AsyncIterable<unknown> | Iterable<unknown>,
    signal: CallSignal,
  ): AsyncIterable<unknown>;
  /** `ctx.entry`: the input the handler took last, as the log has it (undefined: none yet). */
  readonly entry: { readonly id: string; readonly time: number } | undefined;
  /**
   * The stream uses these hooks (a single handler's stream): called once, when it is made, with what tells the
   * outputs its handler has yielded so far.
   */
  attach?(yielded: () => number): void;
  /**
   * The handler takes its next event (`yielded`: outputs it had yielded by then): an event to give it first
   * (`{ value }`), `'end'` (its input ends here, in front of any event still buffered: a cap decided in the order
   * the handler takes its events), or undefined.
   */
  next?(yielded: number): { value: unknown } | 'end' | undefined;
  /** The handler waits for its next event with none to take: it has handled every event it took. */
  waiting?(): void;
  /** The handler the session's stream runs instead of the function's (a `redisWorker`'s `debounce` filters its input). */
  wrapHandler?<I, O>(handler: StreamHandler<I, O>): StreamHandler<I, O>;
}
/**
 * `[kSendNow](event)`: `send(event)` for a caller that sends many events one
 * at a time (a Redis partition's reader): `true` when the event went in
 * without waiting (where `send()` would resolve at once), else `send()`'s
 * promise. Spares the caller an await, and so a microtask, per event.
 */
export const kSendNow = Symbol.for('velo-stream.sendNow');
/** Adds attributes to the stream's span, if it is traced (tracing.ts): a session's key. */
export const kTraceAttributes = Symbol.for('velo-stream.traceAttributes');
/**
 * `[kReadNow]()`: an item available right now, taken synchronously, or
 * `NOT_NOW` (nothing yet; an end or an error is left to the next
 * asynchronous read, which reports it). A stream, and what `feed()` returns,
 * answer with an output; a source of events may answer with an event
 * (`ndjsonEvents` does, with the rest of a chunk's lines). A reader that has
 * just received one item takes those ready with it: `kSendAll` sends them as
 * one slice, the HTTP writers write them together. It is the same reading as
 * the iteration's, so any number of readers share it without loss.
 */
export const kReadNow = Symbol.for('velo-stream.readNow');
/**
 * `[kSettle]()`: undefined when the handler is not running right now
 * (waiting for input, paused at a full output, or finished); else a promise
 * that settles when it stops running (waits for input or finishes) or on the
 * next turn of the event loop, whichever comes first. A writer that has
 * taken the outputs ready (`kReadNow`) waits on it once, so that a run of
 * outputs goes out together without holding any output longer than a turn.
 */
export const kSettle = Symbol.for('velo-stream.settle');
/**
 * `[kFuse]()`: the stream's outputs have one reader from now on, which pulls
 * them one at a time as it goes (`feed()`'s iteration, a pipe's next stage,
 * an HTTP writer over `feed()`). A kind that can (a handler generator) stops
 * running its handler ahead of that reader: each read runs the handler to
 * its next output, handed to the read, with nothing buffered or pumped
 * between them (pull fusion; docs/performance.md). Any other read (a batch
 * reader) makes it run ahead again. Kinds that cannot leave it out.
 */
export const kFuse = Symbol.for('velo-stream.fuse');
/**
 * `[kOwnedReads]()`: the stream's reads are its owner's from now on (a
 * sessions object's forwarder moving its outputs into the merged output),
 * not a user's. While the stream waits for a limiter's permit they do not
 * hold it: the owner does, for as long as the owner is referenced, and a
 * dropped owner gives up its streams' places in line with them. (A user's
 * read holds a stream waiting for its permit, see `HandlerStream`; held by
 * the owner's read, the stream would hold the owner, and through it the
 * sessions holding the permits it waits for.) Optional.
 */
export const kOwnedReads = Symbol.for('velo-stream.ownedReads');
/**
 * `source[kRefusesInput]`: true on a source whose error refuses the rest of
 * its input (`ndjsonEvents` at a malformed or oversized line) rather than
 * fails its reader. `feed()` and `run()` then end the stream's input there,
 * as at the source's end, and report the error after the outputs (rather
 * than cancel the stream and drop the outputs not read yet), so that what
 * was made of the events before it is delivered whatever the reader's speed.
 */
export const kRefusesInput = Symbol.for('velo-stream.refusesInput');
/**
 * `source[kLeftCut]`: on a source left while an item of it was arriving
 * (`ndjsonEvents` left by the stream's idle end, or `end()`, with part of a
 * line in), the error of that loss; else undefined. `feed()` and `run()`
 * report it after the outputs, as a refusal: never a success over a cut input.
 */
export const kLeftCut = Symbol.for('velo-stream.leftCut');
/**
 * `source[kUnreadWatch](feed)`: told by `feed()` that `feed` is to read it.
 * A source that can tell its events will never come (`ndjsonEvents`: the
 * client left) cancels `feed` then if nothing has read it yet, so that a
 * stream waiting for its reader (an HTTP writer not called yet) frees its
 * slot. Optional.
 */
export const kUnreadWatch = Symbol.for('velo-stream.unreadWatch');
/**
 * `stream[kStalled]()`: the `SourceStalledError` of a stream whose idle
 * deadline passed while it waited on a source sent into it (`feed()`,
 * `run()`), else undefined. `feed()` and `run()` report it after the
 * outputs: a stalled source never ends like an exhausted one. Optional (a
 * stream of another copy of this module may not know it).
 */
export const kStalled = Symbol.for('velo-stream.stalled');
/**
 * `stream[kFedBy]()`: a writer outside the stream (a `duplex()`'s writable side) feeds it from a source of its
 * own until it ends the input: while it has not, the stream's idle end is that source's stall, as for `feed()`
 * (`SourceStalledError`). Returns the call that says the writer is done (ended or destroyed).
 * Optional (a stream of another copy of this module may not know it).
 */
export const kFedBy = Symbol.for('velo-stream.fedBy');
/**
 * `outputs[kCancelled]()`: on a stream, or what `feed()` returns, whose reads
 * have ended because it was cancelled (by `cancel()`, the feed's, or its
 * signal), the error a send would be refused with (a `StreamClosedError`, its
 * `cause` the reason); else undefined. An HTTP writer whose reads ended tells
 * a cut answer from a whole one by it.
 */
export const kCancelled = Symbol.for('velo-stream.cancelled');
/** `kReadNow`'s "nothing available right now". */
export const NOT_NOW: unique symbol = Symbol.for('velo-stream.notNow');

/**
 * The end of an iteration, made at each use. A literal `{ value, done }` (in that order) has V8's iterator-result
 * map, and resolving a promise with an object of that map skips the look-up of its `then` (about 160 instructions
 * for any other object, a frozen shared one too). Made fresh, one reader's change to it reaches no other.
 */
export function doneResult(): IteratorResult<never, undefined> {
  return { value: undefined, done: true };
}

/** Lets the caller of `kSendAll` stop an async source that is waiting for its next event. */
export interface SendControl {
  /** Set while an async source is being read: calls its `return()` now. */
  stop?: () => void;
}

/**
 * Who a read answers (`kReadTo`): a reader with a promise of its own (feed's
 * iterator) is answered through it, sparing the promise `kRead` would make
 * and the reaction that would pass its answer on: one hop per output fewer.
 */
export interface ReadTarget {
  readonly kind: ReadKind;
  resolve(value: unknown): void;
  reject(reason: unknown): void;
}

/** How a read wants its answer. */
export const enum ReadKind {
  /** `recv()`: the value; rejects `StreamClosedError` at the end. */
  Recv,
  /** Iteration: `{ value, done }`. */
  Iter,
  /** Only "something happened" (data or the end), nothing consumed. */
  Wake,
}

/**
 * One kind of stream, as the drivers see it. Besides the public `Stream`:
 *
 * - Outputs are read one at a time (`kRead`) or in batches (`kDrain` until
 *   it returns true, waiting on `kWaitOutput` between calls). A batch reader
 *   is woken once per batch, not per output.
 * - Events are sent in bulk with backpressure (`kSendAll`).
 * - Endings are observable: `kFinished` settles once the stream's handlers
 *   have returned (after a cancel too), and `kInputError` says whether a
 *   send would be refused now.
 */
export interface StreamKind<I, O> extends Stream<I, O> {
  /** The stream's open signal, if any. */
  readonly [kSignal]: AbortSignal | undefined;
  /** Reads one output (or waits); see `ReadKind`. */
  [kRead](kind: ReadKind): Promise<unknown>;
  /** `kRead`, answering `reader` instead (see `ReadTarget`). */
  [kReadTo](reader: ReadTarget): void;
  /** Sends every event with backpressure, then ends the input if `end`. Resolves false if the stream closed first. Rejects only with the source's own error. */
  [kSendAll](source: EventSource<I>, end: boolean, control?: SendControl): Promise<boolean>;
  /** `send()`, answering `true` instead of a resolved promise when the event went in without waiting (see `kSendNow`). */
  [kSendNow](event: I): true | Promise<void>;
  /** The error a `send()` would be refused with now (the input is closed), or undefined. */
  [kInputError](): Error | undefined;
  /**
   * Moves every output available now into `out`. True when no output will
   * ever come again. Throws the stream's error once every output made before
   * it was moved (never after moving some: it returns false then, and the
   * next call throws).
   */
  [kDrain](out: O[]): boolean;
  /** Resolves when `kDrain` may have something new. */
  [kWaitOutput](): Promise<unknown>;
  /** An output available now, or `NOT_NOW` (see `kReadNow`). */
  [kReadNow](): O | typeof NOT_NOW;
  /** Undefined, or settles when the running handler stops or on the next turn (see `kSettle`). */
  [kSettle](): Promise<void> | undefined;
  /** Settles when the stream's handlers have finished (returned, thrown, or stopped by a cancel). Never rejects. */
  readonly [kFinished]: Promise<void>;
  /**
   * How many of the accepted events its handler has taken (a body: taken in
   * to run; a pipe: its first stage). Once the handler has finished, the
   * rest were never seen by it: Redis sessions give them to the key's next
   * session.
   */
  [kTaken](): number;
  /** Whether its handler was told that its input ended (a handler that returned without asking was not). */
  [kTakenEnd](): boolean;
  /** Adds attributes to the stream's span (a pipe: its own), if it is traced; else nothing. */
  [kTraceAttributes](attributes: Record<string, string>): void;
  /** One reader pulls the outputs from now on (see `kFuse`); optional. */
  [kFuse]?(): void;
  /** The stream's reads are its owner's from now on (see `kOwnedReads`); optional. */
  [kOwnedReads]?(): void;
}

/**
 * `fn[kOpen](signal, idle, hooks)`: opens a stream; `idle` false turns the idle clock off (inner pipe stages, and the
 * Redis tier's sessions, whose ends come from the log). Registered: the Redis tier opens sessions by it.
 */
export const kOpen = Symbol.for('velo-stream.open');
export type Openable<I, O> = {
  [kOpen](signal: AbortSignal | undefined, idle: boolean, hooks?: SessionHooks): StreamKind<I, O>;
};
/**
 * `fn[kAsksInputs]`: its streams ask for each input they take (`SessionHooks.next`): a single handler's, not a
 * pipe's or a task stage's (the Redis tier's step limiters and debounce need it).
 */
export const kAsksInputs = Symbol.for('velo-stream.asksInputs');
