// Reading the outputs of one key (or of a set of keys) of a distributed stream function, from a position a client
// can hand back to go on exactly after the last output it got: the cursor each output carries (an SSE id, see
// key-http.ts). Outputs live in their partition's output stream (docs/redis/storage.md), so a key's reader reads
// that stream after its position and keeps the key's outputs; each read is one script call that also proves no
// output between the position and what it returns was trimmed away (lua/read-after.lua).
import { describe, invalidType, invalidValue, logResetError, ResumeCursorError, ResumeTrimmedError } from '../../errors';
import { integerOption } from '../../validate';
import type { RedisName } from '../log/name';
import { checkKey, fnv1a, type RedisOptions, type Resolved, resolveOptions } from '../log/options';
import { type RedisClientLike, readStreams, send } from '../log/connection';
import { compareIds, formatCursor, idBefore, parseCursor } from './cursor';
import { type OutputItem, outputItem } from '../common/outputs';
import { retriedOnConnection } from './reader';
import { Script } from '../log/script';

/** An output of the keys read, with the cursor to go on after it. */
export type KeyOutput<O> = OutputItem<O> & {
  /**
   * Where the reader is once this output is read: pass it back (`from`, or as SSE's `Last-Event-ID`) to read
   * on exactly after it. `<partition>:<id>`, one pair per partition of the keys, joined by commas.
   */
  cursor: string;
};

/** Options of `redisKeyOutputs` (and of `redisSse`, `redisNdjson`, which add their own). */
export interface RedisKeyOutputsOptions<O = unknown> extends RedisOptions<O> {
  /** The function's name in Redis; a `RedisName<I, O>` gives the reader the function's output type. */
  name: RedisName<never, O>;
  /** The key whose outputs to read (or `keys`). */
  key?: string;
  /** A set of keys whose outputs to read (at most 100), instead of `key`. */
  keys?: readonly string[];
  /**
   * A cursor (an output's `cursor`, or `redisCursor()`'s): read the outputs after it. `null` or `undefined`:
   * none, then `start` says where. Refused at the call when it is not one a reader of these keys writes
   * (`ResumeCursorError`, `ERR_VELO_BAD_CURSOR`), at the first read when Redis says it cannot be (after the
   * newest output, or not an output's id) or that outputs after it were removed (`ResumeTrimmedError`,
   * `ERR_VELO_RESUME_TRIMMED`).
   */
  from?: string | null;
  /** Without `from`: `'start'` (the default: every output kept) or `'end'` (only outputs written from now on). */
  start?: 'start' | 'end';
  /**
   * One key only: follow one session of the key and stop at its end: the session of the first output read (for
   * `redisSse` resumed by a client's `Last-Event-ID`, the session of the output it names, and nothing if that
   * output was its session's last). Its end is known from its outputs: a failure (always a session's last), an
   * output for which this function (if one is given) returns true, or an output of a later session of the key
   * (which is not delivered). Default `false`: read on across sessions.
   */
  sessionEnd?: boolean | ((output: KeyOutput<O>) => boolean);
  /** Entries read per partition per call. Default 256. */
  count?: number;
  /** Ends the reading (and closes its connection). */
  signal?: AbortSignal;
}

/** Why a reader that follows a session (`sessionEnd`) stopped. */
export interface SessionEndInfo {
  /** The key. */
  key: string;
  /** The session that ended. */
  sid: string;
  /** `failure`: its last output is a failure; `last`: `sessionEnd(output)` said so; `next`: an output of a later session came. */
  reason: 'failure' | 'last' | 'next';
}

/** The options shared by the key readers, checked. */
export interface KeySettings<O> {
  o: Resolved<O>;
  keys: ReadonlySet<string>;
  /** The partitions of the keys, ascending, and their output streams. */
  partitions: number[];
  names: string[];
  /** The positions `from` gives (undefined: none). */
  from: string[] | undefined;
  /**
   * `from` is the cursor of the last output its client got (SSE's `Last-Event-ID`): a followed session is the
   * one of that output, and if it had ended there, there is nothing to read. Otherwise (`from` from the
   * application, a `redisCursor()`) the reader follows the session of the first output after it.
   */
  resumed: boolean;
  start: 'start' | 'end';
  sessionEnd: false | true | ((output: KeyOutput<O>) => boolean);
  count: number;
  signal: AbortSignal | undefined;
}

/** The most keys one reader reads (its cursor has a pair per partition of them: a few KB at most). */
export const MAX_KEYS = 100;
/** The options a key reader takes besides the shared ones. */
export const KEY_OPTIONS = ['key', 'keys', 'from', 'start', 'sessionEnd', 'count', 'signal'] as const;

/** Checks a key reader's options (`own`: the entry point's others), `from` included: it throws `ResumeCursorError`. */
export function keySettings<O>(
  options: RedisKeyOutputsOptions<O>,
  what: string,
  own: readonly string[] = KEY_OPTIONS,
): KeySettings<O> {
  const o = resolveOptions(options, what, own);
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
  const partitions = [...new Set(list.map((k) => fnv1a(k) % o.partitions))].sort((a, b) => a - b);
  if (start !== 'start' && start !== 'end')
    throw invalidValue(`${what}: options.start must be 'start' or 'end', not ${describe(start)}`);
  if (typeof sessionEnd !== 'boolean' && typeof sessionEnd !== 'function')
    throw invalidType(`${what}: options.sessionEnd must be a boolean or a function, not ${describe(sessionEnd)}`);
  if (sessionEnd !== false && set.size > 1)
    throw invalidValue(`${what}: options.sessionEnd follows one session of one key: give options.key, not ${set.size} keys`);
  integerOption(what, 'count', count, 1, 10_000);
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw invalidType(`${what}: options.signal must be an AbortSignal, not ${describe(signal)}`);
  const resume = from === undefined || from === null ? undefined : parseCursor(from, partitions, `${what}: options.from`);
  return {
    o,
    keys: set,
    partitions,
    names: partitions.map((p) => o.keys.output(p)),
    from: resume,
    resumed: false,
    start,
    sessionEnd,
    count,
    signal,
  };
}

/** Strings as Buffers (the codec decodes the values), maps as flat arrays. */
const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
/** How long a read waits for a new output before it looks again, ms (as `redisOutputs`). */
const BLOCK_MS = 1000;
const READ_AFTER = new Script('read-after.lua');

/** What `lua/read-after.lua` says of a position that is not an entry of its stream. */
type Verdict = 'ok' | 'future' | 'unknown' | 'trimmed';

/**
 * Whether reading after `position`, which is not an entry of the stream, is exact: `ok` when no output after it
 * can have been removed; `future` when it is after the last id the stream gave; `unknown` when it lies among the
 * kept outputs yet is none of them; `trimmed` when outputs after it were removed, or may have been (it is before
 * the first kept output, and some were removed). Trims remove the oldest outputs only (the library never
 * deletes others), so every output removed is before the first one kept.
 */
export function judge(position: string, length: number, last: string, added: number, first: string): Verdict {
  const c = compareIds(position, last);
  if (c > 0) return 'future';
  // At the stream's end: nothing after it was ever written.
  if (c === 0) return 'ok';
  // Right before the first kept output: nothing can lie between.
  if (first !== '' && idBefore(first) === position) return 'ok';
  if (first !== '' && compareIds(position, first) > 0) return 'unknown';
  // Before every kept output: exact if none was ever removed (-1: the server does not say).
  return added >= 0 && added === length ? 'ok' : 'trimmed';
}

/** One partition's reply of lua/read-after.lua. */
type ReadReply = [number, [Buffer, unknown][], number?, Buffer?, number?, Buffer?];

/** The field `k` (the key) of an output entry's flat field list, without decoding the rest. */
function entryKey(list: unknown): string | undefined {
  if (!Array.isArray(list)) return undefined;
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i] as Buffer;
    if (name.length === 1 && name[0] === 0x6b) return String(list[i + 1]);
  }
  return undefined;
}

/**
 * A reader of some keys' outputs on a connection of its own: `open()` connects and checks where it starts,
 * `next()` gives the next outputs read (a read's worth) or null once done, `close()` stops it at any time (its
 * connection is destroyed, a wait ends). Positions only move over entries handed out or skipped (other keys'),
 * so each output's cursor is exact.
 */
export class KeyReader<O> {
  readonly #s: KeySettings<O>;
  readonly #closed = new AbortController();
  #client: RedisClientLike | null = null;
  #positions: string[] = [];
  #ready: KeyOutput<O>[] = [];
  /** The session followed (`sessionEnd`), once known. */
  #sid: string | undefined;
  /** Set when the followed session ended (`sessionEnd`): nothing more is read. */
  ended: SessionEndInfo | null = null;

  constructor(settings: KeySettings<O>) {
    this.#s = settings;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed.signal.aborted;
  }

  /** Stops the reader: its connection is destroyed, and a pending `open()` or `next()` ends (rejects). */
  close(): void {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    if (this.#client !== null) void Promise.resolve(this.#client.destroy()).catch(() => {});
  }

  /**
   * Connects and checks the start: `from` (a `ResumeCursorError` or `ResumeTrimmedError` if Redis says it
   * cannot be read on from), or the start or end of the streams. False when the reader follows a session
   * (`sessionEnd`) that had already ended at `from`: there is nothing to read (`ended` says why).
   */
  async open(): Promise<boolean> {
    const s = this.#s;
    if (this.closed) throw new Error('The reader is closed');
    const client = s.o.client.duplicate();
    this.#client = client;
    // Its commands report their own failures; without a listener an 'error' event would throw.
    client.on('error', () => {});
    await client.connect();
    // node-redis (6.3) lets a connect() under way go on after destroy(): it resolves, and the connection stays
    // open. A close() meanwhile is honoured here.
    if (this.closed) {
      client.destroy();
      throw new Error('The reader was closed while it connected');
    }
    if (s.from !== undefined) {
      this.#positions = [...s.from];
      const replies = await this.#read();
      // A client's own position (`resumed`): the output there, if it is one of the key's, is of the session it
      // follows (maybe its last). Read before the reply is taken: the outputs after it may be of a later session.
      if (s.sessionEnd !== false && s.resumed && replies[0][0] === 1) await this.#sessionAt(s.from[0]);
      if (this.ended !== null) return false;
      for (let i = 0; i < replies.length; i++) this.#take(i, replies[i], true);
    } else {
      // Where each partition's stream starts or ends now.
      this.#positions = s.names.map(() => '0-0');
      const replies = await this.#read(0);
      this.#positions = replies.map(([, , , last, , first]) =>
        s.start === 'end' || first === undefined || first.length === 0 ? String(last ?? '0-0') : idBefore(String(first)),
      );
    }
    if (s.sessionEnd !== false && this.ended === null && this.#sid !== undefined) {
      // A session followed from its client's position: if the next output of the key is of a later session, it
      // had ended there.
      while (this.#ready.length === 0 && this.ended === null) {
        const replies = await this.#read();
        for (let i = 0; i < replies.length; i++) this.#take(i, replies[i], false);
        if (replies.every(([, entries]) => entries.length < s.count)) break;
      }
    }
    return this.ended === null || this.#ready.length > 0;
  }

  /** The next outputs read (in order per key), or null once the reader is done (a session's end, or closed). */
  async next(): Promise<KeyOutput<O>[] | null> {
    const s = this.#s;
    for (;;) {
      if (this.#ready.length > 0) return this.#ready.splice(0);
      if (this.ended !== null || this.closed) return null;
      const replies = await this.#read();
      for (let i = 0; i < replies.length && this.ended === null; i++) this.#take(i, replies[i], false);
      if (this.#ready.length > 0 || this.ended !== null) continue;
      // Caught up on every partition: wait for a new entry after the positions (its content is read by the next
      // read, which checks the positions again).
      if (replies.every(([, entries]) => entries.length < s.count)) {
        const client = this.#client as RedisClientLike;
        await retriedOnConnection(
          () => readStreams(client, ['XREAD', 'COUNT', '1'], s.names, this.#positions, BUFFERS, BLOCK_MS),
          this.#closed.signal,
        );
      }
    }
  }

  /** One read of every partition after its position (`count`: entries per partition), retried over a lost connection. */
  #read(count = this.#s.count): Promise<ReadReply[]> {
    const s = this.#s;
    const client = this.#client as RedisClientLike;
    return retriedOnConnection(
      () =>
        Promise.all(
          s.names.map(
            (name, i) => READ_AFTER.run(client, [name], [this.#positions[i], String(count)], BUFFERS) as Promise<ReadReply>,
          ),
        ),
      this.#closed.signal,
    );
  }

  /** The session of the output at `position` (one key), and whether it was the session's last. */
  async #sessionAt(position: string): Promise<void> {
    const s = this.#s;
    const client = this.#client as RedisClientLike;
    const got = (await retriedOnConnection(
      () => send(client, s.names[0], ['XRANGE', s.names[0], position, position], BUFFERS),
      this.#closed.signal,
    )) as [Buffer, unknown][];
    if (got.length === 0) return;
    const [id, list] = got[0];
    if (entryKey(list) === undefined || !s.keys.has(entryKey(list) as string)) return;
    const item = outputItem(s.o.codec, s.partitions[0], id, list) as OutputItem<O>;
    this.#sid = item.sid;
    const end = this.#endOf({ ...item, cursor: formatCursor(s.partitions, this.#positions) });
    if (end !== null) this.ended = { key: item.key, sid: item.sid, reason: end };
  }

  /** Whether `output` is the last of its session, as far as its content says (`sessionEnd`). */
  #endOf(output: KeyOutput<O>): 'failure' | 'last' | null {
    const { sessionEnd } = this.#s;
    if (sessionEnd === false) return null;
    if ('error' in output) return 'failure';
    return typeof sessionEnd === 'function' && sessionEnd(output) === true ? 'last' : null;
  }

  /**
   * Takes partition `i`'s reply: checks the position it was read from (`opening`: a client's cursor, refused
   * with a ResumeCursorError; later, the reader fell behind a trim), then hands out the keys' outputs.
   */
  #take(i: number, reply: ReadReply, opening: boolean): void {
    const s = this.#s;
    const [exact, entries, length, last, added, first] = reply;
    const partition = s.partitions[i];
    const position = this.#positions[i];
    if (exact !== 1) {
      const verdict = judge(position, Number(length), String(last), Number(added), String(first));
      if (verdict === 'trimmed' || (verdict === 'unknown' && !opening)) {
        throw new ResumeTrimmedError(
          partition,
          opening
            ? `Outputs after the cursor's position ${position} in partition ${partition} were removed from Redis (the oldest kept is ${String(first) || 'none'}): they cannot be read on from there`
            : `Outputs after position ${position} in partition ${partition} were removed from Redis while this reader was behind (the oldest kept is ${String(first) || 'none'})`,
        );
      }
      if (verdict === 'future') {
        if (opening)
          throw new ResumeCursorError(
            'future',
            `The cursor's position ${position} in partition ${partition} is after the newest output there (${String(last)})`,
          );
        throw logResetError(
          partition,
          `The output stream of partition ${partition} ends at ${String(last)}, before this reader's position ${position}: Redis lost data (a restart without persistence, a failover to a replica behind)`,
        );
      }
      if (verdict === 'unknown')
        throw new ResumeCursorError(
          'unknown',
          `The cursor's position ${position} in partition ${partition} is not the id of an output there`,
        );
    }
    for (const [id, list] of entries) {
      const key = entryKey(list);
      if (key === undefined || !s.keys.has(key)) {
        this.#positions[i] = id.toString();
        continue;
      }
      const item = outputItem(s.o.codec, partition, id, list) as OutputItem<O>;
      if (s.sessionEnd !== false) {
        if (this.#sid === undefined) this.#sid = item.sid;
        else if (item.sid !== this.#sid) {
          // A later session of the key: the one followed has ended (this output is not handed out).
          this.ended = { key: item.key, sid: this.#sid, reason: 'next' };
          return;
        }
      }
      this.#positions[i] = id.toString();
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

/**
 * The outputs of `options.key` (or of the set `options.keys`) of the function `options.name`, as an async
 * iterable: each with its `cursor`, to read on exactly after it later (`from`). Reads on a connection of its own
 * (a `duplicate()` of `options.client`), released when the loop ends or `signal` aborts. A lost connection is
 * made again and the reading goes on from the same positions: nothing is skipped or read twice. The options are
 * checked at the call (a `from` that is no cursor of these keys throws `ResumeCursorError`).
 */
export function redisKeyOutputs<O = unknown>(options: RedisKeyOutputsOptions<O>): RedisKeyOutputs<O> {
  const settings = keySettings(options, 'redisKeyOutputs()');
  // `Symbol.asyncDispose` closes each loop's reader and returns its iterator (held weakly).
  let disposed = false;
  const loops = new Set<{ reader: KeyReader<O>; iterator: WeakRef<AsyncGenerator<KeyOutput<O>>> }>();
  return {
    [Symbol.asyncIterator]() {
      const reader = new KeyReader(settings);
      if (disposed) reader.close();
      const iterator = iterate(settings, reader, () => loops.delete(loop));
      const loop = { reader, iterator: new WeakRef(iterator) };
      loops.add(loop);
      return iterator;
    },
    async [Symbol.asyncDispose]() {
      disposed = true;
      const ending = [...loops].map(({ reader, iterator }) => {
        reader.close();
        return iterator.deref()?.return(undefined) ?? Promise.resolve();
      });
      await Promise.allSettled(ending);
    },
  };
}

/** What `redisKeyOutputs` returns: the outputs as an async iterable, and a disposer for `await using`. */
export interface RedisKeyOutputs<O = unknown> extends AsyncIterable<KeyOutput<O>>, AsyncDisposable {
  /** Ends every loop over these outputs (its connection closed), and resolves once they have ended. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

async function* iterate<O>(settings: KeySettings<O>, reader: KeyReader<O>, done: () => void): AsyncGenerator<KeyOutput<O>> {
  const { signal } = settings;
  const stop = () => reader.close();
  signal?.addEventListener('abort', stop, { once: true });
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
    signal?.removeEventListener('abort', stop);
    reader.close();
    done();
  }
}

/** Options of `redisCursor`. */
export interface RedisCursorOptions extends RedisOptions<unknown> {
  /** The key (or `keys`) whose readers will take the cursor. */
  key?: string;
  /** The set of keys, instead of `key`. */
  keys?: readonly string[];
}

/**
 * A cursor at the end of the outputs of `options.key` (or `options.keys`) now: a reader given it as `from` reads
 * what is written after this call. Take it before you send the events whose outputs a client will follow, and
 * hand it to the client (say, as `?from=` of its EventSource URL): none of those outputs can come before it.
 * Uses `options.client` (no connection of its own).
 */
export async function redisCursor(options: RedisCursorOptions): Promise<string> {
  const s = keySettings(options as RedisKeyOutputsOptions<unknown>, 'redisCursor()', ['key', 'keys']);
  const replies = (await Promise.all(
    s.names.map((name) => READ_AFTER.run(s.o.client, [name], ['0-0', '0'], BUFFERS)),
  )) as ReadReply[];
  return formatCursor(
    s.partitions,
    replies.map(([, , , last]) => String(last ?? '0-0')),
  );
}
