// What `checkDeterminism` (index.ts) replaces while it runs, so that only a handler's unjournaled nondeterminism
// shows: `Date.now`, `Math.random`, `fetch` and `crypto.randomUUID` record where the handler called them outside a
// journaled call (`Nondeterminism`), and the bodies of journaled calls answer each run as the crash-free run's did
// at the same place (`JournaledAnswers`).
//
// Why the answers are the crash-free run's: the check compares runs made independently, each calling its services
// afresh. A service that answers differently on every call (a model, an id) would make two runs differ before any
// crash, though the journal gives one run's readers one answer across its crash. So a run with a crash gets, for a
// call it makes (one not yet recorded at the crash, or made before it), the crash-free run's answer at the same
// place: the session (its key and the event that opened it) and the call's number in it (a stream's chunks by
// index, and its end). A call the journal gives back is not made again: its record is what the run's own call
// got, so the journal's replay is exercised as in production. What is left to differ is what the handler did
// outside its journaled calls.
import { AsyncLocalStorage } from 'node:async_hooks';
import { join } from 'node:path';
import type { Clock } from '../common/clock';
import { Journal, type JournalCall, type JournalStreamCall } from '../engine/journal';

/** A day, ms: how far `Date.now` moves between two runs of a check. */
const DAY_MS = 86_400_000;

/** Set inside the body of a journaled call (and its stream's iteration): what it calls is journaled, not blamed. */
const journaled = new AsyncLocalStorage<true>();

/** The compiled library's folder (dist/): calls from its own files are not the handler's. */
const LIBRARY_DIR = join(__dirname, '..', '..');
/** `fakeModel`'s compiled file: its draws stand for a model's answer. */
const FAKE_MODEL = join(__dirname, 'fake-model.');

// (`require`, not `import`: the module object itself, whose properties a stand-in replaces, with ESM named imports
// synced after (`syncBuiltinESMExports`); an import would give a copy.)
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeCrypto = require('node:crypto') as { randomUUID: () => string };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeModule = require('node:module') as { syncBuiltinESMExports?: () => void };

/**
 * `Date.now`, `Math.random`, `fetch` and `crypto.randomUUID` (`node:crypto`'s and the global Web Crypto's), replaced
 * for a check: the first two different in every run, all four recording where the handler called them outside a
 * journaled call (`reads`, at most 3).
 */
export class Nondeterminism {
  run = 0;
  readonly reads: string[] = [];
  readonly #now = Date.now;
  readonly #random = Math.random;
  #fetch: unknown = undefined;
  #uuid: (() => string) | null = null;
  #webUuid = false;

  install(): void {
    const now = this.#now;
    Date.now = () => {
      this.#record('Date.now()');
      return now() + this.run * DAY_MS;
    };
    let state = 0;
    Math.random = () => {
      this.#record('Math.random()');
      state = (state * 1_103_515_245 + 12_345 + this.run) % 2 ** 31;
      return state / 2 ** 31;
    };
    const fetch = globalThis.fetch as typeof globalThis.fetch | undefined;
    if (typeof fetch === 'function') {
      this.#fetch = fetch;
      globalThis.fetch = (...args: Parameters<typeof globalThis.fetch>) => {
        this.#record('fetch()');
        return fetch(...args);
      };
    }
    const uuid = nodeCrypto.randomUUID;
    if (typeof uuid === 'function') {
      this.#uuid = uuid;
      nodeCrypto.randomUUID = () => {
        this.#record('crypto.randomUUID()');
        return uuid();
      };
      nodeModule.syncBuiltinESMExports?.();
    }
    const web = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
    if (web !== undefined && typeof web.randomUUID === 'function' && Object.isExtensible(web)) {
      const own = web.randomUUID.bind(web);
      Object.defineProperty(web, 'randomUUID', {
        configurable: true,
        writable: true,
        value: () => {
          this.#record('crypto.randomUUID()');
          return own();
        },
      });
      this.#webUuid = true;
    }
  }

  uninstall(): void {
    Date.now = this.#now;
    Math.random = this.#random;
    if (this.#fetch !== undefined) globalThis.fetch = this.#fetch as typeof globalThis.fetch;
    if (this.#uuid !== null) {
      nodeCrypto.randomUUID = this.#uuid;
      nodeModule.syncBuiltinESMExports?.();
    }
    if (this.#webUuid) delete (globalThis.crypto as { randomUUID?: unknown }).randomUUID;
  }

  /**
   * The caller's frame, unless it is the library's own (its files are under this module's parent folder) or
   * journaled. A `fakeModel`'s draws are the model's answer: named as its `stream()`, where the handler called it.
   */
  #record(what: string): void {
    if (journaled.getStore() === true || this.reads.length >= 3) return;
    const frames = (new Error().stack ?? '').split('\n').slice(3);
    let frame = frames[0]?.trim() ?? '';
    if (frame.includes(FAKE_MODEL)) {
      // (Past the generator's own `next`, which has no file.)
      frame = frames.find((f) => !f.includes(LIBRARY_DIR) && !f.includes('<anonymous>') && !f.includes('(node:'))?.trim() ?? '';
      what = 'fakeModel().stream()';
    }
    const read = `${what} ${frame}`;
    if (frame.includes(LIBRARY_DIR) || this.reads.includes(read)) return;
    this.reads.push(read);
  }
}

/** A journaled call's answer in the crash-free run: a result or error, or a stream's chunks and how it ended. */
type Answer =
  | { readonly kind: 'run'; readonly ok: boolean; readonly value: unknown }
  | { readonly kind: 'stream'; readonly chunks: unknown[]; end?: { readonly ok: boolean; readonly error?: unknown } };

type Run = Journal['run'];
type Stream = Journal['stream'];
type Factory = (call: JournalStreamCall) => AsyncIterable<unknown> | Iterable<unknown>;

/** A value as a check's message shows it: its JSON, cut; what JSON cannot show, described. */
function shown(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) return typeof value;
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

/**
 * The bodies of journaled calls during a check (see the file's comment): the crash-free run's answers recorded by
 * place (`record`), then given to the runs with a crash (`replay`). `appended` is told each event's entry id as the
 * run appends it (a session's place is its key and the index of the event that opened it: entry ids differ
 * between runs).
 *
 * A streamed answer pauses once, on the run's clock, after its first chunk (in every run, so that the runs keep
 * one schedule up to their crash): the worker commits that chunk's record alone, so one crash point of the check
 * falls in the middle of the answer. The replay after it calls the handler's factory with the recorded chunks, as
 * a worker does: a factory that does not continue after them (`discontinued` says how) gives other outputs.
 */
export class JournaledAnswers {
  mode: 'record' | 'replay' = 'record';
  readonly #answers = new Map<string, Answer>();
  /** `<key>@<entry id>` -> the index of the event, in the run under way. */
  #events = new Map<string, number>();
  #run: Run | null = null;
  #stream: Stream | null = null;
  /** Waits for the run's worker to commit what it has queued (two steps of the run's clock); null: no run's clock. */
  #turn: (() => Promise<void>) | null = null;
  /** The first continuation of this run whose factory gave other chunks than the crash-free run's answer, or null. */
  discontinued: string | null = null;

  /** A new run: its events' ids are its own. */
  begin(mode: 'record' | 'replay'): void {
    this.mode = mode;
    this.#events = new Map();
    this.#turn = null;
    this.discontinued = null;
  }

  /** The run's clock, as it starts (`SimOptions.started`). */
  readonly started = (clock: Pick<Clock, 'setImmediate'>): void => {
    this.#turn = () => new Promise<void>((resolve) => clock.setImmediate(() => clock.setImmediate(resolve)));
  };

  /** Event `index` (of key `key`) was appended at entry id `id`. */
  readonly appended = (index: number, key: string, id: string): void => {
    this.#events.set(`${key}@${id}`, index);
  };

  /** The place of call `key` (`<sid>/<n>`, as its body gets it) of session `sid`. */
  #place(sid: string, key: string): string {
    const n = key.slice(sid.length + 1);
    const event = this.#events.get(sid);
    // (A session opened by no event of the check's: by its sid, which runs may not share.)
    return event === undefined ? `${sid}\u0000${n}` : `${sid.slice(0, sid.lastIndexOf('@'))}\u0000${event}\u0000${n}`;
  }

  install(): void {
    // (The prototype's own methods, called on their journal with `call`.)
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const run = (this.#run = Journal.prototype.run);
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const stream = (this.#stream = Journal.prototype.stream);
    const answered = (sid: string, call: JournalCall, body: (call: JournalCall) => unknown) => this.#body(sid, call, body);
    const streamed = (sid: string, name: string, call: JournalStreamCall, factory: Factory) =>
      this.#factory(sid, name, call, factory);
    Journal.prototype.run = function (this: Journal, name, body, signal) {
      return run.call(this, name, (call: JournalCall) => answered(this.sid, call, body), signal);
    };
    Journal.prototype.stream = function (this: Journal, name, factory, signal) {
      return stream.call(this, name, (call: JournalStreamCall) => streamed(this.sid, name, call, factory), signal);
    };
  }

  uninstall(): void {
    if (this.#run !== null) Journal.prototype.run = this.#run;
    if (this.#stream !== null) Journal.prototype.stream = this.#stream;
  }

  async #body(sid: string, call: JournalCall, body: (call: JournalCall) => unknown): Promise<unknown> {
    const place = this.#place(sid, call.key);
    const known = this.mode === 'replay' ? this.#answers.get(place) : undefined;
    if (known?.kind === 'run') {
      if (known.ok) return known.value;
      throw known.value;
    }
    const record = this.mode === 'record' && !this.#answers.has(place);
    try {
      const value = await journaled.run(true, () => body(call));
      if (record) this.#answers.set(place, { kind: 'run', ok: true, value });
      return value;
    } catch (error) {
      if (record) this.#answers.set(place, { kind: 'run', ok: false, value: error });
      throw error;
    }
  }

  #factory(sid: string, name: string, call: JournalStreamCall, factory: Factory): AsyncIterable<unknown> | Iterable<unknown> {
    const place = this.#place(sid, call.key);
    const known = this.mode === 'replay' ? this.#answers.get(place) : undefined;
    const from = call.chunks.length;
    // (Only a stream asked from its start pauses: a continuation is past its pause.)
    const turn = from === 0 ? this.#turn : null;
    if (known?.kind === 'stream' && from > 0) return this.#continued(name, call, factory, known);
    if (known?.kind === 'stream' && (known.end !== undefined || known.chunks.length > 0)) {
      return (async function* () {
        // (Its pause where the crash-free run's was: before its second ask, for a chunk or for its end.)
        const ask = async (i: number) => {
          if (i === 1 && turn !== null) await turn();
        };
        let i = 0;
        for (; i < known.chunks.length; i++) {
          await ask(i);
          yield known.chunks[i];
        }
        await ask(i);
        if (known.end?.ok === false) throw known.end.error;
        if (known.end === undefined) {
          // (The crash-free run stopped taking the stream before its end: the rest from the factory, after them.)
          yield* traced(factory({ ...call, chunks: [...call.chunks, ...known.chunks] }), null, null);
        }
      })();
    }
    let answer: Answer | null = null;
    if (this.mode === 'record' && !this.#answers.has(place)) {
      answer = { kind: 'stream', chunks: [...call.chunks] };
      this.#answers.set(place, answer);
    }
    return traced(
      journaled.run(true, () => factory(call)),
      answer,
      turn,
    );
  }

  /**
   * A replay's stream given the chunks recorded before its crash (`call.chunks`): the handler's factory is called
   * with them, as a worker calls it, and each chunk it gives compared with the crash-free run's answer. Where one
   * differs, from a factory that read the chunks it was given (not their count alone): a model that continues an
   * answer in words of its own, as a real one does; the rest of the crash-free run's answer is given from there, as
   * for a call not yet recorded. From one that never read them: it does not continue the answer (`discontinued`, for
   * the report).
   */
  #continued(
    name: string,
    call: JournalStreamCall,
    factory: Factory,
    known: Extract<Answer, { kind: 'stream' }>,
  ): AsyncIterable<unknown> | Iterable<unknown> {
    const from = call.chunks.length;
    // (What reads a chunk: an index, an iteration, a copy; not `length` alone, which a log line reads.)
    let read = false;
    const given = new Proxy([...call.chunks], {
      get(target, property, receiver) {
        if (property !== 'length') read = true;
        return Reflect.get(target, property, receiver) as unknown;
      },
      has(target, property) {
        if (property !== 'length') read = true;
        return Reflect.has(target, property);
      },
      ownKeys(target) {
        read = true;
        return Reflect.ownKeys(target);
      },
    });
    const source = traced(
      journaled.run(true, () => factory({ key: call.key, signal: call.signal, chunks: given })),
      null,
      null,
    );
    if (source === null || typeof source !== 'object' || !(Symbol.asyncIterator in source)) return source;
    const told = (what: string): void => {
      this.discontinued ??=
        `ctx.stream(${JSON.stringify(name)}) (its key ${JSON.stringify(call.key)}), given the first ${from} chunk(s) of its answer ` +
        `after the crash, ${what}: its factory must continue that answer after \`chunks\` (pass them to the model). ` +
        `Else readers get the head of one answer and then another, or, where the model cannot continue, a restart.`;
    };
    return (async function* () {
      const it = source[Symbol.asyncIterator]();
      let i = from;
      for (let r = await it.next(); r.done !== true; r = await it.next()) {
        const chunk = r.value;
        if (i < known.chunks.length && shown(chunk) !== shown(known.chunks[i]) && read) {
          // Continued otherwise (the model's own words, here or after words alike): the crash-free run's answer
          // from here, as any call not recorded.
          await it.return?.();
          for (; i < known.chunks.length; i++) yield known.chunks[i];
          if (known.end?.ok === false) throw known.end.error;
          if (known.end === undefined)
            yield* traced(factory({ ...call, chunks: [...call.chunks, ...known.chunks.slice(from)] }), null, null);
          return;
        }
        if (i < known.chunks.length && shown(chunk) !== shown(known.chunks[i]))
          told(`gave ${shown(chunk)} as chunk ${i} (from 0) where the crash-free run's answer had ${shown(known.chunks[i])}`);
        else if (i >= known.chunks.length && known.end !== undefined)
          told(`gave ${shown(chunk)} as chunk ${i} (from 0), past the crash-free run's ${known.chunks.length}`);
        i++;
        yield chunk;
      }
      if (i < known.chunks.length) told(`ended after ${i} chunks, where the crash-free run's answer had ${known.chunks.length}`);
    })();
  }
}

/**
 * `source`, iterated inside the journaled context (what its chunks' production calls is journaled), each chunk and
 * its end recorded into `answer` if given; with `turn`, a pause on the run's clock before its second chunk is asked.
 * Not an iterable: as it is (the journal refuses it).
 */
function traced(
  source: AsyncIterable<unknown> | Iterable<unknown>,
  answer: Extract<Answer, { kind: 'stream' }> | null,
  turn: (() => Promise<void>) | null,
): AsyncIterable<unknown> | Iterable<unknown> {
  if (source === null || typeof source !== 'object') return source;
  const isAsync = Symbol.asyncIterator in source;
  if (!isAsync && !(Symbol.iterator in source)) return source;
  return {
    [Symbol.asyncIterator](): AsyncIterator<unknown> {
      const it: AsyncIterator<unknown> | Iterator<unknown> = journaled.run(true, () =>
        isAsync ? source[Symbol.asyncIterator]() : source[Symbol.iterator](),
      );
      let asked = 0;
      return {
        async next(): Promise<IteratorResult<unknown>> {
          if (asked++ === 1 && turn !== null) await turn();
          let r: IteratorResult<unknown>;
          try {
            r = await journaled.run(true, () => it.next());
            // (A sync iterable's chunks are awaited, as for await does.)
            if (!isAsync && r.done !== true) {
              const value: unknown = r.value;
              r = { done: false, value: await journaled.run(true, () => value) };
            }
          } catch (error) {
            if (answer !== null && answer.end === undefined) answer.end = { ok: false, error };
            throw error;
          }
          if (answer !== null && answer.end === undefined) {
            if (r.done === true) answer.end = { ok: true };
            else answer.chunks.push(r.value);
          }
          return r;
        },
        async return(value?: unknown): Promise<IteratorResult<unknown>> {
          await journaled.run(true, () => it.return?.(value));
          return { done: true, value };
        },
      };
    },
  };
}
