// What the caller's thread (pool.ts, caller.ts) and a worker thread
// (thread.ts) agree on.

import type { TraceParent } from '../tracing';
/** The lanes of a stream's pair (crates/velo-node/src/cross.rs). */
export const INPUT = 0;
export const OUTPUT = 1;
/** `crossRelease` sides. */
export const CALLER_SIDE = 0;
export const WORKER_SIDE = 1;
/** Batches a lane holds: one being read while the next is written (with one, both threads idled half the time); the sender may hold one more back. */
export const LANE_BATCHES = 2;
/** Most events in one batch (at most the stream's `buffer`). */
export const MAX_BATCH = 1024;

/** `workerData` of a worker thread. */
export interface ThreadData {
  /** Absolute path of the module that exports the handler. */
  module: string;
  exportName: string;
  /** The thread's wake inbox. */
  inbox: number;
  /** Outputs' large ArrayBuffers are transferred, not copied (`WorkerFnConfig.transfer`). */
  transfer: boolean;
}

/** Posted once per stream placed on the thread. */
export interface OpenMessage {
  type: 'open';
  pair: number;
  id: string;
  maxBatch: number;
  /** Shared with the caller: `[PARKED_AT]` and `[TAKEN_END]` (see below); its buffer also holds `takenView`'s count. */
  state: Int32Array;
  /** The caller's stream span, when traced: the handler's spans on the thread are its children. */
  trace?: TraceParent;
}

/**
 * The slot of a stream's shared state where the worker writes how many input
 * batches it had taken when its handler last waited for input with none
 * left and nothing else to do on its thread (no output batch held back by a
 * full lane, no batch waiting for its transferred buffers), or -1 while the
 * handler runs. Equal to the batches the caller sent (and no output waiting
 * in the lane): only new input can make the handler go on.
 */
export const PARKED_AT = 0;
/** The slot where the worker writes 1 once its handler was told that its input ended. */
export const TAKEN_END = 1;

/** A stream's shared state: `Int32Array` slots, then a float64 count (`takenView`). */
export function sharedState(): Int32Array {
  const state = new Int32Array(new SharedArrayBuffer(16));
  state[PARKED_AT] = -1;
  return state;
}

/**
 * The count, in the shared state, of the events the worker's handler has taken (a float64: a long stream
 * passes 2^31). Written by the worker as its handler takes each event, before anything it sends after; read
 * by the caller's `kTaken`, so that sessions pass on the events a handler that stopped never took.
 */
export function takenView(state: Int32Array): Float64Array {
  return new Float64Array(state.buffer, 8, 1);
}

/** Posted, either way, just before a batch that refers to them is pushed: the ArrayBuffers it transfers and the SharedArrayBuffers it shares. */
export interface TransferMessage {
  type: 'transfer';
  pair: number;
  buffers: ArrayBuffer[];
  shared: SharedArrayBuffer[];
}

/**
 * Posted to the thread by every cancel of the caller (after which it
 * cancels the lanes): the reason `ctx.signal` aborts with, a structured
 * clone of it, or, when the clone format refuses it, an error record
 * (`codec.ts`) saying so.
 */
export interface CancelMessage {
  type: 'cancel';
  pair: number;
  reason: unknown;
  /** The reason is this record's rebuilt error. */
  record: boolean;
}

/** Posted to a thread that hosts no stream of the caller's any more: it exits once its handlers have finished. */
export interface StopMessage {
  type: 'stop';
}

/**
 * Posted by a thread for each cancel it was sent, once the handler of that pair has finished (at once if it had):
 * until then the handler still runs there (one stuck in a loop never finishes), and the thread counts as busy.
 */
export interface LeftMessage {
  type: 'left';
  pair: number;
}

/**
 * Posted to a thread whose cancelled handler has not finished within the grace (`PingMessage`), answered by a
 * `PongMessage` from its event loop: a thread that does not answer is held by a loop without an await.
 */
export interface PingMessage {
  type: 'ping';
}

/** A thread's answer to a `PingMessage`: its event loop runs. */
export interface PongMessage {
  type: 'pong';
}

/** Posted by a thread once its module has loaded (or failed to): the caller's load deadline stops. */
export interface LoadedMessage {
  type: 'loaded';
}
