// A session's journal: the results of its journaled calls (`ctx.run`) and the chunks of its journaled streams
// (`ctx.stream`), recorded in the fenced commits that carry its outputs, so that a replay (a takeover, a migration)
// gets each back at its place instead of calling again. The body of a call runs at least once: a crash between the
// call and the commit of its record runs it again, with the same idempotency key.
//
// Places: the session's n-th journaled call (1, 2, ..., counted from its start, and restored with its checkpoint)
// is recorded at `<n>` (a result or an error), or, streamed, at `<n>.<i>` per chunk and `<n>.end` at its end. A
// checkpoint covers the calls before it: their records are forgotten in its commit, and a restore from it asks
// no call before `calls + 1`. An ended session's records are all forgotten in the commit that ends it.
//
// Outputs: each record keeps the outputs its handler had yielded for its input before it (`JournalRecord.yielded`).
// A new version that replays a migrated session's answer in flight continues that answer only while it yields as
// many before each record it takes (and, before its first call past them, as many as the old version wrote): else
// it `restart`s it, and its outputs for it are written whole after the old ones (session-writes.ts).
//
// Entries: a session's records of one commit are stored as one (`JournalEntry`: a hash field, a row), which the
// log writes and forgets whole: per call, a commit costs a record's bytes, not a field or a row of its own. An
// entry is queued on the outbox with its first record, and the records after it join it until a commit takes it
// (`Segment.take`) or a checkpoint call cuts it (`cut`): an entry never holds calls both before and after a
// checkpoint, so the checkpoint's commit forgets exactly the entries it covers.
import type { Codec } from '../common/codec';
import {
  MIXED,
  NOT_PLAIN,
  TAGGED,
  TOO_LARGE,
  decodeStored,
  encodeChecked,
  encodeCopy,
  jsonCodec,
  plainCopy,
} from '../common/codec';
import type { JournalEntry, JournalRecord } from '../common/transport';
import { journalField } from '../common/stored';
import { BodyCall, FactoryCall } from '../../core/journal-calls';
import type { CallSignal } from '../../core/protocol';
import {
  AnswerRestartedError,
  EventTooLargeError,
  JournalDivergedError,
  JournalTooLargeError,
  builtInErrorClass,
  decodeError,
  describe,
  invalidType,
} from '../../errors';

import type { JournalCall, JournalStreamCall } from '../../types';

export type { JournalCall, JournalStreamCall };

/** What a journal needs of its session's worker. */
export interface JournalHost {
  readonly codec: Codec<unknown>;
  readonly maxEventBytes: number;
  readonly maxJournalBytes: number;
  /** Told of each divergence found (the worker's `onError`), besides the handler it is thrown into. */
  report(error: unknown): void;
}

/** The call a place belongs to: `3`, `3.0`, `3.end` -> 3. */
function callOf(at: string): number {
  const dot = at.indexOf('.');
  return Number(dot < 0 ? at : at.slice(0, dot));
}

/**
 * How an error names journaled call `call` (`streamed`: a `ctx.stream`) of session `sid`, so that the handler's call
 * at fault can be told from its others: its kind and name, its place, its session and the key its body gets,
 * `ctx.run("price") (journaled call 3 of session "k@1-0", key "k@1-0/3")`. Made only for an error.
 */
function callNamed(sid: string, call: number, name: string, streamed: boolean): string {
  const key = JSON.stringify(`${sid}/${call}`);
  return `ctx.${streamed ? 'stream' : 'run'}(${JSON.stringify(name)}) (journaled call ${call} of session ${JSON.stringify(sid)}, key ${key})`;
}

/** Where a new version's outputs part from the old version's records: as many before `where` as the old, or not. */
function outputsBefore(where: string, recorded: number, yielded: number): string {
  return `its new version yielded ${yielded} output(s) of that answer before ${where}, where the old version had yielded ${recorded}`;
}

/** How an error names the record of kind `kind` at `at`: `result of ctx.run(...)`, `chunk 2 of ctx.stream(...)`. */
function recordNamed(sid: string, at: string, kind: JournalRecord['kind'], name: string): string {
  const dot = at.indexOf('.');
  const call = callNamed(sid, callOf(at), name, dot >= 0);
  const part = dot < 0 ? '' : at.slice(dot + 1);
  if (kind === 'e') return `error of ${call}`;
  return dot < 0 ? `result of ${call}` : part === 'end' ? `end of ${call}` : `chunk ${part} of ${call}`;
}

/** A written entry's records: none (frozen: a closed entry takes no record). */
const WRITTEN = Object.freeze([]) as unknown as JournalRecord[];

/**
 * A session's entry: queued on the outbox (once, with its first record) while `open`; its records, their bytes and
 * the last call they belong to. A commit takes it (closed from then on: later records start another).
 */
export class Segment implements JournalEntry {
  records: JournalRecord[];
  /** Its first record's place: the field's `<at>`, kept after its records are dropped (`written`). */
  first = '';
  open = true;
  bytes = 0;
  last = 0;
  /** Its bytes count toward the journal's bound: until a checkpoint call covers it (`Journal.cut`). */
  counted = true;
  /** With its first record, if any (an array of that one: most entries keep one record, and no room for more). */
  constructor(
    readonly sid: string,
    first?: JournalRecord,
  ) {
    this.records = first === undefined ? [] : [first];
  }
  /** The outbox takes it into a commit: no record joins it from here on. */
  take(): JournalEntry {
    this.open = false;
    return this;
  }
  /**
   * Its commit succeeded: the log holds its records, and the journal needs only their place, bytes and last call
   * (to forget the entry). Dropped, not kept until the session's checkpoint or end: a session without checkpoints
   * kept every result it recorded, and collecting that growing heap was most of a journaled call's cost on a drain.
   */
  written(): void {
    this.records = WRITTEN;
  }
}

/** Whether a body's result is to be awaited (a promise, or any thenable, as `await` takes it). */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * A recorded error, thrown again at its place: an error with the name, message and code recorded, of JavaScript's
 * class of that name (`TypeError`, `RangeError`, ...), else an `Error`.
 */
export function recordedError(payload: Buffer | string, call = 'a journaled call'): Error {
  let failure: { name?: unknown; message?: unknown; code?: unknown };
  try {
    failure = JSON.parse(payload.toString()) as typeof failure;
  } catch (cause) {
    return decodeError(`The error recorded for ${call} could not be read back`, cause);
  }
  const error = new (builtInErrorClass(failure.name))(typeof failure.message === 'string' ? failure.message : '') as Error & {
    code?: string;
  };
  if (typeof failure.name === 'string') error.name = failure.name;
  if (typeof failure.code === 'string') error.code = failure.code;
  return error;
}

/** Whether `r` is a call's refusal past `maxJournalBytes` (`Journal.#record`): kept outside the bound. */
function isRefusal(r: JournalRecord): boolean {
  if (r.kind !== 'e') return false;
  try {
    return (JSON.parse(r.payload.toString()) as { code?: unknown }).code === 'ERR_VELO_JOURNAL_TOO_LARGE';
  } catch {
    return false;
  }
}

export class Journal {
  /** Journaled calls made so far (restored from the checkpoint): the next is `calls + 1`. */
  calls: number;
  /** Calls a queued checkpoint covers: records of these are neither queued nor kept. */
  #covered: number;
  /** Records the last owner left (a replay's), by place; taken as the replay asks for them. */
  readonly #recorded: Map<string, JournalRecord>;
  /**
   * The calls the last owner left records of, by place (`<n>`): the name and whether streamed (`ctx.stream`); each
   * checked once, when the replay makes its call there, against the call it makes.
   */
  readonly #recordedCalls = new Map<number, { name: string; streamed: boolean }>();
  /**
   * Calls recorded at one place both as a result and as a stream (two versions' calls there: one left untaken by a
   * version that went another way, one made since), by place: the other shape, which the call made there is not.
   */
  readonly #twice = new Map<number, { name: string; streamed: boolean }>();
  /** The entries the log keeps for this session (read, or queued by this owner), oldest first. */
  #kept: Segment[] = [];
  /** The entry records join (queued, not yet taken by a commit nor cut by a checkpoint call), or null. */
  #open: Segment | null = null;
  #bytes = 0;
  /** The last refusal recorded (`#record`): a stream's catch of it records nothing more. */
  #refusal: JournalTooLargeError | null = null;
  /** Its session ended (`all`): nothing more is recorded. */
  #ended = false;
  /**
   * The input (by the count of inputs its handler had taken: `inputs()`) during which its handler last took a
   * recorded result or chunk (a replay's), -1: none. A migrated session's outputs for that input continue the old
   * answer (the same, from the journal) rather than give a new one.
   */
  continuedInput = -1;
  /** The input during which a replay's call diverged from its record, -1: none (it continues nothing then). */
  #divergedInput = -1;

  get divergedInput(): number {
    return this.#divergedInput;
  }

  /** The input whose answer it restarted (`restart`), -1: none. */
  get restartedInput(): number {
    return this.#restartedInput;
  }

  /**
   * A migrated session's answer in flight: the input its old version was answering (by `inputs()`) and the outputs
   * it had written for it; null: none. The new version continues that answer only while it yields, before each
   * record it takes, as many outputs as the old version had (`JournalRecord.yielded`), and makes no call of its own
   * before yielding as many as the old one wrote: else it yields another answer (`#restarts`).
   */
  #inFlight: { input: number; written: number } | null = null;
  /** The input where the new version's outputs stopped lining up with the old version's records, -1: none. */
  #restartedInput = -1;
  /** A restart decided and not yet queued for its report (`takeRestart`). */
  #unreported: AnswerRestartedError | null = null;

  /**
   * The input (by `inputs()`) its old version was answering when `migrate` adopted its session, -1: none. Kept once
   * its answer is restarted (its outputs written whole after the old's): the records of that input's calls the new
   * version left untaken are still the old answer's, dropped when it asks past it (`dropLeft`).
   */
  get inFlightInput(): number {
    return this.#inFlight?.input ?? -1;
  }

  /** Its session was adopted by `migrate` while its old version was answering `input`, having written `written` outputs of it. */
  answerInFlight(input: number, written: number): void {
    this.#inFlight = { input, written };
  }

  /** A recorded result, chunk or end is taken with `yielded` outputs yielded for the input: as many as its maker's? */
  #lineUp(r: JournalRecord, yielded: number): void {
    if (this.#inFlight?.input === this.inputs() && (r.yielded ?? 0) !== yielded)
      this.restart(outputsBefore(`the record of ${recordNamed(this.sid, r.at, r.kind, r.name)}`, r.yielded ?? 0, yielded));
  }

  /**
   * A call (or a stream's pull) not from a record, with `yielded` outputs yielded for the input: the old version,
   * continued to here, had yielded every output it wrote (its calls after those are in no record).
   */
  #fresh(what: () => string, yielded: number): void {
    const inFlight = this.#inFlight;
    if (
      inFlight !== null &&
      this.continuedInput === inFlight.input &&
      this.inputs() === inFlight.input &&
      yielded < inFlight.written
    )
      this.restart(outputsBefore(what(), inFlight.written, yielded));
  }

  /**
   * The new version's outputs for the answer in flight are not the old ones continued (`reason`: where they part): it
   * continues nothing there (its outputs for it are written whole, after the old ones), and this is reported, once:
   * with the commit of the session's next output or end (`takeRestart`), so a restart whose writes are fenced (the
   * next owner decides again) is never reported.
   */
  restart(reason: string): void {
    const input = this.inputs();
    if (this.#restartedInput === input) return;
    this.#restartedInput = input;
    if (this.continuedInput === input) this.continuedInput = -1;
    this.#unreported = new AnswerRestartedError(this.sid, reason);
  }

  /** The restart decided since the last call, to report once the commit of what the session queues next lands. */
  takeRestart(): AnswerRestartedError | null {
    const error = this.#unreported;
    this.#unreported = null;
    return error;
  }

  /** Whether its handler journals (a call made, or records or calls restored): its outputs carry a digest then. */
  get journals(): boolean {
    return this.calls > 0 || this.#recorded.size > 0;
  }

  /** The input the handler made its last call in (its count of inputs then), and the calls made before that input's first. */
  #input = -1;
  #inputCalls = 0;

  /** Before a call: the calls made before the current input's first (records of later calls are that input's). */
  #enter(): void {
    const input = this.inputs();
    if (input === this.#input) return;
    this.#input = input;
    this.#inputCalls = this.calls;
  }

  /** The calls made before the current input's first call (all of them if it made none yet). */
  #inputFrom(): number {
    return this.inputs() === this.#input ? this.#inputCalls : this.calls;
  }

  /** The records the last owner left for the current input's calls (and later ones) that no call has taken yet. */
  recordsLeft(): number {
    if (this.#recorded.size === 0) return 0;
    const from = this.#inputFrom();
    let left = 0;
    for (const at of this.#recorded.keys()) if (callOf(at) > from) left++;
    return left;
  }

  /** The handler took a recorded result or chunk: its outputs for this input continue the old answer. */
  #continues(): void {
    const input = this.inputs();
    if (input !== this.#divergedInput && input !== this.#restartedInput) this.continuedInput = input;
  }
  /** The count of inputs its handler has taken (set by its hooks). */
  inputs: () => number = () => 0;
  /** The outputs its handler has yielded for its current input so far (set by its hooks). */
  yielded: () => number = () => 0;
  /** Queues an entry on the partition's outbox, with its first record (set once the session runs). */
  queue: ((entry: Segment) => void) | null = null;

  constructor(
    readonly sid: string,
    calls: number,
    recorded: readonly JournalEntry[] | undefined,
    readonly host: JournalHost,
    readonly encodeError: (error: unknown) => string,
  ) {
    this.calls = calls;
    this.#covered = calls;
    this.#recorded = new Map();
    for (const entry of recorded ?? []) {
      const kept = new Segment(this.sid);
      kept.open = false;
      kept.first = entry.records[0].at;
      for (const r of entry.records) {
        this.#recorded.set(r.at, r);
        const call = callOf(r.at);
        const streamed = r.at.includes('.');
        const earlier = this.#recordedCalls.get(call);
        if (earlier !== undefined && earlier.streamed !== streamed) this.#twice.set(call, earlier);
        this.#recordedCalls.set(call, { name: r.name, streamed });
        if (!isRefusal(r)) kept.bytes += Buffer.byteLength(r.payload);
        kept.last = Math.max(kept.last, callOf(r.at));
      }
      this.#kept.push(kept);
      this.#bytes += kept.bytes;
    }
  }

  /**
   * Queues a record (unless a checkpoint covers its call, or its session ended), within `maxJournalBytes`: in the
   * open entry, or a new one. Nothing once the session's signal aborted (`aborted`, told without making the signal):
   * it is being cancelled (a hand-off, a stop), and what its calls answer then (an AbortError, a stream cut short) is
   * not their answer; the next owner calls again.
   *
   * A record that would pass the bound is refused: the call's refusal (`JournalTooLargeError`, thrown) is recorded in
   * its place (a stream's at its end), outside the bound, so that a replay throws it there without calling again (a
   * body called again may answer otherwise, and the handler go another way than the outputs it wrote).
   */
  #record(
    call: number,
    at: string,
    kind: JournalRecord['kind'],
    name: string,
    payload: Buffer | string,
    signal: CallSignal,
    yielded: number,
  ): void {
    if (call <= this.#covered || this.#ended || signal.aborted) return;
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    const limit = this.host.maxJournalBytes;
    if (this.#bytes + size > limit) this.#refuse(call, at, kind, name, size, yielded);
    this.#add(call, { at, kind, name, payload, bytes: size, yielded }, size);
  }

  /** Records the refusal of a record of `size` bytes past the bound, in its call's place (a stream's end), and throws it. */
  #refuse(call: number, at: string, kind: JournalRecord['kind'], name: string, size: number, yielded: number): never {
    const limit = this.host.maxJournalBytes;
    const refusal = new JournalTooLargeError(this.sid, this.#bytes + size, limit, recordNamed(this.sid, at, kind, name));
    const text = this.encodeError(refusal);
    const end = at.includes('.') ? `${call}.end` : at;
    this.#add(call, { at: end, kind: 'e', name, payload: text, bytes: Buffer.byteLength(text), yielded }, 0);
    this.#refusal = refusal;
    throw refusal;
  }

  /** Queues `record` of call `call`, `counted` of its bytes toward the bound: in the open entry, or a new one. */
  #add(call: number, record: JournalRecord, counted: number): void {
    let entry = this.#open;
    if (entry === null || !entry.open) {
      entry = new Segment(this.sid, record);
      this.#kept.push(entry);
      // (Before the session runs there is no outbox: the entry is kept, unwritten, and the next record starts another.)
      if (this.queue === null) entry.open = false;
      else this.queue(entry);
      this.#open = entry;
      entry.first = record.at;
    } else entry.records.push(record);
    entry.bytes += counted;
    if (call > entry.last) entry.last = call;
    this.#bytes += counted;
  }

  /**
   * A replay's call `call` (`streamed`: a `ctx.stream`) where records were left: it must be the call recorded there,
   * by name and kind, whatever records are left of it (a stream's first chunks, or only its end).
   */
  #check(call: number, name: string, streamed: boolean): void {
    let recorded = this.#recordedCalls.get(call);
    if (recorded === undefined) return;
    this.#recordedCalls.delete(call);
    const other = this.#twice.get(call);
    if (other !== undefined) {
      this.#twice.delete(call);
      // The call made here is one of the two shapes: the other's records are another version's, never taken.
      if (other.name === name && other.streamed === streamed) recorded = other;
      for (const at of [...this.#recorded.keys()])
        if (callOf(at) === call && at.includes('.') !== recorded.streamed) this.#recorded.delete(at);
    }
    if (recorded.name === name && recorded.streamed === streamed) return;
    const kind = (s: boolean): string => (recorded.name === name ? (s ? ' (ctx.stream)' : ' (ctx.run)') : '');
    const error = new JournalDivergedError(this.sid, call, recorded.name + kind(recorded.streamed), name + kind(streamed));
    // What the handler yields from here on in this input is not the old answer continued, whatever matched before
    // or after: it is written after the old version's outputs (session-writes.ts), never taken for one of them.
    this.#divergedInput = this.inputs();
    this.continuedInput = -1;
    this.host.report(error);
    throw error;
  }

  /**
   * The handler asks past an input its old version was answering (or where its journal diverged): the records it did
   * not take of that input's calls are the old answer's, and no later call gets one of them (its place may be another
   * call's now). Records of calls before that input's are left (no later call has their places). Returns how many.
   */
  dropLeft(): number {
    if (this.#recorded.size === 0) return 0;
    const from = this.#inputFrom();
    let left = 0;
    let last = 0;
    for (const at of [...this.#recorded.keys()]) {
      const call = callOf(at);
      if (call <= from) continue;
      this.#recorded.delete(at);
      this.#recordedCalls.delete(call);
      this.#twice.delete(call);
      left++;
      if (call > last) last = call;
    }
    // The next call's place is past theirs: they stay in the log until a checkpoint covers them (this count, carried
    // by the checkpoint, covers them), and no owner that replays from here gives one of them to a call.
    if (last > this.calls) this.calls = last;
    return left;
  }

  #recordedAt(at: string): JournalRecord | undefined {
    const r = this.#recorded.get(at);
    if (r !== undefined) this.#recorded.delete(at);
    return r;
  }

  #decode(r: JournalRecord): unknown {
    if (r.kind === 'u') return undefined;
    return decodeStored(this.host.codec, r.payload);
  }

  /**
   * Records a value (a result, a chunk) at `at`, its encoding checked, and gives back what a replay gets there: the
   * value decoded from its record (`undefined` as itself), so that a first run sees what a replay sees.
   */
  #value(call: number, at: string, name: string, value: unknown, signal: CallSignal, yielded: number): unknown {
    if (value === undefined) {
      this.#record(call, at, 'u', name, '', signal, yielded);
      return undefined;
    }
    // (Its name in an error made only for one: a call's own cost has no string of it.)
    const what = () => recordNamed(this.sid, at, 'v', name);
    const { codec, maxEventBytes } = this.host;
    // Plain data by the JSON codec (most results): its copy is what its record decodes to, made without decoding.
    let copy: unknown = NOT_PLAIN;
    let kind = 0;
    try {
      if (codec === jsonCodec) {
        copy = plainCopy(value, maxEventBytes);
        kind = plainCopy.kind;
      }
    } catch {
      // (A value that throws as it is read, a revoked proxy: the codec's own encode says how, below.)
      copy = NOT_PLAIN;
    }
    // (Known too large before it is all copied: its text is not made, which could take long and much memory.)
    if (copy === TOO_LARGE) throw new EventTooLargeError(what(), plainCopy.atLeast, maxEventBytes, true);
    if (copy !== NOT_PLAIN && (kind & MIXED) === 0) {
      const text = encodeCopy(copy, maxEventBytes, what);
      this.#record(call, at, 'v', name, text, signal, yielded);
      // (An object keyed by the bytes' tag may decode to a Buffer: what a replay gets is the text decoded then.)
      return kind & TAGGED ? decodeStored(codec, text) : copy;
    }
    // (A copy that kept a value it did not copy, a Date: its text is the value's, and what it read is not read again.)
    const payload = encodeChecked(codec, copy === NOT_PLAIN ? value : copy, maxEventBytes, what);
    this.#record(call, at, 'v', name, payload, signal, yielded);
    return decodeStored(codec, payload);
  }

  /** Records a call's result (its encoding checked) at its place `at` (`String(call)`), and gives back what a replay gets (`#value`). */
  #done(call: number, at: string, name: string, result: unknown, signal: CallSignal, yielded: number): unknown {
    let value: unknown;
    try {
      value = this.#value(call, at, name, result, signal, yielded);
    } catch (error) {
      // A result the codec refuses is the call's failure, recorded as any other: a replay does not run its body again.
      if (error instanceof JournalTooLargeError) throw error;
      this.#failed(call, at, name, error, signal, yielded);
    }
    return value;
  }

  /** Records a call's failure (a replay throws the same error at the same place), and throws it. */
  #failed(call: number, at: string, name: string, error: unknown, signal: CallSignal, yielded: number): never {
    const payload = this.encodeError(error);
    this.#record(call, at, 'e', name, payload, signal, yielded);
    // What a replay throws: the error rebuilt from its record (unless cancelled: nothing is recorded then).
    throw signal.aborted ? error : recordedError(payload);
  }

  /**
   * `ctx.run(name, body)`: the result recorded at the call's place, or the body's (recorded). Not an async function:
   * a body that answers at once (not a thenable) is recorded at once, with no microtask of its own; one that
   * returns a promise is recorded when it settles.
   */
  run(name: string, body: (call: JournalCall) => unknown, signal: CallSignal): Promise<unknown> {
    if (this.#recordedCalls.size > 0) this.#enter();
    const call = ++this.calls;
    // (Its place, made once: the body's key and the record's place.)
    const at = String(call);
    const yielded = this.yielded();
    try {
      if (this.#recordedCalls.size > 0) {
        this.#check(call, name, false);
        const recorded = this.#recordedAt(at);
        if (recorded !== undefined) {
          this.#lineUp(recorded, yielded);
          this.#continues();
          if (recorded.kind === 'e')
            return Promise.reject(recordedError(recorded.payload, callNamed(this.sid, call, name, false)));
          return Promise.resolve(this.#decode(recorded));
        }
      }
      if (this.#inFlight !== null) this.#fresh(() => callNamed(this.sid, call, name, false), yielded);
      let result: unknown;
      let later = false;
      try {
        result = body(new BodyCall(`${this.sid}/${at}`, signal));
        // (Its `then` read here, as `await` would: a getter that throws is the call's failure.)
        later = isThenable(result);
      } catch (error) {
        this.#failed(call, at, name, error, signal, yielded);
      }
      if (later)
        return Promise.resolve(result as PromiseLike<unknown>).then(
          (value) => this.#done(call, at, name, value, signal, yielded),
          (error: unknown) => this.#failed(call, at, name, error, signal, yielded),
        );
      return Promise.resolve(this.#done(call, at, name, result, signal, yielded));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `ctx.stream(name, factory)`: the chunks recorded at the call's place, then, unless its end was recorded, those
   * of `factory({ chunks })` (each recorded as it is taken), which continues after the recorded ones.
   */
  async *stream(
    name: string,
    factory: (call: JournalStreamCall) => AsyncIterable<unknown> | Iterable<unknown>,
    signal: CallSignal,
  ): AsyncGenerator<unknown, void, undefined> {
    if (this.#recordedCalls.size > 0) this.#enter();
    const call = ++this.calls;
    const chunks: unknown[] = [];
    if (this.#recordedCalls.size > 0) this.#check(call, name, true);
    // (Each record is taken, or made, at the handler's pull of it: after the outputs it yielded for the chunk before.)
    for (;;) {
      const r = this.#recordedAt(`${call}.${chunks.length}`);
      if (r === undefined) break;
      this.#lineUp(r, this.yielded());
      this.#continues();
      // (Decoded twice: what the handler does to its chunk does not reach the factory's `chunks`.)
      chunks.push(this.#decode(r));
      yield this.#decode(r);
    }
    let yielded = this.yielded();
    const end = this.#recordedAt(`${call}.end`);
    if (end !== undefined) {
      this.#lineUp(end, yielded);
      if (end.kind === 'e') throw recordedError(end.payload, callNamed(this.sid, call, name, true));
      return;
    }
    let i = chunks.length;
    if (this.#inFlight !== null) this.#fresh(() => `chunk ${i} of ${callNamed(this.sid, call, name, true)}`, yielded);
    try {
      const source = factory(new FactoryCall(`${this.sid}/${call}`, signal, chunks));
      if (source === null || typeof source !== 'object' || (!(Symbol.asyncIterator in source) && !(Symbol.iterator in source)))
        throw invalidType(
          `${callNamed(this.sid, call, name, true)}: the factory must return an iterable or async iterable. Received ${describe(source)}`,
        );
      for await (const chunk of source as AsyncIterable<unknown>) {
        const value = this.#value(call, `${call}.${i}`, name, chunk, signal, yielded);
        i++;
        yield value;
        yielded = this.yielded();
      }
    } catch (error) {
      if (error === this.#refusal) throw error;
      const payload = this.encodeError(error);
      this.#record(call, `${call}.end`, 'e', name, payload, signal, yielded);
      throw signal.aborted ? error : recordedError(payload);
    }
    this.#record(call, `${call}.end`, 'x', name, '', signal, yielded);
  }

  /**
   * A checkpoint call after `calls` calls (made at its step's end): the open entry takes no more records, so that
   * those of later calls go in another, which the checkpoint's commit keeps. Returns `calls`.
   */
  cut(): number {
    if (this.#open !== null) this.#open.open = false;
    this.#open = null;
    // The entries it covers leave the bound now, as the handler sees it, not when its commit is queued (after the
    // outputs before it, maybe several inputs later): whether a call passes `maxJournalBytes` is the same whatever
    // the timing, on a first run and on a replay.
    for (const entry of this.#kept)
      if (entry.counted && entry.last <= this.calls) {
        entry.counted = false;
        this.#bytes -= entry.bytes;
      }
    return this.calls;
  }

  /**
   * A checkpoint after `calls` calls is queued: the fields of the entries it covers (those whose records are all of
   * calls up to `calls`), forgotten in its commit. (An entry with a later call stays: a call in flight at the
   * checkpoint call may record into an entry after it.)
   */
  covered(calls: number): string[] {
    this.#covered = Math.max(this.#covered, calls);
    const fields: string[] = [];
    const kept: Segment[] = [];
    for (const entry of this.#kept) {
      if (entry.last > calls) kept.push(entry);
      else {
        fields.push(journalField(this.sid, entry.first));
        if (entry.counted) this.#bytes -= entry.bytes;
        // (A forgotten entry takes no more records: they would be forgotten with it.)
        entry.open = false;
      }
    }
    this.#kept = kept;
    return fields;
  }

  /**
   * The session ended: the fields of every entry the log keeps for it. A call made or answered after this (one left
   * running by its handler, or on a context kept past the end) is recorded nowhere: no commit would forget it.
   */
  all(): string[] {
    this.#ended = true;
    const fields = this.#kept.map((entry) => {
      entry.open = false;
      return journalField(this.sid, entry.first);
    });
    this.#kept = [];
    this.#open = null;
    this.#bytes = 0;
    return fields;
  }
}
