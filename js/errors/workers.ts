// Worker threads (workerFn).

import { coded } from './make';

/** A stream of a `workerFn` failed because the worker thread hosting it stopped (an uncaught error, `process.exit`, out of memory). */
export class WorkerCrashedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_WORKER_CRASHED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkerCrashedError';
  }
}

/** The module of a `workerFn` cannot serve as its handler. */
export function workerModuleError(message: string, cause?: unknown): Error & { code: 'ERR_VELO_WORKER_MODULE' } {
  return coded(cause === undefined ? new Error(message) : new Error(message, { cause }), 'ERR_VELO_WORKER_MODULE');
}

/** The module did not finish loading within `loadTimeout`. */
export function loadTimeoutError(module: string, ms: number): Error & { code: 'ERR_VELO_WORKER_MODULE' } {
  return workerModuleError(
    `The module ${module} did not finish loading on a worker thread within ${ms} ms (loadTimeout): a top-level await that never settles, or a load that never ends`,
  );
}

/**
 * A clone failure with the library's string code: DOMException's own `code` is a number (25 for a
 * DataCloneError), and every error velo-stream makes has a string code to compare. A coded one is left as is.
 */
export function dataCloneError(error: unknown): DOMException {
  const e =
    error instanceof DOMException ? error : new DOMException(String((error as Error)?.message ?? error), 'DataCloneError');
  return typeof e.code === 'string' ? e : coded(e, 'ERR_VELO_DATA_CLONE');
}

/** A bare SharedArrayBuffer: v8's deserializer as Node exposes it cannot take one back, so it is refused (a view over one is shared). */
export function sharedArrayBufferError(): DOMException {
  return coded(
    new DOMException(
      'A bare SharedArrayBuffer cannot cross to or from a worker stream: send a view over it (new Uint8Array(sab)), which is shared',
      'DataCloneError',
    ),
    'ERR_VELO_SHARED_ARRAY_BUFFER',
  );
}

/** A view over a SharedArrayBuffer where `node:v8` has no DefaultSerializer (Bun): it cannot be shared there. */
export function sharedViewError(): DOMException {
  return coded(
    new DOMException(
      'A view over a SharedArrayBuffer cannot cross to or from a worker stream on this runtime (its node:v8 has no Serializer, so the memory cannot be shared): send a copy, or run on Node',
      'DataCloneError',
    ),
    'ERR_VELO_RUNTIME_UNSUPPORTED',
  );
}

/** `resourceLimits` on a runtime whose `Worker` ignores them (Bun): a limit asked for and not enforced is refused. */
export function resourceLimitsUnsupportedError(runtime: string): Error {
  return coded(
    new Error(
      `The "resourceLimits" option of workerFn has no effect on ${runtime} (its Worker ignores resourceLimits), so it is refused there: leave it out, or run on Node`,
    ),
    'ERR_VELO_RUNTIME_UNSUPPORTED',
  );
}
