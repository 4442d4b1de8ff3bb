// Reading the outputs of one key (or of a set of keys) of a distributed stream function, from a position a client
// can hand back to go on exactly after the last output it got: the cursor each output carries (an SSE id, see
// key-http.ts). Outputs live in their partition's output stream (docs/redis/storage.md), so a key's reader reads
// that stream after its position and keeps the key's outputs; each read is one script call that also proves no
// output between the position and what it returns was trimmed away (lua/read-after.lua). The reader itself, the
// cursor and the session's end are the common layer's (common/key-reader.ts): this file is its Redis source.
import type { KeyOutputs } from '../../durable/common/clients';
import type { RedisName } from '../log/name';
import { type RedisOptions, type Resolved, resolveOptions } from '../log/options';
import { type RedisClientLike, readStreams, send } from '../log/connection';
import { compareIds, formatCursor, idBefore } from '../../durable/common/cursor';
import { type OutputItem, outputItem } from '../../durable/common/outputs';
import {
  KEY_OPTIONS,
  type KeyPlan,
  type KeyReadOptions,
  KeyReader,
  type KeySource,
  type PartitionRead,
  type Verdict,
  keyOutputs,
  keyPlan,
} from '../../durable/common/key-reader';
import { retriedOnConnection } from './reader';
import { reportable } from '../../durable/common/reportable';
import { Script } from '../log/script';

export type { KeyOutput, SessionEndInfo } from '../../durable/common/key-reader';
export { KEY_OPTIONS, MAX_KEYS } from '../../durable/common/key-reader';

/** Options of `redisKeyOutputs` (and of `redisSse`, `redisNdjson`, which add their own). */
export interface RedisKeyOutputsOptions<O = unknown> extends RedisOptions<O>, KeyReadOptions<O> {
  /** The function's name in Redis; a `RedisName<I, O>` gives the reader the function's output type. */
  name: RedisName<never, O>;
}

/** The options of a Redis key reader, checked. */
export interface KeySettings<O> extends KeyPlan<O> {
  o: Resolved<O>;
  /** The output streams of the plan's partitions. */
  names: string[];
}

/** Checks a key reader's options (`own`: the entry point's others), `from` included: it throws `ResumeCursorError`. */
export function keySettings<O>(
  options: RedisKeyOutputsOptions<O>,
  what: string,
  own: readonly string[] = KEY_OPTIONS,
): KeySettings<O> {
  const o = resolveOptions(options, what, own);
  const plan = keyPlan(options, what, o.partitions);
  return { ...plan, o, names: plan.partitions.map((p) => o.keys.output(p)) };
}

/** Strings as Buffers (the codec decodes the values), maps as flat arrays. */
const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
/** How long a read waits for a new output before it looks again, ms (as `redisOutputs`). */
const BLOCK_MS = 1000;
const READ_AFTER = new Script('read-after.lua');

/**
 * Whether reading after `position`, which is not an entry of the stream, is exact: `ok` when no output after it
 * can have been removed; `future` when it is after the last id the stream gave; `unknown` when it lies among the
 * kept outputs yet is none of them; `trimmed` when outputs after it were removed, or may have been (it is before
 * the first kept output, and some were removed). Trims remove the oldest outputs only (the library never
 * deletes others), so every output removed is before the first one kept.
 */
export function judge(position: string, length: number, last: string, added: number, first: string): Exclude<Verdict, 'entry'> {
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
 * A key reader's reads on Redis, on a connection of its own (a `duplicate()` of the user's client): each read one
 * script call per partition (lua/read-after.lua: the entries after the position, and what proves it exact); a
 * wait, one blocking XREAD. A lost connection is made again and the call repeated from the same positions.
 */
export class RedisKeySource<O> implements KeySource<O> {
  readonly server = 'Redis';
  readonly #s: KeySettings<O>;
  readonly #closed = new AbortController();
  #client: RedisClientLike | null = null;

  constructor(settings: KeySettings<O>) {
    this.#s = settings;
  }

  close(): void {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    if (this.#client !== null) void Promise.resolve(this.#client.destroy()).catch(() => {});
  }

  async open(): Promise<void> {
    const client = this.#s.o.client.duplicate();
    this.#client = client;
    // Its commands report their own failures; without a listener an 'error' event would throw.
    client.on('error', () => {});
    await client.connect();
    // node-redis (6.3) lets a connect() under way go on after destroy(): it resolves, and the connection stays
    // open. A close() meanwhile is honoured here.
    if (this.#closed.signal.aborted) {
      client.destroy();
      throw new Error('The reader was closed while it connected');
    }
  }

  async read(positions: readonly string[], count: number): Promise<PartitionRead<O>[]> {
    const s = this.#s;
    const client = this.#client as RedisClientLike;
    const replies = await retriedOnConnection(
      () =>
        Promise.all(
          s.names.map((name, i) => READ_AFTER.run(client, [name], [positions[i], String(count)], BUFFERS) as Promise<ReadReply>),
        ),
      this.#closed.signal,
    );
    return replies.map(([exact, entries, length, last, added, first], i) => {
      const lastId = String(last ?? '0-0');
      const firstId = first === undefined ? '' : String(first);
      return {
        verdict: exact === 1 ? 'entry' : judge(positions[i], Number(length), lastId, Number(added), firstId),
        last: lastId,
        first: firstId,
        entries: entries.map(([id, list]) => {
          const key = entryKey(list);
          const item =
            key === undefined || !s.keys.has(key) ? null : (outputItem(s.o.codec, s.partitions[i], id, list) as OutputItem<O>);
          return { id: id.toString(), item };
        }),
      };
    });
  }

  async at(position: string): Promise<OutputItem<O> | null> {
    const s = this.#s;
    const client = this.#client as RedisClientLike;
    const got = (await retriedOnConnection(
      () => send(client, s.names[0], ['XRANGE', s.names[0], position, position], BUFFERS),
      this.#closed.signal,
    )) as [Buffer, unknown][];
    if (got.length === 0 || entryKey(got[0][1]) === undefined) return null;
    return outputItem<O>(s.o.codec, s.partitions[0], got[0][0], got[0][1]);
  }

  async wait(positions: readonly string[]): Promise<void> {
    const client = this.#client as RedisClientLike;
    await retriedOnConnection(
      () => readStreams(client, ['XREAD', 'COUNT', '1'], this.#s.names, [...positions], BUFFERS, BLOCK_MS),
      this.#closed.signal,
    );
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
  return readKeyOutputs(options, 'redisKeyOutputs()');
}

/** `redisKeyOutputs` for the entry point `what` (named in its errors). */
export function readKeyOutputs<O>(options: RedisKeyOutputsOptions<O>, what: string): RedisKeyOutputs<O> {
  const settings = keySettings(options, what);
  return keyOutputs(settings, () => new KeyReader(settings, new RedisKeySource(settings)));
}

/** What `redisKeyOutputs` returns: the outputs as an async iterable, and a disposer for `await using`. */
export interface RedisKeyOutputs<O = unknown> extends KeyOutputs<O> {
  /** Ends every loop over these outputs (its reading stopped), and resolves once they have ended. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
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
export function redisCursor(options: RedisCursorOptions): Promise<string> {
  return cursorOf(options, 'redisCursor()');
}

/** `redisCursor` for the entry point `what` (named in its errors). */
export async function cursorOf(options: RedisCursorOptions, what: string): Promise<string> {
  const s = keySettings(options as RedisKeyOutputsOptions<unknown>, what, ['key', 'keys']);
  let replies: ReadReply[];
  try {
    replies = (await Promise.all(
      s.names.map((name) => READ_AFTER.run(s.o.client, [name], ['0-0', '0'], BUFFERS)),
    )) as ReadReply[];
  } catch (error) {
    // (A closed client, a lost connection or a server that does not answer as ERR_VELO_REDIS_CONNECTION, its error the cause.)
    throw reportable(error);
  }
  return formatCursor(
    s.partitions,
    replies.map(([, , , last]) => String(last ?? '0-0')),
  );
}
