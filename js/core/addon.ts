// The native addon, and the process-wide pieces of glue around it.
import type { NativeFunction as NativeFunctionT } from '../../native/index';

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
export const addon = require('./load-addon.js') as typeof import('../../native/index') & { stream: StreamOps };

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

/** `NativeStream.phase` codes, in order. */
export const PHASES = ['open', 'ending', 'done', 'failed', 'cancelled'] as const;

/** Something the idle notifier can report to. */
export interface IdleTarget {
  idleFired(): void;
}

/**
 * The JavaScript half of this thread's native state. The native half (the
 * streams, the released value indices, the scratch buffer's address, the idle
 * notifier) exists once per thread however many times this module is
 * evaluated (Jest evaluates it per test file), so this half must too: every
 * copy of the module takes the one object the addon keeps for the thread
 * (`crates/velo-node/src/shared.rs`). Its fields are plain data and
 * functions, so copies from other realms (Jest's vm contexts) can share it.
 */
interface ThreadState {
  /** `STATE_VERSION` of the copy that made it. */
  version: number;
  scratch: Float64Array;
  /** The value table (`native-stream.ts`) and its free indices. */
  values: unknown[];
  freeValues: number[];
  /** Streams whose idle deadline runs, by key: held, since the deadline will end them. */
  idleHeld: Map<number, IdleTarget>;
  /** Streams whose idle clock is paused (a send waits for room), by key: held weakly, as nothing may end them. */
  idleWeak: Map<number, WeakRef<IdleTarget>>;
  /** Reads that keep the process alive (see `holdAlive`). */
  alive: { keepers: number; referenced: boolean; unrefPending: boolean };
}

/** Changes when `ThreadState`'s shape does: two copies that disagree on it must not share it. */
const STATE_VERSION = 1;

const state = addon.threadState() as Partial<ThreadState>;
if (state.version === undefined) {
  const scratch = new Float64Array(4096);
  ops.setScratch(scratch);
  Object.assign(state, {
    scratch,
    values: [],
    freeValues: [],
    idleHeld: new Map(),
    idleWeak: new Map(),
    alive: { keepers: 0, referenced: false, unrefPending: false },
  } satisfies Omit<ThreadState, 'version'>);
  addon.setIdleHandler(dispatchIdle);
  state.version = STATE_VERSION;
} else if (state.version !== STATE_VERSION) {
  throw Object.assign(
    new Error(
      `velo-stream: another copy of velo-stream, of an incompatible version, is loaded on this thread from the same native addon (state version ${state.version}, this copy ${STATE_VERSION}). Load one version per process.`,
    ),
    { code: 'ERR_VELO_INCOMPATIBLE_COPY' },
  );
}
const shared = state as ThreadState;

/**
 * Runs of numbers and of value-table indices cross the boundary in bulk
 * through this buffer's memory: one native call per run instead of one per
 * value. A take's run, and a batch sent, are at most `scratch.length` long.
 */
export const scratch = shared.scratch;
export const scratchU32 = new Uint32Array(scratch.buffer);
export const valueTable = shared.values;
export const freeValues = shared.freeValues;

// The idle dispatcher is registered by the first copy only, and uses nothing
// but the shared state: it serves the streams of every copy.
function dispatchIdle(): void {
  for (const key of addon.idleDue()) {
    const target = shared.idleHeld.get(key) ?? shared.idleWeak.get(key)?.deref();
    if (target === undefined) {
      shared.idleWeak.delete(key);
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
}

/** Watch `key`'s idle deadline, which runs: `target` is held until it ends or the clock pauses. */
export function watchIdle(key: number, target: IdleTarget): void {
  shared.idleHeld.set(key, target);
}

/**
 * The stream's idle clock started (`running`) or paused. While it runs, the
 * deadline will end the stream, so the stream is held: were it collected,
 * its handler would never see the end of its input nor run its `finally`,
 * and a read waiting on it would never settle. While paused (a send waits
 * for room), nothing may end it, and an abandoned stream must stay
 * collectable.
 */
export function holdIdle(key: number, target: IdleTarget, running: boolean): void {
  if (running) {
    shared.idleWeak.delete(key);
    shared.idleHeld.set(key, target);
  } else {
    shared.idleHeld.delete(key);
    shared.idleWeak.set(key, new WeakRef(target));
  }
}

export function unwatchIdle(key: number): void {
  shared.idleHeld.delete(key);
  shared.idleWeak.delete(key);
}

/** Streams watched for idle deadlines (for tests: none may be left behind). */
export function idleWatched(): number {
  return shared.idleHeld.size + shared.idleWeak.size;
}

// Reads that wait on a stream whose idle deadline runs keep the process
// alive (the deadline will end the stream and settle the read). Ref'ing the
// notifier is a native call, so it is done on 0 -> 1 only, and the 1 -> 0
// unref is deferred to the next turn: a busy send/recv ping-pong then costs
// no native call per event.
const alive = shared.alive;

function unrefIfIdle(): void {
  alive.unrefPending = false;
  if (alive.keepers === 0 && alive.referenced) {
    alive.referenced = false;
    addon.keepAlive(false);
  }
}

export function holdAlive(): void {
  if (alive.keepers++ === 0 && !alive.referenced) {
    alive.referenced = true;
    addon.keepAlive(true);
  }
}

export function releaseAlive(): void {
  if (--alive.keepers === 0 && alive.referenced && !alive.unrefPending) {
    alive.unrefPending = true;
    setImmediate(unrefIfIdle).unref();
  }
}
