// Streams (velo-stream): a closed stream, a full function, a stalled source, the native addon.

import { HTTP_ANSWERS } from './answers';
import { coded } from './make';

/** Rejected or thrown when a stream can no longer accept events or has no more outputs. */
export class StreamClosedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_STREAM_CLOSED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StreamClosedError';
  }
}

/** Thrown by `open()` (and rejected by `run()`) when `maxConcurrent` streams of the function are open. */
export class StreamLimitError extends Error {
  /** The HTTP status to answer with (503 Service Unavailable): the HTTP writers and the frameworks that read `status` answer it. */
  readonly status = HTTP_ANSWERS.ERR_VELO_STREAM_LIMIT.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_STREAM_LIMIT' as const;
  constructor(message: string) {
    super(message);
    this.name = 'StreamLimitError';
  }
}

/**
 * The source a stream was fed from (`feed()`, `run()`) gave no event for the stream's `idleTimeout` while the stream
 * waited on it: the source is closed, and the stream fails with this error after the events before it. Its `status`
 * (504 Gateway Timeout) is what the HTTP writers answer before any output; after some, an error event.
 */
export class SourceStalledError extends Error {
  /** The HTTP status to answer with (504 Gateway Timeout: the upstream the source reads stopped answering). */
  readonly status = HTTP_ANSWERS.ERR_VELO_SOURCE_STALLED.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_SOURCE_STALLED' as const;
  constructor(message: string) {
    super(message);
    this.name = 'SourceStalledError';
  }
}

/** The native addon for this platform could not be loaded. */
export function addonNotFoundError(message: string, cause: unknown): Error & { code: 'ERR_VELO_ADDON_NOT_FOUND' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_ADDON_NOT_FOUND');
}

/** Two copies of incompatible versions share one thread's state. */
export function incompatibleCopyError(message: string): Error & { code: 'ERR_VELO_INCOMPATIBLE_COPY' } {
  return coded(new Error(message), 'ERR_VELO_INCOMPATIBLE_COPY');
}
