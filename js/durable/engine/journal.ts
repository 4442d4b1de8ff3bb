// A session's journal: the results of its journaled calls (`ctx.run`) and the chunks of its journaled streams
// (`ctx.stream`), recorded in the fenced commits that carry its outputs, so that a replay (a takeover, a migration)
// gets each back at its place instead of calling again. The body of a call runs at least once: a crash between the
// call and the commit of its record runs it again, with the same idempotency key.
//
// Places: the session's n-th journaled call (1, 2, ..., counted from its start, and restored with its checkpoint)
// is recorded at `<n>` (a result or an error), or, streamed, at `<n>.<i>` per chunk and `<n>.end` at its end. A
// checkpoint covers the calls before it: their records are forgotten in its commit, and a restore from it asks
// no call before `calls + 1`. An ended session's records are all forgotten in the commit that ends it.
import type { Codec } from '../common/codec';
import { encodeChecked } from '../common/codec';
import type { JournalRecord } from '../common/transport';
import { journalField } from '../common/stored';
import { JournalDivergedError, JournalTooLargeError, decodeError, describe, invalidType } from '../../errors';

import type { JournalCall, JournalStreamCall } from '../../types';

export type { JournalCall, JournalStreamCall };

/** What a journal needs of its session's worker. */
export interface JournalHost {
  readonly codec: Codec<unknown>;
  readonly maxEventBytes: number;
  readonly maxJournalBytes: number;
}

/** The call a place belongs to: `3`, `3.0`, `3.end` -> 3. */
function callOf(at: string): number {
  const dot = at.indexOf('.');
  return Number(dot < 0 ? at : at.slice(0, dot));
}

/** A recorded error, thrown again at its place: an Error with the name, message and code recorded. */
function recordedError(payload: Buffer | string): Error {
  let failure: { name?: unknown; message?: unknown; code?: unknown };
  try {
    failure = JSON.parse(payload.toString()) as typeof failure;
  } catch (cause) {
    return decodeError('A journaled error could not be read back', cause);
  }
  const error = new Error(typeof failure.message === 'string' ? failure.message : '') as Error & { code?: string };
  if (typeof failure.name === 'string') error.name = failure.name;
  if (typeof failure.code === 'string') error.code = failure.code;
  return error;
}

export class Journal {
  /** Journaled calls made so far (restored from the checkpoint): the next is `calls + 1`. */
  calls: number;
  /** Calls a queued checkpoint covers: records of these are neither queued nor kept. */
  #covered: number;
  /** Records the last owner left (a replay's), by place; taken as the replay asks for them. */
  readonly #recorded: Map<string, JournalRecord>;
  /** Places whose records the log keeps for this session (read, or queued by this owner), with their sizes. */
  readonly #kept = new Map<string, number>();
  #bytes = 0;
  /**
   * The input (by the count of inputs its handler had taken: `inputs()`) during which its handler last took a
   * recorded result or chunk (a replay's), -1: none. A migrated session's outputs for that input continue the old
   * answer (the same, from the journal) rather than give a new one.
   */
  continuedInput = -1;
  /** The count of inputs its handler has taken (set by its hooks). */
  inputs: () => number = () => 0;
  /** Queues a record on the partition's outbox (set once the session runs). */
  queue: ((record: JournalRecord) => void) | null = null;

  constructor(
    readonly sid: string,
    calls: number,
    recorded: readonly JournalRecord[] | undefined,
    readonly host: JournalHost,
    readonly encodeError: (error: unknown) => string,
  ) {
    this.calls = calls;
    this.#covered = calls;
    this.#recorded = new Map();
    for (const r of recorded ?? []) {
      this.#recorded.set(r.at, r);
      this.#keep(r.at, Buffer.byteLength(r.payload));
    }
  }

  #keep(at: string, size: number): void {
    this.#kept.set(at, size);
    this.#bytes += size;
  }

  /**
   * Queues a record (unless a checkpoint covers its call), within `maxJournalBytes`. Nothing once the session's signal
   * aborted: it is being cancelled (a hand-off, a stop), and what its calls answer then (an AbortError, a stream cut
   * short) is not their answer; the next owner calls again.
   */
  #record(
    call: number,
    at: string,
    kind: JournalRecord['kind'],
    name: string,
    payload: Buffer | string,
    signal: AbortSignal,
  ): void {
    if (call <= this.#covered || signal.aborted) return;
    const size = Buffer.byteLength(payload);
    const limit = this.host.maxJournalBytes;
    if (this.#bytes + size > limit) throw new JournalTooLargeError(this.sid, this.#bytes + size, limit);
    this.#keep(at, size);
    this.queue?.({ sid: this.sid, at, kind, name, payload });
  }

  #recordedAt(at: string, call: number, name: string): JournalRecord | undefined {
    const r = this.#recorded.get(at);
    if (r === undefined) return undefined;
    this.#recorded.delete(at);
    if (r.name !== name) throw new JournalDivergedError(this.sid, call, r.name, name);
    return r;
  }

  #decode(r: JournalRecord): unknown {
    return this.host.codec.decode(Buffer.isBuffer(r.payload) ? r.payload : Buffer.from(r.payload));
  }

  /** `ctx.run(name, body)`: the result recorded at the call's place, or the body's (recorded). */
  async run(name: string, body: (call: JournalCall) => unknown, signal: AbortSignal): Promise<unknown> {
    const call = ++this.calls;
    const at = String(call);
    const recorded = this.#recordedAt(at, call, name);
    if (recorded !== undefined) {
      this.continuedInput = this.inputs();
      if (recorded.kind === 'e') throw recordedError(recorded.payload);
      return this.#decode(recorded);
    }
    let result: unknown;
    try {
      result = await body({ key: `${this.sid}/${call}`, signal });
    } catch (error) {
      // A call that failed is recorded too: a replay throws the same error at the same place.
      this.#record(call, at, 'e', name, this.encodeError(error), signal);
      throw error;
    }
    const what = `result of journaled call ${JSON.stringify(name)}`;
    this.#record(call, at, 'v', name, encodeChecked(this.host.codec, result, this.host.maxEventBytes, what, this.sid), signal);
    return result;
  }

  /**
   * `ctx.stream(name, factory)`: the chunks recorded at the call's place, then, unless its end was recorded, those
   * of `factory({ chunks })` (each recorded as it is taken), which continues after the recorded ones.
   */
  async *stream(
    name: string,
    factory: (call: JournalStreamCall) => AsyncIterable<unknown> | Iterable<unknown>,
    signal: AbortSignal,
  ): AsyncGenerator<unknown, void, undefined> {
    const call = ++this.calls;
    const chunks: unknown[] = [];
    for (;;) {
      const r = this.#recordedAt(`${call}.${chunks.length}`, call, name);
      if (r === undefined) break;
      const chunk = this.#decode(r);
      this.continuedInput = this.inputs();
      chunks.push(chunk);
      yield chunk;
    }
    const end = this.#recordedAt(`${call}.end`, call, name);
    if (end !== undefined) {
      if (end.kind === 'e') throw recordedError(end.payload);
      return;
    }
    let i = chunks.length;
    const what = `chunk of journaled stream ${JSON.stringify(name)}`;
    try {
      const source = factory({ key: `${this.sid}/${call}`, signal, chunks });
      if (source === null || typeof source !== 'object' || (!(Symbol.asyncIterator in source) && !(Symbol.iterator in source)))
        throw invalidType(`ctx.stream(): the factory must return an iterable or async iterable. Received ${describe(source)}`);
      for await (const chunk of source as AsyncIterable<unknown>) {
        this.#record(
          call,
          `${call}.${i}`,
          'v',
          name,
          encodeChecked(this.host.codec, chunk, this.host.maxEventBytes, what, this.sid),
          signal,
        );
        i++;
        yield chunk;
      }
    } catch (error) {
      this.#record(call, `${call}.end`, 'e', name, this.encodeError(error), signal);
      throw error;
    }
    this.#record(call, `${call}.end`, 'x', name, '', signal);
  }

  /** A checkpoint after `calls` calls is queued: the fields of the records it covers, forgotten in its commit. */
  covered(calls: number): string[] {
    this.#covered = Math.max(this.#covered, calls);
    const fields: string[] = [];
    for (const [at, size] of this.#kept) {
      if (callOf(at) > calls) continue;
      fields.push(journalField(this.sid, at));
      this.#kept.delete(at);
      this.#bytes -= size;
    }
    return fields;
  }

  /** The session ended: the fields of every record the log keeps for it. */
  all(): string[] {
    const fields = [...this.#kept.keys()].map((at) => journalField(this.sid, at));
    this.#kept.clear();
    this.#bytes = 0;
    return fields;
  }
}
