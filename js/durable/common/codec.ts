// How events and outputs travel through the log: a codec turns a value into
// bytes (or a string) and back. Producers, workers and readers of one stream
// function must use the same codec.
import { EventTooLargeError, describe, encodeError, invalidValue } from '../../errors';

/** Turns values into bytes for the log and back. `decode` gets the bytes `encode` made. */
export interface Codec<T = unknown> {
  /** The value's bytes; a string is stored as its UTF-8 bytes. Throw for a value the codec cannot carry. */
  encode: (value: T) => Buffer | string;
  /** The value `encode` made these bytes from. Throw for bytes it cannot read (the session ends there: `ERR_VELO_DECODE`). */
  decode(data: Buffer): T;
}

const BUFFER_TAG = '$velo:buffer';
/** How the tag looks in JSON text: no text without it holds a tagged Buffer. */
const BUFFER_TAG_JSON = JSON.stringify(BUFFER_TAG);
/** Nesting past which `scan` stops looking (and says yes: the careful path handles cycles too). */
const MAX_SCAN_DEPTH = 64;

/** Thrown once a text is known to pass its limit before it is all made (one error, made once: `encodeChecked`). */
const TEXT_TOO_LARGE = new Error('the text would pass its limit');
/** After `TEXT_TOO_LARGE`: the fewest bytes the text takes, past its limit. */
let tooLargeBy = 0;

function tooLarge(budget: number): never {
  tooLargeBy = -budget;
  throw TEXT_TOO_LARGE;
}

/** `scan`'s answer for a value that may hold bytes (or is nested past its depth). */
const MAY_HOLD_BYTES = -1;

/** `place` of an array's item: its comma (a key's is its length and 3: quoted, and a colon; the top's 0). */
const ITEM = 1;

/**
 * The fewest bytes JSON writes for a value that is not an object at `place` (`ITEM`, a key's, or the top's): its
 * text and its place, none for one JSON leaves out of an object (undefined, a function, a symbol; in an array, null).
 */
function leafBytes(value: unknown, place: number): number {
  switch (typeof value) {
    case 'string':
      return place + value.length + 2;
    case 'number':
    case 'bigint':
      return place + 1;
    case 'boolean':
      return place + 4;
    default:
      return value === null || place === ITEM ? place + 4 : 0;
  }
}

/** Whether `value` is a Number, String or Boolean object, of any realm (JSON writes its primitive). */
function boxed(value: object): boolean {
  const tag = Object.prototype.toString.call(value);
  return tag === '[object Number]' || tag === '[object String]' || tag === '[object Boolean]';
}

/** The bytes of the bytes' tag around its base64: `{"$velo:buffer":""}`. */
const TAG_BYTES = BUFFER_TAG_JSON.length + 5;

/**
 * Whether `value` may hold a Uint8Array somewhere, or something with its own `toJSON` (which may make one), or a
 * Number, String or Boolean object, or is nested past the scan's depth (`MAY_HOLD_BYTES`); else the bytes of
 * `budget` left. No bytes means plain `JSON.stringify` writes what the replacer would: the replacer costs a call per
 * key, this scan less than half of that. The budget is spent on what it scans, counted low as JSON writes it (an
 * object's own enumerable keys), each value with `place` (`leafBytes`); `TEXT_TOO_LARGE` is thrown once it is
 * spent: a value that holds one object in many places (a text that doubles per level) is refused in as many steps
 * as its limit has bytes, its text not made.
 */
function scan(value: unknown, depth: number, place: number, budget: number): number {
  if (value === null || typeof value !== 'object') {
    // (A BigInt JSON cannot write, unless someone gave BigInt a toJSON: the replacer counts what it makes.)
    if (typeof value === 'bigint' && typeof (BigInt.prototype as { toJSON?: unknown }).toJSON === 'function')
      return MAY_HOLD_BYTES;
    if ((budget -= leafBytes(value, place)) < 0) tooLarge(budget);
    return budget;
  }
  if (value instanceof Uint8Array) {
    // (Its text is known: its tag and its bytes in base64. A Buffer's toJSON would make an array of all its bytes.)
    if ((budget -= place + TAG_BYTES + Math.ceil(value.byteLength / 3) * 4) < 0) tooLarge(budget);
    return MAY_HOLD_BYTES;
  }
  if (depth > MAX_SCAN_DEPTH || typeof (value as { toJSON?: unknown }).toJSON === 'function') return MAY_HOLD_BYTES;
  if (Array.isArray(value)) {
    // (Its brackets less one: its items count a comma each, one more than it has.)
    if ((budget -= place + 1) < 0) tooLarge(budget);
    for (let i = 0; i < value.length; i++) if ((budget = scan(value[i], depth + 1, ITEM, budget)) < 0) return MAY_HOLD_BYTES;
    return budget;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  const plain = proto === Object.prototype || proto === null;
  if (!plain && boxed(value)) return MAY_HOLD_BYTES;
  if ((budget -= place + 2) < 0) tooLarge(budget);
  // (A plain object's keys by `for in`, the fastest way; another's (a class's instance) as JSON takes them: its own.)
  if (plain) {
    for (const key in value) {
      if ((budget = scan((value as Record<string, unknown>)[key], depth + 1, key.length + 3, budget)) < 0) return MAY_HOLD_BYTES;
    }
    return budget;
  }
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    if ((budget = scan((value as Record<string, unknown>)[keys[i]], depth + 1, keys[i].length + 3, budget)) < 0)
      return MAY_HOLD_BYTES;
  }
  return budget;
}

/** `value`'s JSON text made with the replacer (it may hold bytes), `TEXT_TOO_LARGE` thrown once it passes `limit`. */
function carefulJson(value: unknown, limit: number): string | undefined {
  // (The replacer counts the whole text as the scan does, from what it is given: a value after its toJSON, a Date's
  // or a toJSON's text too, and past the scan's depth; a Number, String or Boolean object a byte.)
  let budget = limit;
  let top = true;
  return JSON.stringify(value, function replaceBytes(this: Record<string, unknown>, key: string, converted: unknown) {
    const place = top ? 0 : Array.isArray(this) ? ITEM : key.length + 3;
    top = false;
    budget -=
      converted === null || typeof converted !== 'object'
        ? leafBytes(converted, place)
        : place + (Array.isArray(converted) ? 1 : boxed(converted) ? 1 : 2);
    if (budget < 0) tooLarge(budget);
    return bytesTagged(this, key, converted);
  });
}

/** `converted` (`holder[key]` after its toJSON), or the bytes' tag for a Uint8Array's bytes. */
function bytesTagged(holder: Record<string, unknown>, key: string, converted: unknown): unknown {
  // A Uint8Array has no toJSON of its own; a Buffer's gives `{ type: 'Buffer', data }`, and only then is the value
  // before it (`holder[key]`, read again) looked at: any other property is read once, by JSON alone.
  const raw =
    converted instanceof Uint8Array
      ? converted
      : converted !== null && typeof converted === 'object' && (converted as { type?: unknown }).type === 'Buffer'
        ? holder[key]
        : undefined;
  if (raw instanceof Uint8Array)
    return { [BUFFER_TAG]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
  return converted;
}

function reviveBytes(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const tagged = (value as Record<string, unknown>)[BUFFER_TAG];
    if (typeof tagged === 'string' && Object.keys(value).length === 1) return Buffer.from(tagged, 'base64');
  }
  return value;
}

/**
 * The default: JSON. Buffers and other `Uint8Array`s anywhere in a value are
 * carried as `{ "$velo:buffer": "<base64>" }` and decoded back to Buffers; a
 * value JSON cannot carry (`undefined` at the top, a function, a symbol, a
 * BigInt, a cycle) is refused at `encode`. Values without bytes (most) take
 * plain `JSON.stringify` and `JSON.parse`.
 */
export const jsonCodec: Codec = {
  encode(value: unknown): string {
    return jsonText(value, Infinity);
  },
  decode(data: Buffer): unknown {
    return parseJson(data.toString('utf8'));
  },
};

/** `jsonCodec.encode(value)`, refused with `TEXT_TOO_LARGE` once its text is known to pass `limit` bytes. */
function jsonText(value: unknown, limit: number): string {
  const text = scan(value, 0, 0, limit) === MAY_HOLD_BYTES ? carefulJson(value, limit) : JSON.stringify(value);
  if (text === undefined) {
    // (An object or a bigint here has a toJSON() that gave undefined.)
    const what =
      value !== null && (typeof value === 'object' || typeof value === 'bigint')
        ? 'this value: its toJSON() gave undefined'
        : `the value ${typeof value}`;
    throw invalidValue(`JSON cannot carry ${what}`);
  }
  return text;
}

function parseJson(text: string): unknown {
  return text.includes(BUFFER_TAG_JSON) ? JSON.parse(text, reviveBytes) : JSON.parse(text);
}

/**
 * Whether a log may hand `codec` its stored values as text: only `jsonCodec`'s, whose bytes are UTF-8 JSON. A
 * string costs less to read than a Buffer (no view object on the socket's chunk, no decoding at `decode`).
 */
export function readsText(codec: Codec<unknown>): boolean {
  return codec === jsonCodec;
}

/** A stored value through `codec`: bytes, or the text a log read for a codec that `readsText` (or a timer kept). */
export function decodeStored<T>(codec: Codec<T>, data: Buffer | string): T {
  if (typeof data !== 'string') return codec.decode(data);
  return codec === jsonCodec ? (parseJson(data) as T) : codec.decode(Buffer.from(data));
}

/** Raw bytes: events and outputs are Buffers (or Uint8Arrays, or strings stored as UTF-8), decoded as Buffers. */
export const bufferCodec: Codec<Buffer | Uint8Array | string> = {
  encode(value: Buffer | Uint8Array | string): Buffer | string {
    if (typeof value === 'string' || Buffer.isBuffer(value)) return value;
    if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    throw invalidValue('bufferCodec carries Buffers, Uint8Arrays and strings only');
  },
  decode(data: Buffer): Buffer {
    return data;
  },
};

/** Whether `data` is a Buffer; false for a revoked Proxy (whose prototype `Buffer.isBuffer` cannot read). */
function isBuffer(data: unknown): boolean {
  try {
    return Buffer.isBuffer(data);
  } catch {
    return false;
  }
}

/**
 * Encodes with `codec`, turning a codec's throw into a coded error, and refusing more than `limit` bytes. `what`
 * names the value in an error; with `sid`, it is the value of that session (named only when an error is made: an
 * output's text per output was most of what encoding it allocated). A function `what` is called only then, for a
 * name made of the value's own place (a journaled call's).
 */
export function encodeChecked<T>(
  codec: Codec<T>,
  value: T,
  limit: number,
  what: string | (() => string),
  sid?: string,
): Buffer | string {
  let data: Buffer | string;
  try {
    // (JSON's text is refused as soon as it is known too large: it is not made whole first.)
    data = codec === jsonCodec ? jsonText(value, limit) : codec.encode(value);
  } catch (error) {
    if (error === TEXT_TOO_LARGE) throw new EventTooLargeError(named(what, sid), limit + tooLargeBy, limit, true);
    what = named(what, sid);
    // The built-in codecs' own refusals (`undefined`, a function) keep their code and gain the call and the key.
    const own = codec === jsonCodec || codec === (bufferCodec as Codec<unknown>);
    if (own && (error as { code?: unknown }).code === 'ERR_INVALID_ARG_VALUE')
      throw invalidValue(`Could not encode the ${what}: ${(error as Error).message}`);
    if ((error as { code?: unknown } | null)?.code !== undefined) throw error;
    throw encodeError(`The codec could not encode the ${what}: ${(error as Error)?.message ?? String(error)}`, error);
  }
  if (typeof data !== 'string' && !isBuffer(data)) {
    throw encodeError(`The codec's encode() must return a Buffer or a string, not ${describe(data)}`);
  }
  return bounded(data, limit, what, sid);
}

/** `data`, refused (`ERR_VELO_EVENT_TOO_LARGE`) past `limit` bytes. */
function bounded(data: Buffer | string, limit: number, what: string | (() => string), sid?: string): Buffer | string {
  // A string's UTF-8 takes at most 3 bytes per UTF-16 unit: most are known to fit without counting.
  if (typeof data === 'string' ? data.length * 3 <= limit : data.length <= limit) return data;
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (size > limit) throw new EventTooLargeError(named(what, sid), size, limit);
  return data;
}

/** `plainCopy`'s answer for a value it does not copy. */
export const NOT_PLAIN: unique symbol = Symbol('not plain data');
/** `plainCopy`'s answer for a value whose text would pass its limit: at least `plainCopy.atLeast` bytes. */
export const TOO_LARGE: unique symbol = Symbol('too large');

/** Bytes of text the copy in progress may still take (counted low: each value at least its shortest text). */
let room = 0;
/** `plainCopy.kind`: a key of the copy is the bytes' tag (decoding its text may give a Buffer there). */
export const TAGGED = 1;
/** `plainCopy.kind`: the copy holds a value it did not copy, kept as it is (encode and decode the copy then). */
export const MIXED = 2;
/** The copy in progress: TAGGED and MIXED, or 0. */
let copyKind = 0;

/**
 * What `jsonCodec` decodes `value`'s encoding to, made without the text, for plain data: null, booleans, strings,
 * numbers (finite; -0 as 0, others as null, as JSON has them), arrays and objects (of `Array.prototype`,
 * `Object.prototype` or none), without a `toJSON`, nested at most 64 deep; properties as JSON takes them (own,
 * enumerable, by string key, each read once; undefined, a function or a symbol left out, or null in an array), and
 * made as JSON makes them (an object's as own data properties, in JSON's order, whatever its prototype holds; an
 * array's index its prototype holds goes the text way). Anything else (a Buffer, a Date, a class's instance, a
 * BigInt) is not copied: at the top it gives `NOT_PLAIN`; inside, the copy keeps it as it is (`plainCopy.kind`
 * has MIXED). Encode and decode then: the copy (its text is the value's, and what the copy read is not read again)
 * or the value. A value whose text would pass `limit` bytes gives `TOO_LARGE`,
 * found before it is all copied (shared objects are copied per place, as their text repeats them); a string alone
 * never does. A copy, not `value`: what the caller does to it later does not reach the value a replay decodes, nor
 * the reverse. `plainCopy.kind` has TAGGED when a key of the copy is the bytes' tag, so that decoding its text may
 * give a Buffer where the copy has an object (decode the text then).
 */
export function plainCopy(value: unknown, limit: number): unknown {
  // (A string alone: its text, made at once, says its exact bytes.)
  if (typeof value === 'string') {
    plainCopy.kind = 0;
    return value;
  }
  // (A getter read by the copy may copy another value meanwhile: the walk's state is put back after.)
  const outerRoom = room;
  const outerKind = copyKind;
  room = limit;
  copyKind = 0;
  let copy: unknown;
  try {
    copy = copyOf(value, 0);
    plainCopy.atLeast = copy === TOO_LARGE ? limit - room : 0;
    plainCopy.kind = copyKind;
  } finally {
    room = outerRoom;
    copyKind = outerKind;
  }
  return copy;
}
/** After `TOO_LARGE`: the fewest bytes the value's text takes (more than the limit). */
plainCopy.atLeast = 0;
/** After a copy: TAGGED, MIXED, both or 0 (a copy to take as it is). */
plainCopy.kind = 0;

function copyOf(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
      room -= value.length + 2;
      return room < 0 ? TOO_LARGE : value;
    case 'boolean':
      room -= 4;
      return room < 0 ? TOO_LARGE : value;
    case 'number':
      room -= 1;
      return room < 0 ? TOO_LARGE : Number.isFinite(value) ? (value === 0 ? 0 : value) : null;
    case 'object':
      break;
    default:
      return NOT_PLAIN;
  }
  if (value === null) {
    room -= 4;
    return room < 0 ? TOO_LARGE : null;
  }
  if (depth >= MAX_SCAN_DEPTH) return NOT_PLAIN;
  const proto: unknown = Object.getPrototypeOf(value);
  if (Array.isArray(value)) {
    // (Read once, as JSON reads it.)
    const length: unknown = value.length;
    if (
      proto !== Array.prototype ||
      typeof length !== 'number' ||
      !Number.isInteger(length) ||
      length < 0 ||
      typeof (value as { toJSON?: unknown }).toJSON === 'function'
    )
      return NOT_PLAIN;
    // Its brackets and commas, and (not counted yet: each item counts its own) at least a byte per item.
    if (2 * length + 1 > room) {
      room -= 2 * length + 1;
      return TOO_LARGE;
    }
    room -= length + 1;
    const out: unknown[] = [];
    for (let i = 0; i < length; i++) {
      // (An index its prototype holds would take the item: JSON's array has it as its own.)
      if (i in out) return NOT_PLAIN;
      const item: unknown = value[i];
      const kind = typeof item;
      if (item === undefined || kind === 'function' || kind === 'symbol') {
        room -= 4;
        out.push(null);
      } else {
        const copied = copyOf(item, depth + 1);
        if (copied === TOO_LARGE) return copied;
        if (copied === NOT_PLAIN) {
          copyKind |= MIXED;
          out.push(item);
        } else out.push(copied);
      }
    }
    return room < 0 ? TOO_LARGE : out;
  }
  if ((proto !== Object.prototype && proto !== null) || typeof (value as { toJSON?: unknown }).toJSON === 'function')
    return NOT_PLAIN;
  // Its own enumerable properties, each read once, as own data properties (as JSON.parse defines them: no setter of
  // the prototype's runs), in JSON's order; then each value made as JSON makes it, in place.
  const out: Record<string | symbol, unknown> = { ...value };
  // Its braces, less the comma its keys count one too many.
  room -= 1;
  const keys = Object.keys(out);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const item = out[key];
    const kind = typeof item;
    if (item === undefined || kind === 'function' || kind === 'symbol') {
      delete out[key];
      continue;
    }
    if (key === BUFFER_TAG) copyKind |= TAGGED;
    // (Its text: the key quoted, a colon and a comma.)
    room -= key.length + 4;
    if (kind === 'string') room -= (item as string).length + 2;
    else if (kind === 'boolean') room -= 4;
    else if (kind === 'number') {
      room -= 1;
      if (item === 0) out[key] = 0;
      else if (!Number.isFinite(item)) out[key] = null;
    } else {
      const copied = copyOf(item, depth + 1);
      if (copied === TOO_LARGE) return copied;
      if (copied === NOT_PLAIN) {
        copyKind |= MIXED;
        // (Kept as it is: JSON may leave its key out, a toJSON's undefined.)
        room += key.length + 4;
      } else out[key] = copied;
    }
    if (room < 0) return TOO_LARGE;
  }
  // (Keyed by a symbol: JSON leaves it out.)
  for (const symbol of Object.getOwnPropertySymbols(out)) delete out[symbol];
  return room < 0 ? TOO_LARGE : out;
}

/** A `plainCopy`'s text by `jsonCodec`, refused past `limit` bytes as `encodeChecked` refuses. */
export function encodeCopy(copy: unknown, limit: number, what: string | (() => string)): string {
  return bounded(JSON.stringify(copy), limit, what) as string;
}

/** `what`, of session `sid` if given: "output of session \"k@1-0\"". */
function named(what: string | (() => string), sid: string | undefined): string {
  const text = typeof what === 'function' ? what() : what;
  return sid === undefined ? text : `${text} ${JSON.stringify(sid)}`;
}
