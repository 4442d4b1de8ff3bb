// How events, outputs and errors cross between threads: a batch of values is
// one byte string, taken by the other thread in one piece.
//
// - A batch of numbers only (the common case for light events) is their
//   float64s after an 8-byte header of zeros: no serializer involved.
// - Any other batch is the array of its values in the structured clone format
//   (`v8.serialize`, the format `postMessage` uses): Maps, Sets, Dates,
//   RegExps, typed arrays, Buffers (as Uint8Array views), plain objects and
//   errors cross; functions, symbols and class identity do not. Serializing
//   a batch at once costs a fraction of serializing its values one by one.
// - A handler's error crosses as a record (class name, message, stack, code)
//   the caller rebuilds: the clone format keeps neither a custom class's name
//   nor `code`.
import { deserialize, serialize } from 'node:v8';

/** v8's format opens with a version tag (0xff); a numbers-only batch with a zero byte. */
const NUMBERS_TAG = 0;
const HEADER = 8;

/** What a handler threw, as it crosses to the caller. */
export interface ThrownRecord {
  thrown: true;
  /** The constructor's name (`RangeError`, `MyError`), or null for a thrown non-error. */
  className: string | null;
  name: string;
  message: string;
  stack: string | undefined;
  code: unknown;
}

/** One batch, as bytes. Throws a `DataCloneError` (as `postMessage` does) for a value the clone format refuses. */
export function encodeBatch(values: readonly unknown[]): Uint8Array {
  const n = values.length;
  let numbers = true;
  for (let i = 0; i < n; i++) {
    if (typeof values[i] !== 'number') {
      numbers = false;
      break;
    }
  }
  if (!numbers) {
    try {
      return serialize(values);
    } catch (error) {
      throw new DOMException(String((error as Error)?.message ?? error), 'DataCloneError');
    }
  }
  const words = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) words[i + 1] = values[i] as number;
  return new Uint8Array(words.buffer);
}

/** A batch's values, or the record of what the handler threw. */
export function decodeBatch(bytes: Uint8Array): unknown[] | ThrownRecord {
  if (bytes[0] !== NUMBERS_TAG) return deserialize(bytes) as unknown[] | ThrownRecord;
  const n = (bytes.byteLength - HEADER) / 8;
  const values = new Array<number>(n);
  const aligned = (bytes.byteOffset + HEADER) % 8 === 0;
  const words = aligned
    ? new Float64Array(bytes.buffer, bytes.byteOffset + HEADER, n)
    : new Float64Array(bytes.slice(HEADER).buffer);
  for (let i = 0; i < n; i++) values[i] = words[i];
  return values;
}

export function isThrown(decoded: unknown[] | ThrownRecord): decoded is ThrownRecord {
  return !Array.isArray(decoded);
}

/** What `error` becomes on its way to the caller. */
export function encodeThrown(error: unknown): Uint8Array {
  let record: ThrownRecord;
  if (error instanceof Error) {
    const ctor = (error as { constructor?: { name?: unknown } }).constructor;
    record = {
      thrown: true,
      className: typeof ctor?.name === 'string' ? ctor.name : 'Error',
      name: String(error.name),
      message: String(error.message),
      stack: typeof error.stack === 'string' ? error.stack : undefined,
      code: cloneable((error as { code?: unknown }).code),
    };
  } else {
    record = { thrown: true, className: null, name: 'Error', message: describeThrown(error), stack: undefined, code: undefined };
  }
  return serialize(record);
}

const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/**
 * The caller's copy of a handler's error: a built-in error class is rebuilt
 * as itself; any other class as an `Error` whose `name` is the class's name.
 * Message, stack and `code` are the thrower's.
 */
export function rebuildThrown(record: ThrownRecord): Error {
  if (record.className === 'DOMException') {
    // A DataCloneError, AbortError...: rebuilt as what `postMessage` or an abort would throw here.
    const error = new DOMException(record.message, record.name);
    if (record.stack !== undefined)
      Object.defineProperty(error, 'stack', { value: record.stack, configurable: true, writable: true });
    return error;
  }
  const Ctor = (record.className !== null && BUILTIN_ERRORS[record.className]) || Error;
  const error = new Ctor(record.message) as Error & { code?: unknown };
  if (Ctor === Error && record.className !== null && record.className !== 'Error') {
    Object.defineProperty(error, 'name', { value: record.className, configurable: true, writable: true });
  } else if (record.name !== error.name) {
    Object.defineProperty(error, 'name', { value: record.name, configurable: true, writable: true });
  }
  if (record.stack !== undefined)
    Object.defineProperty(error, 'stack', { value: record.stack, configurable: true, writable: true });
  if (record.code !== undefined) error.code = record.code;
  return error;
}

function cloneable(value: unknown): unknown {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? value : undefined;
}

function describeThrown(value: unknown): string {
  try {
    return `A non-error value was thrown: ${typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))}`;
  } catch {
    return `A non-error value was thrown: ${Object.prototype.toString.call(value)}`;
  }
}
