// The native addon, and the process-wide pieces of glue around it.
import type { NativeFunction as NativeFunctionT } from '../native/index';

/**
 * The per-stream entry points (`crates/velo-node/src/raw.rs`): hand-written
 * N-API callbacks, so the generated declarations do not cover them. `h` is a
 * stream handle from `NativeFunction.open`.
 */
interface StreamOps {
  sendNumber(h: number, n: number, handlerWaiting: boolean): number;
  sendValue(h: number, index: number, handlerWaiting: boolean): number;
  sendNumbers(h: number, count: number): number;
  sendValues(h: number, count: number): number;
  room(h: number): number;
  yieldNumbers(h: number, count: number): number;
  yieldValues(h: number, count: number): number;
  outputRoom(h: number): number;
  end(h: number): boolean;
  takeInput(h: number, max: number): number;
  yieldNumber(h: number, n: number, readerWaiting: boolean): number;
  yieldValue(h: number, index: number, readerWaiting: boolean): number;
  takeOutput(h: number, max: number): number;
  released(): number;
  admitted(h: number): number;
  phase(h: number): number;
  key(h: number): number;
  handlerReturned(h: number): number;
  handlerFailed(h: number): number;
  cancel(h: number): number;
  releaseInput(h: number): number;
  idleFire(h: number): boolean;
  metrics(h: number, inUnconsumed: number, outUnconsumed: number): unknown;
  free(h: number): void;
  setScratch(buffer: Float64Array): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const addon = require('../native/index.js') as typeof import('../native/index') & { stream: StreamOps };

export type NativeFunction = NativeFunctionT;
export const NativeFunction = addon.NativeFunction;
export const ops: StreamOps = addon.stream;

/** Status codes of `crates/velo-node/src/raw.rs`. */
export const ACCEPTED = 0;
export const PARKED = 2;
export const CLOSED = 3;
/** The other side was waiting: the core counted the value, the caller hands it over. */
export const HANDOFF = 4;
export const EMPTY = -1;
export const ENDED = -2;
/** Added to a take's count when the run is values (table indices in `scratchU32`), not numbers (in `scratch`). */
export const VALUES = 2 ** 30;

/**
 * Runs of numbers and of value-table indices cross the boundary in bulk
 * through this buffer's memory: one native call per run instead of one per
 * value. A take's run, and a batch sent, are at most `scratch.length` long.
 */
export const scratch = new Float64Array(4096);
export const scratchU32 = new Uint32Array(scratch.buffer);
ops.setScratch(scratch);



/** `NativeStream.phase` codes, in order. */
export const PHASES = ['open', 'ending', 'done', 'failed', 'cancelled'] as const;

/** Something the idle notifier can report to. Held weakly: an abandoned stream stays collectable. */
export interface IdleTarget {
  idleFired(): void;
}

const idleTargets = new Map<number, WeakRef<IdleTarget>>();

addon.setIdleHandler(() => {
  for (const key of addon.idleDue()) {
    const target = idleTargets.get(key)?.deref();
    if (target === undefined) {
      idleTargets.delete(key);
      continue;
    }
    try {
      target.idleFired();
    } catch (error) {
      // A throw here would escape into the threadsafe-function machinery;
      // surface it the way Node surfaces any error nobody can handle.
      process.nextTick(() => {
        throw error;
      });
    }
  }
});

export function watchIdle(key: number, target: IdleTarget): void {
  idleTargets.set(key, new WeakRef(target));
}

export function unwatchIdle(key: number): void {
  idleTargets.delete(key);
}

/** Streams watched for idle deadlines (for tests: none may be left behind). */
export function idleWatched(): number {
  return idleTargets.size;
}

// Reads that wait on a stream whose idle deadline runs keep the process
// alive (the deadline will end the stream and settle the read). Ref'ing the
// notifier is a native call, so it is done on 0 -> 1 only, and the 1 -> 0
// unref is deferred to the next turn: a busy send/recv ping-pong then costs
// no native call per event.
let keepers = 0;
let referenced = false;
let unrefPending = false;

function unrefIfIdle(): void {
  unrefPending = false;
  if (keepers === 0 && referenced) {
    referenced = false;
    addon.keepAlive(false);
  }
}

export function holdAlive(): void {
  if (keepers++ === 0 && !referenced) {
    referenced = true;
    addon.keepAlive(true);
  }
}

export function releaseAlive(): void {
  if (--keepers === 0 && referenced && !unrefPending) {
    unrefPending = true;
    setImmediate(unrefIfIdle).unref();
  }
}
