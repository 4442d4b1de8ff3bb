// What velo-stream/redis stores, as bytes: the fields of input entries and checkpoints' values, read and written
// by the Redis log (redis-log.ts) and the in-memory one (memory-log.ts) alike, so the two cannot parse apart.
import { NO_VERSION } from '../rules/versions';
import type {
  JournalEntry,
  JournalRecord,
  InputEntry,
  KeptState,
  OutputMark,
  OutputPlace,
  OutputRecord,
  SessionEnd,
  SessionOpening,
  Snapshot,
  StoredKeyState,
} from './transport';
import type { WorkerAdvert } from '../rules/versions';
import type { Debounce } from '../../core/debounce';

/** A session's end as stored (checkReplay): `<reason> <last input>`, compared as a string with a later end of its sid. */
export function endValue(end: SessionEnd): string {
  return `${end.reason} ${end.last}`;
}

/** A stored end, read back for a divergence's `committed` (a reason of another version is passed on as written). */
export function parseEnd(value: string): SessionEnd {
  const space = value.indexOf(' ');
  return {
    reason: (space < 0 ? value : value.slice(0, space)) as SessionEnd['reason'],
    last: space < 0 ? '' : value.slice(space + 1),
  };
}

/**
 * A checkpoint as stored: a JSON header (`seq`, `last`, `events`, `timers`, `pending`: `[id, time, payload
 * base64, key?]` each, and `input`: the last input taken, when known) on one line, then the state's bytes. A state the
 * codec gave as a string stays one (node-redis writes it as UTF-8): a Buffer argument splits the commit's command
 * into separate writes, which cost the worker more than the copy.
 */
export function snapshotValue(c: Snapshot): Buffer | string {
  const pending = c.pending?.map(([id, time, payload, key]) => {
    const timer = [id, time, Buffer.from(payload).toString('base64')];
    return key === undefined ? timer : [...timer, key];
  });
  const base = { seq: c.seq, last: c.lastTime, events: c.events, timers: c.timers ?? 0, pending: pending ?? [] };
  // (`calls` only when the session journaled any: a snapshot of a session without reads as before.)
  const fields = c.calls === undefined || c.calls === 0 ? base : { ...base, calls: c.calls };
  const head = `${JSON.stringify(c.lastInput === undefined ? fields : { ...fields, input: c.lastInput })}\n`;
  return typeof c.state === 'string' ? head + c.state : Buffer.concat([Buffer.from(head), c.state]);
}

export function parseSnapshot(sid: string, value: Buffer): Snapshot {
  const key = sid.slice(0, sid.lastIndexOf('@'));
  const nl = value.indexOf(10);
  let head: unknown;
  try {
    head = JSON.parse(value.subarray(0, nl < 0 ? value.length : nl).toString());
  } catch (error) {
    return unreadableSnapshot(sid, key, error);
  }
  // Read from Redis (a corrupt or hand-edited value): a header that does not say where the session was is the
  // session's failure at its restore, never a wedged partition or a session restored at a wrong place.
  const h = head as {
    seq?: unknown;
    last?: unknown;
    events?: unknown;
    timers?: unknown;
    pending?: unknown;
    input?: unknown;
    calls?: unknown;
  } | null;
  const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const pendingOk = (v: unknown) =>
    Array.isArray(v) &&
    v.every(
      (t) =>
        Array.isArray(t) &&
        (t.length === 3 || (t.length === 4 && typeof t[3] === 'string')) &&
        count(t[0]) &&
        typeof t[1] === 'number' &&
        Number.isFinite(t[1]) &&
        typeof t[2] === 'string',
    );
  if (
    nl < 0 ||
    h === null ||
    typeof h !== 'object' ||
    !count(h.seq) ||
    !count(h.events) ||
    typeof h.last !== 'number' ||
    !Number.isFinite(h.last) ||
    (h.timers !== undefined && !count(h.timers)) ||
    (h.pending !== undefined && !pendingOk(h.pending)) ||
    (h.input !== undefined && typeof h.input !== 'string') ||
    (h.calls !== undefined && !count(h.calls))
  ) {
    return unreadableSnapshot(
      sid,
      key,
      new Error(
        `its header is not { seq, last, events, timers, pending }: ${JSON.stringify(value.subarray(0, Math.min(nl < 0 ? value.length : nl, 120)).toString())}`,
      ),
    );
  }
  const pending = ((h.pending ?? []) as [number, number, string, string?][]).map(([id, time, payload, key]) =>
    key === undefined
      ? ([id, time, Buffer.from(payload, 'base64')] as const)
      : ([id, time, Buffer.from(payload, 'base64'), key] as const),
  );
  return {
    sid,
    key,
    seq: h.seq as number,
    lastTime: h.last,
    events: h.events as number,
    state: value.subarray(nl + 1),
    timers: (h.timers as number | undefined) ?? 0,
    pending,
    ...(h.input === undefined ? {} : { lastInput: h.input }),
    ...(h.calls === undefined ? {} : { calls: h.calls as number }),
  };
}

/** A journal entry's field, `<sid> <at>` (`at`: its first record's; a sid has no space, its key may: the last splits). */
export function journalField(sid: string, at: string): string {
  return `${sid} ${at}`;
}

/**
 * A journal entry's value as stored: its records in order, each a header line `<kind><at> <bytes> <yielded> <name>`
 * (`bytes`: its payload's length; `yielded`: `JournalRecord.yielded`) and then its payload. One string when every
 * payload is one (the common case: the JSON codec), else bytes.
 */
export function journalValue(entry: JournalEntry): Buffer | string {
  const records = entry.records;
  let text = '';
  let i = 0;
  for (; i < records.length; i++) {
    const r = records[i];
    if (typeof r.payload !== 'string') break;
    text += `${r.kind}${r.at} ${r.bytes ?? Buffer.byteLength(r.payload)} ${r.yielded ?? 0} ${r.name}\n${r.payload}`;
  }
  if (i === records.length) return text;
  const parts: Buffer[] = [Buffer.from(text)];
  for (; i < records.length; i++) {
    const r = records[i];
    const payload = typeof r.payload === 'string' ? Buffer.from(r.payload) : r.payload;
    parts.push(Buffer.from(`${r.kind}${r.at} ${payload.length} ${r.yielded ?? 0} ${r.name}\n`), payload);
  }
  return Buffer.concat(parts);
}

/**
 * A journal entry read back (`field`, `value` as stored), or undefined for one that cannot be read (whole: a
 * replay then calls again from its first record's place, as if it had not been written).
 */
export function parseJournal(field: string, value: Buffer): JournalEntry | undefined {
  const space = field.lastIndexOf(' ');
  if (space <= 0) return undefined;
  const records: JournalRecord[] = [];
  let i = 0;
  while (i < value.length) {
    const kind = String.fromCharCode(value[i]);
    const nl = value.indexOf(10, i);
    if (nl < 0 || (kind !== 'v' && kind !== 'u' && kind !== 'e' && kind !== 'x')) return undefined;
    const head = value.toString('utf8', i + 1, nl);
    const s1 = head.indexOf(' ');
    const s2 = s1 < 0 ? -1 : head.indexOf(' ', s1 + 1);
    const s3 = s2 < 0 ? -1 : head.indexOf(' ', s2 + 1);
    const size = s2 < 0 ? NaN : Number(head.slice(s1 + 1, s2));
    const yielded = s3 < 0 ? NaN : Number(head.slice(s2 + 1, s3));
    if (s1 <= 0 || !Number.isSafeInteger(size) || size < 0 || nl + 1 + size > value.length) return undefined;
    if (!Number.isSafeInteger(yielded) || yielded < 0) return undefined;
    const payload = value.subarray(nl + 1, nl + 1 + size);
    records.push({ at: head.slice(0, s1), kind, name: head.slice(s3 + 1), payload, yielded });
    i = nl + 1 + size;
  }
  if (records.length === 0 || records[0].at !== field.slice(space + 1)) return undefined;
  return { sid: field.slice(0, space), records };
}

/**
 * A key's kept state as stored (`keyState`): a JSON header `{"sid","v"}` (the session whose end kept it, and its
 * version when it has one) on one line, then the state's bytes by the function's codec.
 */
export function keptValue(k: KeptState): Buffer | string {
  const head = `${JSON.stringify(k.version === undefined || k.version === '' ? { sid: k.sid } : { sid: k.sid, v: k.version })}\n`;
  return typeof k.state === 'string' ? head + k.state : Buffer.concat([Buffer.from(head), k.state]);
}

/** A kept state read back; one whose header cannot be read comes back `unreadable`. */
export function parseKept(value: Buffer): StoredKeyState {
  const nl = value.indexOf(10);
  let head: unknown;
  try {
    head = nl < 0 ? null : JSON.parse(value.subarray(0, nl).toString());
  } catch {
    head = null;
  }
  const sid = (head as { sid?: unknown } | null)?.sid;
  if (typeof sid !== 'string') {
    const shown = JSON.stringify(value.subarray(0, Math.min(nl < 0 ? value.length : nl, 120)).toString());
    return { sid: '', state: Buffer.alloc(0), unreadable: new Error(`its header is not { sid }: ${shown}`) };
  }
  const version = (head as { v?: unknown }).v;
  return typeof version === 'string' ? { sid, state: value.subarray(nl + 1), version } : { sid, state: value.subarray(nl + 1) };
}

/**
 * A session's opening as stored (hash `:opened`, field its sid): JSON `{"v","idle","age","events","timers","m"}`, its
 * version (absent: none set), its caps (0: none), and, migrated, the version it was adopted from (and `a`, `after`).
 */
export function openingValue(o: SessionOpening): string {
  const { idleTimeout: idle, maxSessionAge: age, maxSessionEvents: events, maxSessionTimers: timers } = o.limits;
  const value: Record<string, unknown> =
    o.version === '' ? { idle, age, events, timers } : { v: o.version, idle, age, events, timers };
  if (o.replaces !== undefined) value.m = o.replaces;
  if (o.after !== undefined) value.a = o.after;
  if (o.keyState !== undefined) value.k = o.keyState;
  // `d`: 0 without debounce, else its wait, edge (`l`: 1 leading) and maxDelay (`x`, absent: none).
  if (o.debounce === null) value.d = 0;
  else if (o.debounce !== undefined) {
    const { wait, leading, maxDelay } = o.debounce;
    value.d = Number.isFinite(maxDelay) ? { w: wait, l: leading ? 1 : 0, x: maxDelay } : { w: wait, l: leading ? 1 : 0 };
  }
  return JSON.stringify(value);
}

const isTime = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;

/** A stored opening's `d` read back: null (none), the debounce, or undefined (absent or unreadable: the owner's). */
function storedDebounce(d: unknown): Debounce | null | undefined {
  if (d === 0) return null;
  if (typeof d !== 'object' || d === null) return undefined;
  const { w, l, x } = d as Record<string, unknown>;
  if (!isTime(w) || (l !== 0 && l !== 1) || (x !== undefined && !isTime(x))) return undefined;
  return { wait: w, leading: l === 1, maxDelay: x ?? Infinity };
}

const isCap = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** A stored opening read back; undefined if it is not one (its session then runs as a new one would). */
export function parseOpening(sid: string, value: string): SessionOpening | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(value) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const { v = '', idle, age, events, timers, m, k, d, a } = o ?? {};
  if (typeof v !== 'string' || !isCap(idle) || !isCap(age) || !isCap(events) || !isCap(timers)) return undefined;
  const limits = { idleTimeout: idle, maxSessionAge: age, maxSessionEvents: events, maxSessionTimers: timers };
  const debounce = storedDebounce(d);
  return {
    sid,
    version: v,
    limits,
    ...(typeof m === 'string' ? { replaces: m } : {}),
    ...(Array.isArray(a) && a.length === 2 && isCap(a[0]) && isCap(a[1]) ? { after: [a[0], a[1]] as const } : {}),
    ...(k === 'migrated' || k === 'refused' ? { keyState: k } : {}),
    ...(debounce === undefined ? {} : { debounce }),
  };
}

/** A worker's advert as stored (hash `velo:{<name>}:adverts`): JSON `{"v","runs"}`. */
export function advertValue(a: WorkerAdvert): string {
  return JSON.stringify({ v: a.version, runs: a.runs });
}

/** A stored advert read back; one that cannot be read says the worker runs no version (`''` only). */
export function parseAdvert(value: string): WorkerAdvert {
  try {
    const a = JSON.parse(value) as { v?: unknown; runs?: unknown };
    if (typeof a.v === 'string' && Array.isArray(a.runs) && a.runs.every((r) => typeof r === 'string'))
      return { version: a.v, runs: a.runs };
  } catch {
    // below
  }
  return NO_VERSION;
}

/** A checkpoint whose header cannot be read: restored as nothing, its session fails (`unreadable`). */
function unreadableSnapshot(sid: string, key: string, error: unknown): Snapshot {
  return { sid, key, seq: 0, lastTime: 0, events: 0, state: Buffer.alloc(0), timers: 0, pending: [], unreadable: error };
}

/** Flat field list [f, v, f, v] of a stream entry as a map (Buffers). */
export function entryFields(list: unknown): Map<string, Buffer> {
  const map = new Map<string, Buffer>();
  if (!Array.isArray(list)) return map;
  for (let i = 0; i + 1 < list.length; i += 2) map.set(String(list[i]), list[i + 1] as Buffer);
  return map;
}

const latin1 = (value: Buffer | string): string => (typeof value === 'string' ? value : value.toString('latin1'));

/** `[id, [f, v, ...]]` entries (fields as Buffers, or all as strings; a trimmed entry's list nil) as input entries. */
export function inputEntries(raw: unknown): InputEntry[] {
  const out: InputEntry[] = [];
  for (const [id, list] of raw as [Buffer | string, unknown][]) {
    // The fields are read in place (no map per entry: this runs for every event).
    let key = '';
    let payload: Buffer | string | undefined;
    let close: string | undefined;
    let reason: string | undefined;
    let wake: string | undefined;
    let due: number | undefined;
    let traceparent: string | undefined;
    let tracestate: string | undefined;
    // A pending entry trimmed away comes back with nil fields: no key, no payload.
    if (Array.isArray(list)) {
      for (let i = 0; i + 1 < list.length; i += 2) {
        const name = list[i] as Buffer | string;
        const value = list[i + 1] as Buffer | string;
        // Field names are one byte: k(ey), v(alue), c(lose marker), r(eason), w(ake-up), d(ue time of a wake-up).
        if (name.length !== 1) continue;
        const c = typeof name === 'string' ? name.charCodeAt(0) : name[0];
        if (c === 0x6b) key = value.toString();
        else if (c === 0x76) payload = value;
        else if (c === 0x63) close = value.toString();
        else if (c === 0x72) reason = value.toString();
        else if (c === 0x77) wake = value.toString();
        else if (c === 0x64) due = Number(value.toString());
        // The producer's trace context: read only when of a length that can be one (tracing.ts checks the rest).
        else if (c === 0x74) traceparent = value.length === 55 ? latin1(value) : undefined;
        else if (c === 0x73) tracestate = value.length <= 512 ? latin1(value) : undefined;
      }
    }
    const entry: InputEntry =
      wake === undefined
        ? { id: id.toString(), key, payload, close, reason }
        : { id: id.toString(), key, payload, wake, due: due !== undefined && Number.isFinite(due) ? due : undefined };
    out.push(traceparent === undefined ? entry : { ...entry, traceparent, tracestate });
  }
  return out;
}

/**
 * The place of a session's last output written, as stored beside its mark: `"<seq> <inputs> <position>"`, `" a"`
 * when answered, and `" h<digest>"` when it has one (the seq says which output it is the place of: a later output
 * written with no place leaves it stale).
 */
export function placeValue(seq: number, at: OutputPlace, digest?: number): string {
  return `${seq} ${at[0]} ${at[1]}${at[2] === true ? ' a' : ''}${digest === undefined ? '' : ` h${digestText(digest)}`}`;
}

/** A session's mark read back: `written`, with the stored place (and digest) if it is the place of that output. */
export function parseMark(written: number, place: string | null | undefined): OutputMark {
  const m = place == null ? null : /^(\d+) (\d+) (\d+)( a)?(?: h([0-9a-f]{8}))?$/.exec(place);
  if (m === null || Number(m[1]) !== written) return { written };
  const at: OutputPlace = m[4] === undefined ? [Number(m[2]), Number(m[3])] : [Number(m[2]), Number(m[3]), true];
  return m[5] === undefined ? { written, at } : { written, at, digest: m[5] };
}

/** A checkpoint as a new owner reads it: with its session's mark (outputs written since count too). */
export function markedSnapshot(snapshot: Snapshot, mark: OutputMark | undefined): Snapshot {
  const written = { ...snapshot, written: mark?.written ?? 0 };
  if (mark?.at === undefined) return written;
  return mark.digest === undefined
    ? { ...written, writtenAt: mark.at }
    : { ...written, writtenAt: mark.at, writtenDigest: mark.digest };
}

/** The mark a checkpoint was read with (`markedSnapshot`). */
export function snapshotMark(snapshot: Snapshot): OutputMark {
  const written = snapshot.written ?? 0;
  if (snapshot.writtenAt === undefined) return { written };
  return snapshot.writtenDigest === undefined
    ? { written, at: snapshot.writtenAt }
    : { written, at: snapshot.writtenAt, digest: snapshot.writtenDigest };
}

/** The digest of no output yet (`outputsDigest`). */
export const NO_OUTPUTS = 0x811c9dc5;

/**
 * The digest of outputs `h` and then `payload` (32-bit FNV-1a over their strings' code units or their bytes, never
 * 0): two versions that yield the same outputs for an input, in the same order, give the same digest.
 */
export function outputsDigest(h: number, payload: Buffer | string): number {
  if (typeof payload === 'string') for (let i = 0; i < payload.length; i++) h = Math.imul(h ^ payload.charCodeAt(i), 0x01000193);
  else for (let i = 0; i < payload.length; i++) h = Math.imul(h ^ payload[i], 0x01000193);
  // (An output's end, so that ["ab"] and ["a", "b"] differ.)
  h = Math.imul(h ^ 0x1f, 0x01000193) >>> 0;
  return h === 0 ? 1 : h;
}

/** A digest as stored beside a mark: 8 hex digits. */
export function digestText(h: number): string {
  return h.toString(16).padStart(8, '0');
}

/** The place of each session's last output among `outputs` (`placeValue`), for those whose last output has one. */
export function lastPlaces(outputs: readonly OutputRecord[]): Map<string, string> {
  const last = new Map<string, OutputRecord>();
  for (const o of outputs) last.set(o.sid, o);
  const places = new Map<string, string>();
  for (const [sid, o] of last) if (o.at !== undefined) places.set(sid, placeValue(o.seq, o.at, o.digest));
  return places;
}

/** A key's kept state, as `readState` reads it. */
export interface KeyState<S> {
  /** The state, decoded with the function's codec: the last checkpoint of the key's last session. */
  readonly state: S;
  /** The session whose end kept it (`<key>@<id of its first entry>`). */
  readonly sid: string;
  /** Time left before the backend removes it, ms (-1: no expiry, which velo-stream never writes). */
  readonly expiresIn: number;
}
