/** Rejected or thrown when a stream can no longer accept events or has no more outputs. */
export class StreamClosedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_STREAM_CLOSED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StreamClosedError';
  }
}

/** Thrown by `open()` (and rejected by `run()`) when `maxConcurrent` streams of the function are open. */
export class StreamLimitError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_STREAM_LIMIT' as const;
  constructor(message: string) {
    super(message);
    this.name = 'StreamLimitError';
  }
}

type ErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE' | 'ERR_INVALID_RETURN_VALUE';

function withCode<E extends Error>(error: E, code: ErrorCode): E & { code: ErrorCode } {
  return Object.assign(error, { code });
}

export function invalidType(message: string): TypeError & { code: ErrorCode } {
  return withCode(new TypeError(message), 'ERR_INVALID_ARG_TYPE');
}

export function invalidValue(message: string): TypeError & { code: ErrorCode } {
  return withCode(new TypeError(message), 'ERR_INVALID_ARG_VALUE');
}

export function outOfRange(message: string): RangeError & { code: ErrorCode } {
  return withCode(new RangeError(message), 'ERR_OUT_OF_RANGE');
}

export function invalidReturn(message: string): TypeError & { code: ErrorCode } {
  return withCode(new TypeError(message), 'ERR_INVALID_RETURN_VALUE');
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  if (typeof value === 'string') return `type string (${JSON.stringify(value.length > 28 ? value.slice(0, 25) + '...' : value)})`;
  // Only primitives are left here (and symbols, which String() describes).
  const primitive = value as number | boolean | bigint | symbol | undefined;
  return `type ${typeof value} (${String(primitive)})`;
}

/** A stream of a `workerFn` failed because the worker thread hosting it stopped (an uncaught error, `process.exit`, out of memory). */
export class WorkerCrashedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_WORKER_CRASHED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkerCrashedError';
  }
}
