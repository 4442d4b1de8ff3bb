// What the caller's thread (pool.ts, caller.ts) and a worker thread
// (thread.ts) agree on.

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
}

/** Posted, either way, just before a batch that refers to them is pushed: the ArrayBuffers it transfers. */
export interface TransferMessage {
  type: 'transfer';
  pair: number;
  buffers: ArrayBuffer[];
}

/** The module of a `workerFn` cannot serve as its handler. */
export function workerModuleError(message: string, cause?: unknown): Error & { code: 'ERR_VELO_WORKER_MODULE' } {
  return Object.assign(cause === undefined ? new Error(message) : new Error(message, { cause }), {
    code: 'ERR_VELO_WORKER_MODULE' as const,
  });
}
