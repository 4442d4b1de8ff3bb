// How events, outputs and errors cross between threads: a batch of values is
// one byte string, taken by the other thread in one piece.
//
// - A batch of numbers only (the common case for light events) is their
//   float64s after an 8-byte header of zeros: no serializer involved.
// - Any other batch is the array of its values in the structured clone format
//   (v8's serializer, as `v8.serialize` and `postMessage` use it): Maps,
//   Sets, Dates, RegExps, typed arrays, Buffers, plain objects and errors
//   cross; functions, symbols and class identity do not. Serializing a batch
//   at once costs a fraction of serializing its values one by one.
// - A typed array or Buffer of 64 KiB or more is not copied into the
//   serialization: it travels beside it (`attached`), copied once by the core
//   into memory the receiver then uses in place. Smaller ones are copied
//   into the serialization, and the receiver's views point into it.
// - A handler's error crosses as a record (class name, message, stack, code,
//   and an AggregateError's errors and a cause, as records too) the caller
//   rebuilds: the clone format keeps neither a custom class's name nor `code`.
//   A thrown value that is not an error crosses as its clone, when the
//   algorithm takes it.
// - Where `node:v8` has `serialize` but no working `DefaultSerializer` (Bun),
//   a batch is `v8.serialize` of its values (the runtime's structured clone,
//   which keeps Buffers as Buffers) after a walk over them that finds what the
//   host-object hooks handle on Node: a bare SharedArrayBuffer is refused as on
//   Node, a view over one is refused with ERR_VELO_RUNTIME_UNSUPPORTED (it
//   cannot be shared there), every byte array is copied inline, and with
//   `transfer` the ArrayBuffers Node would move are detached once copied.
import { builtInErrorClass, dataCloneError, sharedArrayBufferError, sharedViewError } from '../errors';
import { isError, readString } from '../text';
import { DefaultDeserializer, DefaultSerializer, deserialize as v8Deserialize, serialize as v8Serialize } from 'node:v8';

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
  /** A thrown non-error that the clone algorithm takes (`className` null): rebuilt as its clone. */
  value?: unknown;
  /** The error's `cause`, if it has one. */
  cause?: ThrownRecord;
  /** An AggregateError's `errors` (at most `MAX_ERRORS`). */
  errors?: ThrownRecord[];
}

/** How deep causes and aggregated errors are carried, and how many errors of an AggregateError. */
const MAX_DEPTH = 8;
const MAX_ERRORS = 1000;

/** Byte arrays at least this long travel beside the serialization. */
const ATTACH_MIN = 64 * 1024;

/** The view classes the serializer writes itself, by index (a Buffer is rebuilt as a Buffer). */
const VIEW_TYPES = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
  Buffer,
] as const;
type View = ArrayBufferView & { readonly constructor: unknown };
const BUFFER_INDEX = VIEW_TYPES.indexOf(Buffer);
const INLINE = 0;
const ATTACHED = 1;
const TRANSFERRED = 2;
const SHARED = 3;
/** A batch that refers to ArrayBuffers coming by the port (transferred or shared) opens with this byte (then 7 zeros, then v8's format). */
const TRANSFER_TAG = 2;
/** A batch written by `v8.serialize` (no DefaultSerializer: Bun) opens with this byte (then 7 zeros, then the runtime's format). */
const PLAIN_TAG = 3;

/** Whether this runtime's `node:v8` has a working DefaultSerializer (Node, Deno); Bun's throws ERR_NOT_IMPLEMENTED. */
const HOST_SERIALIZER = ((): boolean => {
  try {
    new DefaultSerializer().writeHeader();
    return true;
  } catch {
    return false;
  }
})();

/** What comes by the thread's port for one batch: the ArrayBuffers it moved, and the SharedArrayBuffers its views share. */
export interface Arrived {
  buffers: ArrayBuffer[];
  shared: SharedArrayBuffer[];
}
const NOTHING_ARRIVED: Arrived = { buffers: [], shared: [] };

/**
 * The walk that stands in for the host-object hooks where there is no
 * DefaultSerializer: refuses SharedArrayBuffers and views over them, and
 * collects the ArrayBuffers that `transfer` would move (a view of at least
 * ATTACH_MIN bytes spanning its whole buffer). Visits what the structured
 * clone algorithm copies: arrays, Maps, Sets, and every object's own
 * enumerable properties.
 */
function walkPlain(root: unknown, transfer: boolean): ArrayBuffer[] {
  const moved: ArrayBuffer[] = [];
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null || seen.has(value)) continue;
    seen.add(value);
    if (ArrayBuffer.isView(value)) {
      const buffer = value.buffer;
      if (typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer) throw sharedViewError();
      if (
        transfer &&
        value.byteLength >= ATTACH_MIN &&
        value.byteOffset === 0 &&
        buffer instanceof ArrayBuffer &&
        value.byteLength === buffer.byteLength &&
        !moved.includes(buffer)
      )
        moved.push(buffer);
      continue;
    }
    if (typeof SharedArrayBuffer === 'function' && value instanceof SharedArrayBuffer) throw sharedArrayBufferError();
    if (value instanceof ArrayBuffer) continue;
    if (value instanceof Map) {
      for (const [k, v] of value) stack.push(k, v);
    } else if (value instanceof Set) {
      for (const v of value) stack.push(v);
    }
    for (const key of Object.keys(value)) stack.push((value as Record<string, unknown>)[key]);
  }
  return moved;
}

/** `value` by `v8.serialize`, for a runtime with no DefaultSerializer; detaches `transfer`'s ArrayBuffers as Node's path moves them. */
function serializedPlain(value: unknown, transfer: boolean): Encoded {
  const moved = walkPlain(value, transfer);
  let written: Uint8Array;
  try {
    written = v8Serialize(value);
  } catch (error) {
    throw dataCloneError(error);
  }
  const bytes = new Uint8Array(HEADER + written.length);
  bytes[0] = PLAIN_TAG;
  bytes.set(written, HEADER);
  for (const buffer of moved) detach(buffer);
  return { bytes, attached: null, byPort: null };
}

/** Leaves `buffer` detached (length 0), as a transfer leaves the sender's. */
function detach(buffer: ArrayBuffer): void {
  const transferOwn = (buffer as { transfer?: () => ArrayBuffer }).transfer;
  if (typeof transferOwn === 'function') transferOwn.call(buffer);
  else structuredClone(buffer, { transfer: [buffer] });
}

function viewIndex(view: View): number {
  if (Buffer.isBuffer(view)) return BUFFER_INDEX;
  for (let i = 0; i < BUFFER_INDEX; i++) if (view instanceof VIEW_TYPES[i]) return i;
  throw dataCloneError(new DOMException(`${Object.prototype.toString.call(view)} could not be cloned.`, 'DataCloneError'));
}

/**
 * v8's serializer, writing typed arrays and Buffers itself: large ones as
 * references to attached byte arrays, or, with `transfer`, to ArrayBuffers
 * moved to the other thread (a large view that spans its whole buffer).
 */
class BatchSerializer extends DefaultSerializer {
  readonly attached: Uint8Array[] = [];
  readonly transferred: ArrayBuffer[] = [];
  readonly shared: SharedArrayBuffer[] = [];
  readonly #transfer: boolean;
  constructor(transfer: boolean) {
    super();
    this.#transfer = transfer;
  }
  _writeHostObject(object: object): void {
    const view = object as View;
    this.writeUint32(viewIndex(view));
    if (view.buffer instanceof SharedArrayBuffer) {
      // Shared, as postMessage shares it: the other thread's view sees the same memory.
      let index = this.shared.indexOf(view.buffer);
      if (index < 0) index = this.shared.push(view.buffer) - 1;
      this.writeUint32(SHARED);
      this.writeUint32(index);
      this.writeUint32(view.byteOffset);
      this.writeUint32(view.byteLength);
      return;
    }
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    if (
      this.#transfer &&
      view.byteLength >= ATTACH_MIN &&
      view.byteOffset === 0 &&
      view.buffer instanceof ArrayBuffer &&
      view.byteLength === view.buffer.byteLength
    ) {
      let index = this.transferred.indexOf(view.buffer);
      if (index < 0) index = this.transferred.push(view.buffer) - 1;
      this.writeUint32(TRANSFERRED);
      this.writeUint32(index);
    } else if (view.byteLength >= ATTACH_MIN) {
      this.writeUint32(ATTACHED);
      this.writeUint32(this.attached.length);
      this.attached.push(bytes);
    } else {
      this.writeUint32(INLINE);
      this.writeUint32(view.byteLength);
      this.writeRawBytes(bytes);
    }
  }
  _getSharedArrayBufferId(): never {
    throw sharedArrayBufferError();
  }
}

class BatchDeserializer extends DefaultDeserializer {
  readonly #attached: readonly Buffer[];
  readonly #arrived: Arrived;
  constructor(bytes: Buffer, attached: readonly Buffer[], arrived: Arrived) {
    super(bytes);
    this.#attached = attached;
    this.#arrived = arrived;
  }
  _readHostObject(): unknown {
    const type = this.readUint32();
    const kind = this.readUint32();
    if (kind === SHARED) {
      const sab = this.#arrived.shared[this.readUint32()];
      const offset = this.readUint32();
      const length = this.readUint32();
      if (type === BUFFER_INDEX) return Buffer.from(sab, offset, length);
      const Shared = VIEW_TYPES[type] as unknown as new (
        buffer: ArrayBufferLike,
        offset: number,
        length: number,
      ) => ArrayBufferView;
      return new Shared(sab, offset, length / ((Shared as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1));
    }
    let bytes: Buffer =
      kind === TRANSFERRED
        ? Buffer.from(this.#arrived.buffers[this.readUint32()])
        : kind === ATTACHED
          ? this.#attached[this.readUint32()]
          : this.readRawBytes(this.readUint32());
    if (type === BUFFER_INDEX) return bytes;
    const Ctor = VIEW_TYPES[type] as unknown as new (buffer: ArrayBufferLike, offset: number, length: number) => ArrayBufferView;
    const size = (Ctor as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    // A view needs its offset aligned to its element size: copy when it is not.
    if (bytes.byteOffset % size !== 0) bytes = Buffer.from(bytes);
    return new Ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size);
  }
}

/** A batch as it crosses: the serialization, the byte arrays it refers to, and what goes with it by the thread's message port (null: nothing). */
export interface Encoded {
  bytes: Uint8Array;
  attached: Uint8Array[] | null;
  byPort: Arrived | null;
}

/**
 * One batch, encoded; with `transfer`, large whole ArrayBuffers are to be
 * moved, not copied. Throws a `DataCloneError` (as `postMessage` does) for
 * a value the clone format refuses.
 */
export function encodeBatch(values: readonly unknown[], transfer = false): Encoded {
  const n = values.length;
  let numbers = true;
  for (let i = 0; i < n; i++) {
    if (typeof values[i] !== 'number') {
      numbers = false;
      break;
    }
  }
  if (numbers) {
    const words = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) words[i + 1] = values[i] as number;
    return { bytes: new Uint8Array(words.buffer), attached: null, byPort: null };
  }
  return serialized(values, transfer);
}

function serialized(value: unknown, transfer = false): Encoded {
  if (!HOST_SERIALIZER) return serializedPlain(value, transfer);
  const serializer = new BatchSerializer(transfer);
  try {
    serializer.writeHeader();
    serializer.writeValue(value);
  } catch (error) {
    throw dataCloneError(error);
  }
  const { attached, transferred, shared } = serializer;
  let bytes: Uint8Array = serializer.releaseBuffer();
  const byPort = transferred.length > 0 || shared.length > 0;
  if (byPort) {
    const tagged = new Uint8Array(HEADER + bytes.length);
    tagged[0] = TRANSFER_TAG;
    tagged.set(bytes, HEADER);
    bytes = tagged;
  }
  return {
    bytes,
    attached: attached.length > 0 ? attached : null,
    byPort: byPort ? { buffers: transferred, shared } : null,
  };
}

/** The values before the first one the clone format refuses, encoded (null: none); for a batch that failed to encode. */
export function encodePrefix(values: readonly unknown[], transfer: boolean): Encoded | null {
  let n = 0;
  for (; n < values.length; n++) {
    try {
      encodeBatch([values[n]], false);
    } catch {
      break;
    }
  }
  if (n === 0) return null;
  try {
    return encodeBatch(values.slice(0, n), transfer);
  } catch {
    return null;
  }
}

/** Whether the batch `crossTake` gave refers to ArrayBuffers that come by the message port (`decodeBatch` needs them). */
export function needsTransfer(buffers: Buffer[]): boolean {
  return buffers[0][0] === TRANSFER_TAG;
}

/** A batch's values, or the record of what the handler threw, from what `crossTake` gave: `[bytes, ...attached]`. */
export function decodeBatch(buffers: Buffer[], arrived: Arrived = NOTHING_ARRIVED): unknown[] | ThrownRecord {
  let bytes = buffers[0];
  if (bytes[0] === PLAIN_TAG) return v8Deserialize(bytes.subarray(HEADER)) as unknown[] | ThrownRecord;
  if (bytes[0] === TRANSFER_TAG) bytes = bytes.subarray(HEADER);
  if (bytes[0] !== NUMBERS_TAG) {
    const deserializer = new BatchDeserializer(bytes, buffers.slice(1), arrived);
    deserializer.readHeader();
    return deserializer.readValue() as unknown[] | ThrownRecord;
  }
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
export function encodeThrown(error: unknown): Encoded {
  return serialized(thrownRecord(error));
}

/** `error` as a record the other thread rebuilds (`rebuildThrown`). */
export function thrownRecord(error: unknown, depth = 0): ThrownRecord {
  // The value is the application's, maybe hostile (a revoked Proxy, getters that throw): what cannot be read is left out.
  if (!isError(error)) {
    if (clones(error))
      return { thrown: true, className: null, name: 'Error', message: '', stack: undefined, code: undefined, value: error };
    // (A function, a symbol, a Proxy: the caller gets a DataCloneError saying what was thrown.)
    const refused = `${describeThrown(error)} (the structured clone algorithm refuses it)`;
    return thrownRecord(dataCloneError(new DOMException(refused, 'DataCloneError')), depth);
  }
  const className = readString(() => (error as { constructor?: { name?: unknown } }).constructor?.name);
  const record: ThrownRecord = {
    thrown: true,
    className: className ?? 'Error',
    name: readString(() => error.name) ?? 'Error',
    message: readString(() => error.message) ?? 'an error whose message cannot be read',
    stack: readString(() => error.stack),
    code: readCloneable(() => (error as { code?: unknown }).code),
  };
  if (depth >= MAX_DEPTH) return record;
  try {
    if ('cause' in error) record.cause = thrownRecord(error.cause, depth + 1);
    const errors = error instanceof AggregateError ? (error.errors as unknown) : undefined;
    if (Array.isArray(errors)) record.errors = errors.slice(0, MAX_ERRORS).map((e: unknown) => thrownRecord(e, depth + 1));
  } catch {
    // (A getter that throws, a revoked Proxy: left out.)
  }
  return record;
}

/** Whether the structured clone algorithm takes `value` (a thrown string, number, plain object...). */
function clones(value: unknown): boolean {
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * The caller's copy of a handler's error: a built-in error class is rebuilt
 * as itself; any other class as an `Error` whose `name` is the class's name.
 * Message, stack, `code`, `cause` and an AggregateError's `errors` are the
 * thrower's. A thrown non-error comes back as its clone, when it had one.
 */
export function rebuildThrown(record: ThrownRecord): unknown {
  if (record.className === null && 'value' in record) return record.value;
  if (record.className === 'DOMException') {
    // A DataCloneError, AbortError...: rebuilt as what `postMessage` or an abort would throw here.
    const error = new DOMException(record.message, record.name);
    if (record.stack !== undefined)
      Object.defineProperty(error, 'stack', { value: record.stack, configurable: true, writable: true });
    // (A coded one, as ERR_VELO_SHARED_ARRAY_BUFFER: its own `code` shadows DOMException's number.)
    if (typeof record.code === 'string')
      Object.defineProperty(error, 'code', { value: record.code, enumerable: true, configurable: true });
    return error;
  }
  const options = record.cause === undefined ? undefined : { cause: rebuildThrown(record.cause) };
  const error = (
    record.className === 'AggregateError'
      ? new AggregateError((record.errors ?? []).map(rebuildThrown), record.message, options)
      : new (builtInErrorClass(record.className))(record.message, options)
  ) as Error & { code?: unknown };
  const builtIn = record.className === 'AggregateError' || builtInErrorClass(record.className) !== Error;
  if (!builtIn && record.className !== null && record.className !== 'Error') {
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

function readCloneable(read: () => unknown): unknown {
  try {
    return cloneable(read());
  } catch {
    return undefined;
  }
}

function describeThrown(value: unknown): string {
  try {
    return `A non-error value was thrown: ${typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))}`;
  } catch {
    return `A non-error value was thrown: ${readString(() => Object.prototype.toString.call(value)) ?? 'a revoked Proxy'}`;
  }
}
