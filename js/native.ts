// The native addon, and the process-wide pieces of glue around it.
import type { NativeFunction as NativeFunctionT, NativeStream as NativeStreamT } from '../native/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const addon = require('../native/index.js') as typeof import('../native/index');

export type NativeStream = NativeStreamT;
export type NativeFunction = NativeFunctionT;
export const NativeFunction = addon.NativeFunction;
export const panicForTest = addon.__panicForTest;

/** Status codes of `crates/velo-node/src/lib.rs`. */
export const ACCEPTED = 0;
export const ACCEPTED_WAKE = 1;
export const PARKED = 2;
export const CLOSED = 3;
export const EMPTY = -1;
export const ENDED = -2;

/** `NativeStream.phase` codes, in order. */
export const PHASES = ['open', 'ending', 'done', 'failed', 'cancelled'] as const;
export type Phase = (typeof PHASES)[number];

/** Something the idle notifier can report to. Held weakly: an abandoned stream stays collectable. */
export interface IdleTarget {
  idleFired(): void;
}

const idleTargets = new Map<number, WeakRef<IdleTarget>>();

addon.setIdleHandler((keys: number[]) => {
  for (const key of keys) {
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
