// Reading the outputs of one key (or of a set of keys) of a distributed stream function from a position a client
// hands back, the part every backend shares: the key readers' own options, the cursor each output carries, the
// rule of a followed session's end, and what a refused position throws. A backend gives a `KeySource`: its reads
// of the partitions after the positions, each with its verdict on the position read from (Redis: a Lua script;
// Postgres: one statement), so that the reader never passes outputs removed or not yet read.
import { describe, invalidType, invalidValue, logResetError, ResumeCursorError, ResumeTrimmedError } from '../../errors';
import { integerOption } from '../../validate';
import { watchAbort } from '../../watch-abort';
import { checkKey, fnv1a } from './keys';
import { formatCursor, idBefore, parseCursor } from './cursor';
import { MAX_READ_COUNT, type OutputItem } from './outputs';

/** An output of the keys read, with the cursor to go on after it. */
export type KeyOutput<O> = OutputItem<O> & {
  /**
   * Where the reader is once this output is read: pass it back (`from`, or as SSE's `Last-Event-ID`) to read
   * on exactly after it. `<partition>:<id>`, one pair per partition of the keys, joined by commas.
   */
  cursor: string;
};

/** Why a reader that follows a session (`sessionEnd`) stopped. */
export interface SessionEndInfo {
  /** The key. */
  key: string;
  /** The session that ended. */
  sid: string;
  /** `failure`: its last output is a failure; `last`: `sessionEnd(output)` said so; `next`: an output of a later session came. */
  reason: 'failure' | 'last' | 'next';
}

/** The key readers' own options, on every backend. */
export interface KeyReadOptions<O = unknown> {
  /** The key whose outputs to read (or `keys`). */
  key?: string;
  /** A set of keys whose outputs to read (at most 100), instead of `key`. */
  keys?: readonly string[];
  /**
   * A cursor (an output's `cursor`, or one a cursor function gives): read the outputs after it. `null` or
   * `undefined`: none, then `start` says where. Refused at the call when it is not one a reader of these keys
   * writes (`ResumeCursorError`, `ERR_VELO_BAD_CURSOR`), at the first read when the server says it cannot be
   * (after the newest output, or not an output's id) or that outputs after it were removed (`ResumeTrimmedError`,
   * `ERR_VELO_RESUME_TRIMMED`).
   */
  from?: string | null;
  /** Without `from`: `'start'` (the default: every output kept) or `'end'` (only outputs written from now on). */
  start?: 'start' | 'end';
  /**
   * One key only: follow one session of the key and stop at its end: the session of the first output read (for
   * SSE resumed by a client's `Last-Event-ID`, the session of the output it names, and nothing if that output was
   * its session's last). Its end is known from its outputs: a failure (always a session's last), an output for
   * which this function (if one is given) returns true, or an output of a later session of the key (which is not
   * delivered). Default `false`: read on across sessions.
   */
  sessionEnd?: boolean | ((output: KeyOutput<O>) => boolean);
  /** Entries read per partition per call, 1 to 10,000. Default 256. */
  count?: number;
  /** Ends the reading (and closes its connection). */
  signal?: AbortSignal;
}

/** The key readers' options, checked (a backend's settings add its own). */
export interface KeyPlan<O> {
  keys: ReadonlySet<string>;
  /** The partitions of the keys, ascending. */
  partitions: number[];
  /** The positions `from` gives (undefined: none). */
  from: string[] | undefined;
  /**
   * `from` is the cursor of the last output its client got (SSE's `Last-Event-ID`): a followed session is the
   * one of that output, and if it had ended there, there is nothing to read. Otherwise (`from` from the
   * application, a cursor function's) the reader follows the session of the first output after it.
   */
  resumed: boolean;
  start: 'start' | 'end';
  sessionEnd: false | true | ((output: KeyOutput<O>) => boolean);
  count: number;
  signal: AbortSignal | undefined;
}

/** The most keys one reader reads (its cursor has a pair per partition of them: a few KB at most). */
export const MAX_KEYS = 100;
/** The options a key reader takes besides a backend's shared ones. */
export const KEY_OPTIONS = ['key', 'keys', 'from', 'start', 'sessionEnd', 'count', 'signal'] as const;

/** Checks a key reader's own options for a function of `partitionCount` partitions, `from` included (ResumeCursorError). */
export function keyPlan<O>(options: KeyReadOptions<O>, what: string, partitionCount: number): KeyPlan<O> {
  const { key, keys, from, start = 'start', sessionEnd = false, count = 256, signal } = options;
  let list: string[];
  if (key !== undefined && keys !== undefined) throw invalidValue(`${what}: give options.key or options.keys, not both`);
  if (key !== undefined) list = [key];
  else if (keys !== undefined) {
    if (!Array.isArray(keys)) throw invalidType(`${what}: options.keys must be an array of keys, not ${describe(keys)}`);
    if (keys.length === 0 || keys.length > MAX_KEYS)
      throw invalidValue(`${what}: options.keys must hold 1 to ${MAX_KEYS} keys, not ${keys.length}`);
    list = (keys as readonly string[]).slice();
  } else throw invalidValue(`${what}: options.key (or options.keys) is required: the key whose outputs to read`);
  for (const k of list) checkKey(k);
  const set = new Set(list);
  const partitions = [...new Set(list.map((k) => fnv1a(k) % partitionCount))].sort((a, b) => a - b);
  if (start !== 'start' && start !== 'end')
    throw invalidValue(`${what}: options.start must be 'start' or 'end', not ${describe(start)}`);
  if (typeof sessionEnd !== 'boolean' && typeof sessionEnd !== 'function')
    throw invalidType(`${what}: options.sessionEnd must be a boolean or a function, not ${describe(sessionEnd)}`);
  if (sessionEnd !== false && set.size > 1)
    throw invalidValue(`${what}: options.sessionEnd follows one session of one key: give options.key, not ${set.size} keys`);
  integerOption(what, 'count', count, 1, MAX_READ_COUNT);
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw invalidType(`${what}: options.signal must be an AbortSignal, not ${describe(signal)}`);
  const resume = from === undefined || from === null ? undefined : parseCursor(from, partitions, `${what}: options.from`);
  return { keys: set, partitions, from: resume, resumed: false, start, sessionEnd, count, signal };
}

/**
 * What a backend says of a position it read after: `entry`, an output's id; `ok`, no output's id, yet no output
 * after it can be missing; `future`, after the newest id the partition gave; `unknown`, among the kept outputs yet
 * none of them; `trimmed`, outputs after it were (or may have been) removed.
 */
export type Verdict = 'entry' | 'ok' | 'future' | 'unknown' | 'trimmed';

/** One partition's read after a position. */
export interface PartitionRead<O> {
  verdict: Verdict;
  /** The newest id the partition gave (`0-0`: none), and the oldest output kept (`''`: none). */
  last: string;
  first: string;
  /** The entries after the position, in order, at most the count asked: each id, and its output if of the keys read. */
  entries: { id: string; item: OutputItem<O> | null }[];
}

/** A backend's reads for a `KeyReader` (positions are per partition of the plan, in its order). */
export interface KeySource<O> {
  /** The server's name in messages (`Redis`, `Postgres`). */
  readonly server: string;
  /** Connects, if the backend reads on a connection of its own. */
  open(): Promise<void>;
  /** One read of every partition after its position, `count` entries at most each (0: only the verdict, last, first). */
  read(positions: readonly string[], count: number): Promise<PartitionRead<O>[]>;
  /** The output at `position` in the plan's first partition, whatever its key, or null. */
  at(position: string): Promise<OutputItem<O> | null>;
  /** Waits until an output may be after the positions, or a while (then the reader reads again). */
  wait(positions: readonly string[]): Promise<void>;
  /** Stops: its connection closed, a read or wait under way ends (rejects or resolves). */
  close(): void;
}

/**
 * A reader of some keys' outputs: `open()` connects and checks where it starts, `next()` gives the next outputs
 * read (a read's worth) or null once done, `close()` stops it at any time. Positions only move over entries
 * handed out or skipped (other keys'), so each output's cursor is exact.
 */
export class KeyReader<O> {
  readonly plan: KeyPlan<O>;
  readonly #source: KeySource<O>;
  #closed = false;
  #positions: string[] = [];
  #ready: KeyOutput<O>[] = [];
  /** The session followed (`sessionEnd`), once known. */
  #sid: string | undefined;
  /** Set when the followed session ended (`sessionEnd`): nothing more is read. */
  ended: SessionEndInfo | null = null;

  constructor(plan: KeyPlan<O>, source: KeySource<O>) {
    this.plan = plan;
    this.#source = source;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stops the reader: its source is closed, and a pending `open()` or `next()` ends (rejects). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#source.close();
  }

  /**
   * Connects and checks the start: `from` (a `ResumeCursorError` or `ResumeTrimmedError` if the server says it
   * cannot be read on from), or the start or end of the partitions. False when the reader follows a session
   * (`sessionEnd`) that had already ended at `from`: there is nothing to read (`ended` says why).
   */
  async open(): Promise<boolean> {
    const s = this.plan;
    if (this.closed) throw new Error('The reader is closed');
    await this.#source.open();
    if (this.closed) throw new Error('The reader was closed while it connected');
    if (s.from !== undefined) {
      this.#positions = [...s.from];
      const reads = await this.#source.read(this.#positions, s.count);
      // A client's own position (`resumed`): the output there, if it is one of the key's, is of the session it
      // follows (maybe its last). Read before the reply is taken: the outputs after it may be of a later session.
      if (s.sessionEnd !== false && s.resumed && reads[0].verdict === 'entry') await this.#sessionAt(s.from[0]);
      if (this.ended !== null) return false;
      for (let i = 0; i < reads.length; i++) this.#take(i, reads[i], true);
    } else {
      // Where each partition starts or ends now.
      this.#positions = s.partitions.map(() => '0-0');
      const reads = await this.#source.read(this.#positions, 0);
      this.#positions = reads.map(({ last, first }) => (s.start === 'end' || first === '' ? last : idBefore(first)));
    }
    if (s.sessionEnd !== false && this.ended === null && this.#sid !== undefined) {
      // A session followed from its client's position: if the next output of the key is of a later session, it
      // had ended there.
      while (this.#ready.length === 0 && this.ended === null) {
        const reads = await this.#source.read(this.#positions, s.count);
        for (let i = 0; i < reads.length; i++) this.#take(i, reads[i], false);
        if (reads.every(({ entries }) => entries.length < s.count)) break;
      }
    }
    return this.ended === null || this.#ready.length > 0;
  }

  /** The next outputs read (in order per key), or null once the reader is done (a session's end, or closed). */
  async next(): Promise<KeyOutput<O>[] | null> {
    const s = this.plan;
    for (;;) {
      if (this.#ready.length > 0) return this.#ready.splice(0);
      if (this.ended !== null || this.closed) return null;
      const reads = await this.#source.read(this.#positions, s.count);
      for (let i = 0; i < reads.length && this.ended === null; i++) this.#take(i, reads[i], false);
      if (this.#ready.length > 0 || this.ended !== null) continue;
      // Caught up on every partition: wait for a new entry after the positions (read by the next read, which
      // checks the positions again).
      if (reads.every(({ entries }) => entries.length < s.count)) await this.#source.wait(this.#positions);
    }
  }

  /** The session of the output at `position` (one key), and whether it was the session's last. */
  async #sessionAt(position: string): Promise<void> {
    const s = this.plan;
    const item = await this.#source.at(position);
    if (item === null || !s.keys.has(item.key)) return;
    this.#sid = item.sid;
    const end = this.#endOf({ ...item, cursor: formatCursor(s.partitions, this.#positions) });
    if (end !== null) this.ended = { key: item.key, sid: item.sid, reason: end };
  }

  /** Whether `output` is the last of its session, as far as its content says (`sessionEnd`). */
  #endOf(output: KeyOutput<O>): 'failure' | 'last' | null {
    const { sessionEnd } = this.plan;
    if (sessionEnd === false) return null;
    if ('error' in output) return 'failure';
    return typeof sessionEnd === 'function' && sessionEnd(output) === true ? 'last' : null;
  }

  /**
   * Takes partition `i`'s read: checks the position it was read from (`opening`: a client's cursor, refused
   * with a ResumeCursorError; later, the reader fell behind a trim), then hands out the keys' outputs.
   */
  #take(i: number, read: PartitionRead<O>, opening: boolean): void {
    const s = this.plan;
    const { verdict, last, first } = read;
    const partition = s.partitions[i];
    const position = this.#positions[i];
    const server = this.#source.server;
    if (verdict === 'trimmed' || (verdict === 'unknown' && !opening)) {
      throw new ResumeTrimmedError(
        partition,
        opening
          ? `Outputs after the cursor's position ${position} in partition ${partition} were removed from ${server} (the oldest kept is ${first || 'none'}): they cannot be read on from there`
          : `Outputs after position ${position} in partition ${partition} were removed from ${server} while this reader was behind (the oldest kept is ${first || 'none'})`,
      );
    }
    if (verdict === 'future') {
      if (opening)
        throw new ResumeCursorError(
          'future',
          `The cursor's position ${position} in partition ${partition} is after the newest output there (${last})`,
        );
      throw logResetError(
        partition,
        `The outputs of partition ${partition} end at ${last}, before this reader's position ${position}: ${server} lost data (${server === 'Redis' ? 'a restart without persistence, a failover to a replica behind' : 'a restore from an older backup'})`,
      );
    }
    if (verdict === 'unknown')
      throw new ResumeCursorError(
        'unknown',
        `The cursor's position ${position} in partition ${partition} is not the id of an output there`,
      );
    for (const { id, item } of read.entries) {
      if (item === null || !s.keys.has(item.key)) {
        this.#positions[i] = id;
        continue;
      }
      if (s.sessionEnd !== false) {
        if (this.#sid === undefined) this.#sid = item.sid;
        else if (item.sid !== this.#sid) {
          // A later session of the key: the one followed has ended (this output is not handed out).
          this.ended = { key: item.key, sid: this.#sid, reason: 'next' };
          return;
        }
      }
      this.#positions[i] = id;
      const output: KeyOutput<O> = { ...item, cursor: formatCursor(s.partitions, this.#positions) };
      this.#ready.push(output);
      const end = this.#endOf(output);
      if (end !== null) {
        this.ended = { key: item.key, sid: item.sid, reason: end };
        return;
      }
    }
  }
}

/** What a key reader function returns: the outputs as an async iterable, and a disposer for `await using`. */
export interface KeyOutputs<O = unknown> extends AsyncIterable<KeyOutput<O>>, AsyncDisposable {
  /** Ends every loop over these outputs (its connection closed), and resolves once they have ended. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The outputs `plan` reads, as an async iterable: each loop on a reader of its own (`reader()`), closed when the
 * loop ends, `plan.signal` aborts, or `Symbol.asyncDispose` is called.
 */
export function keyOutputs<O>(plan: KeyPlan<O>, reader: () => KeyReader<O>): KeyOutputs<O> {
  // `Symbol.asyncDispose` closes each loop's reader and returns its iterator (held weakly).
  let disposed = false;
  const loops = new Set<{ reader: KeyReader<O>; iterator: WeakRef<AsyncGenerator<KeyOutput<O>>> }>();
  return {
    [Symbol.asyncIterator]() {
      const r = reader();
      if (disposed) r.close();
      const iterator = iterate(plan, r, () => loops.delete(loop));
      const loop = { reader: r, iterator: new WeakRef(iterator) };
      loops.add(loop);
      return iterator;
    },
    async [Symbol.asyncDispose]() {
      disposed = true;
      const ending = [...loops].map(({ reader: r, iterator }) => {
        r.close();
        return iterator.deref()?.return(undefined) ?? Promise.resolve();
      });
      await Promise.allSettled(ending);
    },
  };
}

async function* iterate<O>(plan: KeyPlan<O>, reader: KeyReader<O>, done: () => void): AsyncGenerator<KeyOutput<O>> {
  const { signal } = plan;
  // (One listener per signal however many readers share it: watchAbort.)
  const unwatch = signal === undefined ? undefined : watchAbort(signal, () => reader.close());
  try {
    if (signal?.aborted || reader.closed || !(await reader.open())) return;
    for (;;) {
      const batch = await reader.next();
      if (batch === null) return;
      for (const output of batch) {
        yield output;
        if (signal?.aborted || reader.closed) return;
      }
    }
  } catch (error) {
    // (A reader closed by an abort or a dispose ends its loop quietly.)
    if (!signal?.aborted && !reader.closed) throw error;
  } finally {
    unwatch?.();
    reader.close();
    done();
  }
}
