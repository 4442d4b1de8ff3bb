// Internal protocol between streams, `feed`/`run` and pipes. Symbol-keyed so
// it stays off the public surface. The symbols are registered ones
// (`Symbol.for`), like every protocol symbol of the library: copies of the
// module loaded in one process (Jest) share one native state per thread (see
// native.ts), so the objects of one copy may be piped to, or exported by,
// another.
import type { EventSource } from '../types';

export const kRead = Symbol.for('velo-stream.read');
export const kSendAll = Symbol.for('velo-stream.sendAll');
export const kDrain = Symbol.for('velo-stream.drain');
export const kWaitOutput = Symbol.for('velo-stream.waitOutput');
export const kSignal = Symbol.for('velo-stream.signal');
export const kInputError = Symbol.for('velo-stream.inputError');
export const kCancelled = Symbol.for('velo-stream.cancelled');

/** Lets the caller of `kSendAll` stop an async source that is waiting for its next event. */
export interface SendControl {
  /** Set while an async source is being read: calls its `return()` now. */
  stop?: () => void;
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

/** What `feed`, `run` and pipe links need of a stream, single-stage or piped. */
export interface Endpoints<I, O> {
  /** The stream's open signal, if any. */
  readonly [kSignal]: AbortSignal | undefined;
  /** Reads one output (or waits); see `ReadKind`. */
  [kRead](kind: ReadKind): Promise<unknown>;
  /** Sends every event with backpressure, then ends the input if `end`. Resolves false if the stream closed first. Rejects only with the source's own error. */
  [kSendAll](source: EventSource<I>, end: boolean, control?: SendControl): Promise<boolean>;
  /** Whether `cancel()` stopped the stream (its outputs are dropped, so a reader holding some stops too). */
  readonly [kCancelled]: boolean;
  /** The error a `send()` would be refused with now (the input is closed), or undefined. */
  [kInputError](): Error | undefined;
  /** Moves every output available now into `out`. True when no output will ever come again. Throws the stream's error once every output made before it was moved (never after moving some: it returns false then, and the next call throws). */
  [kDrain](out: O[]): boolean;
  /** Resolves when `kDrain` may have something new. */
  [kWaitOutput](): Promise<unknown>;
  cancel(reason?: unknown): Promise<void>;
  readonly state: string;
}
