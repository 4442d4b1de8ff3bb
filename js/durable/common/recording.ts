// A recording of a stream function's sessions: what `exportRecording` (redis/clients/recording-export.ts) read from
// Redis, or `postgresRecording` (postgres/clients/recording.ts) from Postgres, as plain JSON; the checks that a
// recording read back from a file (or made by hand) is one; and what both exports share: their options, and a
// partition's recording made from what a backend read (stream fields, as stored.ts reads them). Bytes are kept as
// written (base64), so a recording is exact whatever the codec: the replay gives the handler the same bytes, and
// compares outputs byte for byte. Nothing here reads a server or a clock.
import type { HandlerFailure } from './outputs';
import { describe, invalidType, recordingInvalidError, recordingTooLargeError } from '../../errors';
import { integerOption } from '../../validate';
import { checkKey, fnv1a } from './keys';

/** The value of `Recording.format`. */
export const RECORDING_FORMAT = 'velo-stream-recording';
/** The version of the format this release writes and reads. */
export const RECORDING_VERSION = 1;

/** An event a producer appended (fields `k`, `v`). */
export interface RecordedEvent {
  /** Its entry id, `<ms>-<seq>`: the ms is the server's clock when it was appended, the time the session rule reads. */
  readonly id: string;
  /** The key. */
  readonly key: string;
  /** Its bytes as the function's codec encoded them, base64. */
  readonly v: string;
}

/** A close marker the owner wrote (fields `k`, `c`, `r`); a tick is one with `key` and `close` empty. */
export interface RecordedMarker {
  /** Its entry id. */
  readonly id: string;
  /** The key of the session it closes (empty for a tick). */
  readonly key: string;
  /** The sid of the session it closes (empty for a tick). */
  readonly close: string;
  /** `age` for an age marker. */
  readonly reason?: string;
}

/** A timer's wake-up the owner wrote (fields `k`, `w`, `d`, `v`). */
export interface RecordedWake {
  /** Its entry id. */
  readonly id: string;
  /** The key of the session that made the timer. */
  readonly key: string;
  /** `<sid> <timer id>`. */
  readonly wake: string;
  /** The timer's due time, ms (absent in wake-ups of older versions). */
  readonly due?: number;
  /** The timer's payload, base64. */
  readonly v: string;
}

/** An entry of a partition's input, as it is in the log. */
export type RecordedEntry = RecordedEvent | RecordedMarker | RecordedWake;

/** An output of a session, as the output stream holds it. */
export interface RecordedOutput {
  /** Its output entry id. */
  readonly id: string;
  /** Its session: `<key>@<id of the session's first input entry>`. */
  readonly sid: string;
  /** The key. */
  readonly key: string;
  /** 1 for the session's first output. */
  readonly seq: number;
  /** The output's bytes, base64 (absent for a failure). */
  readonly v?: string;
  /** The session's failure, as stored (absent for a value). */
  readonly error?: HandlerFailure;
}

/** Where a session ended, as the worker kept it with `checkReplay`. */
export interface RecordedEnd {
  /** The session. */
  readonly sid: string;
  /** Why its input ended: `idle`, `age`, `events`, `decode`, `throw` or `return`. */
  readonly reason: string;
  /** The last input it took: an entry id, `t<n>` for its n-th timer, or empty (unknown). */
  readonly last: string;
}

/** What a recording holds of one partition. */
export interface RecordedPartition {
  /** The partition's number. */
  readonly partition: number;
  /**
   * The first input entry id recorded: what came before was trimmed (or is before `since`), so a session whose
   * first entry is before it cannot be replayed.
   */
  readonly from: string;
  /**
   * The last entry the worker had read when the recording was made (the input's consumer group): later entries
   * are not recorded (no session had seen them). `0-0`: none.
   */
  readonly delivered: string;
  /** Whether the worker kept session ends (`checkReplay: true`): boundaries are compared only then. */
  readonly endsKept: boolean;
  /** The input from `from` to `delivered`, in log order: events, and the markers, ticks and wake-ups among them. */
  readonly input: readonly RecordedEntry[];
  /** The outputs written from `from`'s time on, in the order written. */
  readonly outputs: readonly RecordedOutput[];
  /** Where sessions ended (with `checkReplay`). */
  readonly ends: readonly RecordedEnd[];
  /** The sessions still live when the recording was made (with outputs, a checkpoint or timers), by sid. */
  readonly live: readonly string[];
}

/**
 * A function's recorded sessions: `exportRecording` (Redis) or `postgresRecording` (Postgres) makes it,
 * `replayRecording` runs a handler over it. Plain JSON, the same from either backend.
 */
export interface Recording {
  /** Always `velo-stream-recording`. */
  readonly format: typeof RECORDING_FORMAT;
  /** The format's version: 1. */
  readonly version: typeof RECORDING_VERSION;
  /** The function's name (in Redis, or in its Postgres schema). */
  readonly name: string;
  /** The function's partition count (a key's partition is `fnv1a(key) mod partitions`). */
  readonly partitions: number;
  /** The keys recorded, when the export was limited to some (else every key). */
  readonly keys?: readonly string[];
  /** The earliest entry time recorded (ms), when the export was limited to one. */
  readonly since?: number;
  /** The partitions recorded. */
  readonly parts: readonly RecordedPartition[];
}

/** The bounds of a recording read back. */
export interface RecordingBounds {
  /** Most entries (input entries, outputs, ends and live sids, each list) per partition. Default 1 000 000. */
  maxEntries?: number;
  /** Largest text `parseRecording` reads, bytes (UTF-8). Default 256 MiB. */
  maxBytes?: number;
}

/** Default `maxEntries`. */
export const MAX_ENTRIES = 1_000_000;
/** Default `maxBytes`. */
export const MAX_BYTES = 256 << 20;

const ID = /^(\d{1,15})-(\d{1,19})$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const REASONS = new Set(['idle', 'age', 'events', 'decode', 'throw', 'return']);
const LAST = /^(?:\d{1,15}-\d{1,19}|t\d{1,15}|)$/;

/** An entry id as numbers, for order: `[ms, seq]` (a seq past 2^53 loses precision; ids that close are not told apart). */
export function idParts(id: string): [number, number] {
  const dash = id.indexOf('-');
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

/** `a` before `b` (negative), the same (0), after (positive). */
export function compareIds(a: string, b: string): number {
  const [am, as] = idParts(a);
  const [bm, bs] = idParts(b);
  return am - bm || (as < bs ? -1 : as > bs ? 1 : 0);
}

/** The id of a sid's first entry (`<key>@<id>`), and its key. */
export function splitSid(sid: string): { key: string; first: string } {
  const at = sid.lastIndexOf('@');
  return { key: sid.slice(0, at), first: sid.slice(at + 1) };
}

/** Reads what a field holds, refusing what is not a plain value of JSON. */
class Checker {
  constructor(readonly maxEntries: number) {}

  fail(path: string, why: string): never {
    throw recordingInvalidError(`Not a recording: ${path} ${why}`);
  }

  object(value: unknown, path: string): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(path, 'must be an object');
    return value as Record<string, unknown>;
  }

  /** Only the fields named: another is a misspelt or foreign one. */
  fields(o: Record<string, unknown>, path: string, known: readonly string[]): void {
    for (const name of Object.keys(o)) {
      if (!known.includes(name)) this.fail(`${path}.${name}`, `is not a field of the format (known: ${known.join(', ')})`);
    }
  }

  array(value: unknown, path: string): readonly unknown[] {
    if (!Array.isArray(value)) this.fail(path, 'must be an array');
    if (value.length > this.maxEntries) {
      throw recordingTooLargeError(
        `The recording's ${path} has ${value.length} items, more than maxEntries (${this.maxEntries}): raise it to read this recording`,
      );
    }
    return value;
  }

  string(value: unknown, path: string, max = 1 << 20): string {
    if (typeof value !== 'string') this.fail(path, 'must be a string');
    if (value.length > max) this.fail(path, `is longer than ${max} characters`);
    return value;
  }

  integer(value: unknown, path: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(path, `must be an integer from ${min} to ${max}`);
    }
    return value;
  }

  id(value: unknown, path: string): string {
    const id = this.string(value, path, 40);
    if (!ID.test(id)) this.fail(path, `must be an entry id <ms>-<seq>, not ${JSON.stringify(id)}`);
    return id;
  }

  key(value: unknown, path: string, empty = false): string {
    const key = this.string(value, path, 4096);
    if (empty && key === '') return key;
    try {
      return checkKey(key);
    } catch (error) {
      this.fail(path, `is not a key: ${(error as Error).message}`);
    }
  }

  sid(value: unknown, path: string): string {
    const sid = this.string(value, path, 4200);
    const { key, first } = splitSid(sid);
    if (!sid.includes('@') || !ID.test(first)) this.fail(path, `must be a sid <key>@<entry id>, not ${JSON.stringify(sid)}`);
    this.key(key, `${path} (its key)`);
    return sid;
  }

  base64(value: unknown, path: string, maxBytes: number): string {
    const text = this.string(value, path, Math.ceil(maxBytes / 3) * 4 + 4);
    if (!BASE64.test(text)) this.fail(path, 'must be base64 (the bytes as written)');
    return text;
  }

  failure(value: unknown, path: string): HandlerFailure {
    const o = this.object(value, path);
    this.fields(o, path, ['name', 'message', 'code']);
    const name = this.string(o.name, `${path}.name`);
    const message = this.string(o.message, `${path}.message`);
    if (o.code === undefined) return { name, message };
    return { name, message, code: this.string(o.code, `${path}.code`) };
  }
}

/** The bytes an event or output may have (the worker's largest, 512 MiB). */
const MAX_VALUE_BYTES = 512 << 20;

function checkEntry(c: Checker, value: unknown, path: string): RecordedEntry {
  const o = c.object(value, path);
  const id = c.id(o.id, `${path}.id`);
  if (o.close !== undefined) {
    c.fields(o, path, ['id', 'key', 'close', 'reason']);
    const close = c.string(o.close, `${path}.close`, 4200);
    const key = c.key(o.key, `${path}.key`, close === '');
    if (close !== '') c.sid(close, `${path}.close`);
    const marker: RecordedMarker = { id, key, close };
    return o.reason === undefined ? marker : { ...marker, reason: c.string(o.reason, `${path}.reason`, 64) };
  }
  if (o.wake !== undefined) {
    c.fields(o, path, ['id', 'key', 'wake', 'due', 'v']);
    const wake: RecordedWake = {
      id,
      key: c.key(o.key, `${path}.key`),
      wake: c.string(o.wake, `${path}.wake`, 4300),
      v: c.base64(o.v, `${path}.v`, MAX_VALUE_BYTES),
    };
    return o.due === undefined ? wake : { ...wake, due: c.integer(o.due, `${path}.due`, 0, Number.MAX_SAFE_INTEGER) };
  }
  c.fields(o, path, ['id', 'key', 'v']);
  return { id, key: c.key(o.key, `${path}.key`), v: c.base64(o.v, `${path}.v`, MAX_VALUE_BYTES) };
}

function checkOutput(c: Checker, value: unknown, path: string): RecordedOutput {
  const o = c.object(value, path);
  c.fields(o, path, ['id', 'sid', 'key', 'seq', 'v', 'error']);
  const sid = c.sid(o.sid, `${path}.sid`);
  const key = c.key(o.key, `${path}.key`);
  if (splitSid(sid).key !== key) c.fail(`${path}.key`, `must be the key of its sid (${JSON.stringify(sid)})`);
  const base = { id: c.id(o.id, `${path}.id`), sid, key, seq: c.integer(o.seq, `${path}.seq`, 1, Number.MAX_SAFE_INTEGER) };
  if ((o.v === undefined) === (o.error === undefined)) c.fail(path, 'must have either v (a value) or error (a failure)');
  return o.v !== undefined
    ? { ...base, v: c.base64(o.v, `${path}.v`, MAX_VALUE_BYTES) }
    : { ...base, error: c.failure(o.error, `${path}.error`) };
}

function checkPart(c: Checker, value: unknown, path: string, partitions: number): RecordedPartition {
  const o = c.object(value, path);
  c.fields(o, path, ['partition', 'from', 'delivered', 'endsKept', 'input', 'outputs', 'ends', 'live']);
  const partition = c.integer(o.partition, `${path}.partition`, 0, partitions - 1);
  const from = c.id(o.from, `${path}.from`);
  const delivered = c.id(o.delivered, `${path}.delivered`);
  if (typeof o.endsKept !== 'boolean') c.fail(`${path}.endsKept`, 'must be a boolean');
  const input = c.array(o.input, `${path}.input`).map((e, i) => checkEntry(c, e, `${path}.input[${i}]`));
  for (let i = 0; i < input.length; i++) {
    const id = input[i].id;
    if (i > 0 && compareIds(input[i - 1].id, id) >= 0)
      c.fail(`${path}.input[${i}].id`, `(${id}) must come after the entry before it`);
    if (compareIds(id, from) < 0) c.fail(`${path}.input[${i}].id`, `(${id}) is before the partition's from (${from})`);
    if (compareIds(id, delivered) > 0)
      c.fail(`${path}.input[${i}].id`, `(${id}) is after the partition's delivered (${delivered})`);
  }
  const outputs = c.array(o.outputs, `${path}.outputs`).map((e, i) => checkOutput(c, e, `${path}.outputs[${i}]`));
  const seen = new Set<string>();
  for (const [i, out] of outputs.entries()) {
    const name = `${out.seq} ${out.sid}`;
    if (seen.has(name)) c.fail(`${path}.outputs[${i}]`, `repeats output ${out.seq} of ${out.sid}`);
    seen.add(name);
  }
  const ended = new Set<string>();
  const ends = c.array(o.ends, `${path}.ends`).map((e, i): RecordedEnd => {
    const at = `${path}.ends[${i}]`;
    const end = c.object(e, at);
    c.fields(end, at, ['sid', 'reason', 'last']);
    const sid = c.sid(end.sid, `${at}.sid`);
    if (ended.has(sid)) c.fail(`${at}.sid`, `repeats the end of ${sid}`);
    ended.add(sid);
    // (A reason of another version is kept as written: compared as a string.)
    const reason = c.string(end.reason, `${at}.reason`, 64);
    if (!/^[a-z]+$/.test(reason)) c.fail(`${at}.reason`, `must be a word such as ${[...REASONS].join(', ')}`);
    const last = c.string(end.last, `${at}.last`, 40);
    if (!LAST.test(last)) c.fail(`${at}.last`, `must be an entry id, t<n> or empty, not ${JSON.stringify(last)}`);
    return { sid, reason, last };
  });
  const live = c.array(o.live, `${path}.live`).map((s, i) => c.sid(s, `${path}.live[${i}]`));
  return { partition, from, delivered, endsKept: o.endsKept, input, outputs, ends, live };
}

/**
 * Checks that `value` is a recording (as `exportRecording` makes it and JSON gives it back): every field of the
 * format with its type, ids in order, keys and sids well formed, bytes in base64; a copy of it.
 * @throws {Error} `ERR_VELO_RECORDING_INVALID` naming the first field that is not right.
 * @throws {RangeError} `ERR_VELO_RECORDING_TOO_LARGE` for a list longer than `maxEntries`.
 */
export function checkRecording(value: unknown, bounds: RecordingBounds = {}): Recording {
  const c = new Checker(bounds.maxEntries ?? MAX_ENTRIES);
  const o = c.object(value, 'the recording');
  if (o.format !== RECORDING_FORMAT) c.fail('format', `must be ${JSON.stringify(RECORDING_FORMAT)}`);
  if (o.version !== RECORDING_VERSION) {
    c.fail(
      'version',
      `must be ${RECORDING_VERSION} (this release reads version ${RECORDING_VERSION} only), not ${JSON.stringify(o.version)}`,
    );
  }
  c.fields(o, 'the recording', ['format', 'version', 'name', 'partitions', 'keys', 'since', 'parts']);
  const name = c.string(o.name, 'name', 200);
  if (!/^[^{}\s]{1,200}$/.test(name)) c.fail('name', 'must be 1-200 characters without braces or whitespace');
  const partitions = c.integer(o.partitions, 'partitions', 1, 16384);
  const parts = c.array(o.parts, 'parts').map((p, i) => checkPart(c, p, `parts[${i}]`, partitions));
  const numbers = new Set<number>();
  for (const [i, p] of parts.entries()) {
    if (numbers.has(p.partition)) c.fail(`parts[${i}].partition`, `repeats partition ${p.partition}`);
    numbers.add(p.partition);
  }
  const recording: Recording = { format: RECORDING_FORMAT, version: RECORDING_VERSION, name, partitions, parts };
  const keys = o.keys === undefined ? undefined : c.array(o.keys, 'keys').map((k, i) => c.key(k, `keys[${i}]`));
  const since = o.since === undefined ? undefined : c.integer(o.since, 'since', 0, Number.MAX_SAFE_INTEGER);
  return { ...recording, ...(keys === undefined ? {} : { keys }), ...(since === undefined ? {} : { since }) };
}

/**
 * Reads a recording from its JSON text (a file `velo-replay export` wrote, or `JSON.stringify` of a recording).
 * @throws {RangeError} `ERR_VELO_RECORDING_TOO_LARGE` for text longer than `maxBytes`, or a list longer than `maxEntries`.
 * @throws {Error} `ERR_VELO_RECORDING_INVALID` for text that is not JSON, or not a recording (the message names the field).
 */
export function parseRecording(text: string | Buffer, bounds: RecordingBounds = {}): Recording {
  const maxBytes = bounds.maxBytes ?? MAX_BYTES;
  const size = typeof text === 'string' ? Buffer.byteLength(text) : Buffer.isBuffer(text) ? text.length : -1;
  if (size < 0) throw recordingInvalidError(`Not a recording: parseRecording() takes a string or a Buffer`);
  if (size > maxBytes) {
    throw recordingTooLargeError(
      `The recording is ${size} bytes, more than maxBytes (${maxBytes}): raise it to read this recording`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch (error) {
    throw recordingInvalidError(`Not a recording: the text is not JSON (${(error as Error).message})`, error);
  }
  return checkRecording(value, bounds);
}

/** The options both exports share (`exportRecording`, `postgresRecording`): what to record, and the bounds. */
export interface RecordingChoice {
  /** Which partitions to record. Default: every one (or, with `keys`, those of the keys). */
  only?: readonly number[];
  /** Record only these keys' entries, outputs and sessions. Default: every key. */
  keys?: readonly string[];
  /**
   * Record from this time on (ms since the epoch, the server's clock), as a trim at that time would leave the log:
   * the entries before it are left out, and so are the ends of sessions that began before it. Such a session is
   * reported as not replayable if the recording holds its later entries or outputs, or it was live; one wholly
   * before it leaves no trace. Default: the whole retained input.
   */
  since?: number;
  /**
   * Most input entries, most session ends and most live sessions per partition (each, of the keys recorded): past
   * one the export fails (nothing is cut). Default 1 000 000.
   */
  maxEntries?: number;
  /** Most outputs per partition: past it the export fails. Default `maxEntries`. */
  maxOutputs?: number;
}

/** A recording's options, checked: the partitions to read, the keys (null: every key), the bounds. */
export interface CheckedChoice {
  readonly chosen: readonly number[];
  readonly keys: readonly string[] | undefined;
  readonly only: ReadonlySet<string> | null;
  readonly since: number;
  readonly maxEntries: number;
  readonly maxOutputs: number;
}

/** Checks the options of what to record (`what`: the export's name, for the messages), for `partitions` partitions. */
export function checkChoice(what: string, choice: RecordingChoice, partitions: number): CheckedChoice {
  const { only, keys, since = 0, maxEntries = MAX_ENTRIES } = choice;
  const maxOutputs = choice.maxOutputs ?? maxEntries;
  integerOption(what, 'since', since, 0, Number.MAX_SAFE_INTEGER);
  integerOption(what, 'maxEntries', maxEntries, 1, 1e9);
  integerOption(what, 'maxOutputs', maxOutputs, 1, 1e9);
  // (Checked on copies: narrowing a readonly array by Array.isArray makes its items `any`.)
  const givenKeys: unknown = keys;
  const givenOnly: unknown = only;
  if (givenKeys !== undefined && !Array.isArray(givenKeys))
    throw invalidType(`${what}: options.keys must be an array of keys, not ${describe(keys)}`);
  if (givenOnly !== undefined && !Array.isArray(givenOnly))
    throw invalidType(`${what}: options.only must be an array of partitions, not ${describe(only)}`);
  const keyList = keys?.map((k) => checkKey(k));
  only?.forEach((p, i) => integerOption(what, `only[${i}]`, p, 0, partitions - 1));
  let chosen = only === undefined ? Array.from({ length: partitions }, (_, p) => p) : [...new Set(only)].sort((a, b) => a - b);
  if (keyList !== undefined) {
    const of = new Set(keyList.map((k) => fnv1a(k) % partitions));
    chosen = chosen.filter((p) => of.has(p));
  }
  return { chosen, keys: keyList, only: keyList === undefined ? null : new Set(keyList), since, maxEntries, maxOutputs };
}

/**
 * The error of an export that found more than `max` of `items` to record in `where` (`ERR_VELO_RECORDING_TOO_LARGE`):
 * `option` is the bound (`maxEntries`: a partition's input entries, session ends and live sessions, each;
 * `maxOutputs`: its outputs), counted among the keys recorded.
 */
export function tooManyError(
  what: string,
  where: string,
  max: number,
  items: 'input entries' | 'session ends' | 'live sessions' | 'outputs',
): RangeError {
  const option = items === 'outputs' ? 'maxOutputs' : 'maxEntries';
  return recordingTooLargeError(
    `${what}: ${where} has more than ${max} ${items} to record (${option} bounds a partition's ${option === 'maxOutputs' ? 'outputs' : 'input entries, session ends and live sessions, each'}): record fewer (keys, since, only) or raise ${option}`,
  );
}

/** A stream entry's fields, by name (as stored.ts's `entryFields` reads them). */
export type EntryFields = ReadonlyMap<string, Buffer>;

function base64(data: Buffer | undefined): string {
  return (data ?? Buffer.alloc(0)).toString('base64');
}

/** An input entry's fields (`k`, and `c` `r` for a marker, `w` `d` `v` for a wake-up, `v` for an event) as the recording keeps them. */
export function recordedEntry(id: string, f: EntryFields): RecordedEntry {
  const key = f.get('k')?.toString() ?? '';
  const close = f.get('c');
  if (close !== undefined) {
    const reason = f.get('r')?.toString();
    return reason === undefined ? { id, key, close: close.toString() } : { id, key, close: close.toString(), reason };
  }
  const wake = f.get('w');
  if (wake !== undefined) {
    const due = Number(f.get('d')?.toString());
    const entry = { id, key, wake: wake.toString(), v: base64(f.get('v')) };
    return f.has('d') && Number.isSafeInteger(due) && due >= 0 ? { ...entry, due } : entry;
  }
  return { id, key, v: base64(f.get('v')) };
}

/**
 * An output's fields (`sid`, `seq`, `k`, and `v` or `e`) as the recording keeps them (a failure's JSON parsed; one
 * that is not JSON kept as its text).
 */
export function recordedOutput(id: string, f: EntryFields): RecordedOutput {
  const base = {
    id,
    sid: f.get('sid')?.toString() ?? '',
    key: f.get('k')?.toString() ?? '',
    seq: Number(f.get('seq')?.toString()),
  };
  const e = f.get('e');
  if (e === undefined) return { ...base, v: base64(f.get('v')) };
  let error: HandlerFailure;
  try {
    const parsed = JSON.parse(e.toString()) as Partial<HandlerFailure>;
    error = {
      name: String(parsed.name),
      message: String(parsed.message),
      ...(typeof parsed.code === 'string' ? { code: parsed.code } : {}),
    };
  } catch {
    error = { name: 'Error', message: e.toString() };
  }
  return { ...base, error };
}

/** What an export read of one partition, before the key filter: the recording's fields, the ends as stored. */
export interface PartitionRead {
  readonly partition: number;
  readonly from: string;
  readonly delivered: string;
  readonly endsKept: boolean;
  readonly input: readonly RecordedEntry[];
  readonly outputs: readonly RecordedOutput[];
  /** `[sid, "<reason> <last input>"]`. */
  readonly ends: readonly (readonly [string, string])[];
  readonly live: Iterable<string>;
}

/**
 * Whether session `sid` began before entry `from` (its first entry is): a recording leaves its end out, as a trim
 * does. Each export reads only the other ends, so that its bounds count what it keeps.
 */
export function beganBefore(sid: string, from: string): boolean {
  return compareIds(splitSid(sid).first, from) < 0;
}

/** A partition's recording from what was read: the keys' entries, outputs and sessions only (`only` null: every key). */
export function recordedPartition(read: PartitionRead, only: ReadonlySet<string> | null): RecordedPartition {
  const wanted = (key: string) => only === null || only.has(key);
  const mine = (sid: string) => wanted(splitSid(sid).key) && sid.includes('@');
  const ends = read.ends.map(([sid, value]): RecordedEnd => {
    const space = value.indexOf(' ');
    return { sid, reason: space < 0 ? value : value.slice(0, space), last: space < 0 ? '' : value.slice(space + 1) };
  });
  return {
    partition: read.partition,
    from: read.from,
    delivered: read.delivered,
    endsKept: read.endsKept,
    // (With a key filter, ticks are left out with the other keys' entries: they name no session.)
    input: read.input.filter((e) => (e.key === '' ? only === null : wanted(e.key))),
    outputs: read.outputs.filter((out) => mine(out.sid)),
    // Ends of sessions that began before `from` are left out, as a trim removes them with the session's first entry
    // (`since` records what a trim at that time would leave): a session wholly before it leaves no trace, and one
    // that went on past it is reported as not replayable by what the recording holds of it (entries, outputs, live).
    ends: ends.filter((e) => mine(e.sid) && !beganBefore(e.sid, read.from)),
    live: [...read.live].filter(mine).sort(),
  };
}

/** The recording of `parts`, made with the checked options `choice`. */
export function recordingOf(name: string, partitions: number, choice: CheckedChoice, parts: RecordedPartition[]): Recording {
  return {
    format: RECORDING_FORMAT,
    version: RECORDING_VERSION,
    name,
    partitions,
    ...(choice.keys === undefined ? {} : { keys: choice.keys }),
    ...(choice.since > 0 ? { since: choice.since } : {}),
    parts,
  };
}
