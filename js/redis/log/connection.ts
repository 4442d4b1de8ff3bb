// How commands reach Redis, for a single server's client (node-redis `createClient`) and a Cluster client
// (`createCluster`) alike. Every command names the key it is about: a Cluster client sends it to the master
// of that key's slot (and follows MOVED/ASK). A partition's keys share one hash tag, so each script and each
// single-partition command is in one slot. Reads over many partitions are one command on a single server
// (one blocking XREAD); on a Cluster they cannot be (CROSSSLOT: keys of one command must share a slot, not
// just a node), so they go as one non-blocking read per partition, polled.
import { IoDeadline } from '../../io-deadline';
import { assertOptionsObject, readingOptions } from '../../config';
import { integerOption } from '../../validate';

/**
 * The node-redis client calls this package makes (v5 and v6 clients, single server or Cluster, fit).
 * Pass your own connected client: TLS, auth and reconnection are its settings.
 */
export interface RedisClientLike {
  /** `(args, options)` on a single server's client, `(firstKey, isReadonly, args, options)` on a Cluster client. */
  sendCommand(...args: never[]): Promise<unknown>;
  /** A new client with the same settings (readers, blocking reads and leases get connections of their own). */
  duplicate(): RedisClientLike;
  /** Connects a duplicate. */
  connect(): Promise<unknown>;
  /** Errors of a duplicate's connection (it reconnects by itself). */
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** Closes a duplicate after its pending commands. */
  close?(): Promise<unknown>;
  /** Closes a duplicate at once. */
  destroy(): unknown;
}

/**
 * What `redisClientOptions` sets on a node-redis client (read from node-redis 6.3's source, and checked by
 * `__test__/redis-client-options.test.mjs`):
 *
 * - `socket.socketTimeout` is an idle timeout of the socket (Node's `socket.setTimeout`): no byte in either
 *   direction for that long destroys the socket, failing every command awaiting a reply. It is the only
 *   setting that ends a call already written to a server that does not answer (paused, or a network that drops
 *   packets): `commandOptions.timeout` and an `abortSignal` stop applying once a command is written.
 * - node-redis' default `reconnectStrategy` gives up after a socket timeout (the client closes for good, every
 *   later call: "The client is closed"), so with a socket timeout alone an idle producer dies. This one always
 *   reconnects, with node-redis' own back-off.
 * - `pingInterval` writes a PING that long after the last one was answered, so a healthy idle connection (a
 *   producer between sends, a blocked read) is never silent for `socketTimeout`.
 * - `commandOptions.timeout` bounds the wait of a command not yet written (queued while the client
 *   reconnects): node-redis 6 sets 5 s by default, node-redis 5 none.
 */
export interface RedisClientTimeouts {
  /** A PING this many ms after the last answered one, on every connection: 1000 unless you set it. */
  pingInterval: number;
  /** node-redis' options of every command. */
  commandOptions: {
    /** The longest a command waits to be written (the client reconnecting), ms: 5000 unless you set it. */
    timeout: number;
  };
  /** node-redis' socket options. */
  socket: {
    /** The longest a connection may stay silent, ms: 5000 unless you set it (at least twice `pingInterval`). */
    socketTimeout: number;
    /** Reconnects always (also after a socket timeout), 50 ms doubling to 2 s, plus up to 200 ms of jitter. */
    reconnectStrategy: (retries: number, cause: Error) => number;
  };
}

/** Defaults of `redisClientOptions`, ms. */
const PING_INTERVAL_MS = 1000;
const SOCKET_TIMEOUT_MS = 5000;
const COMMAND_TIMEOUT_MS = 5000;

/** node-redis' own back-off, without its giving up on a socket timeout. */
function reconnectStrategy(retries: number): number {
  return Math.min(50 * 2 ** retries, 2000) + Math.floor(Math.random() * 200);
}

/**
 * Options for node-redis' `createClient` (or `createCluster`'s `defaults`) with the timeouts and reconnects
 * velo-stream recommends (see {@link RedisClientTimeouts}): an idle client stays connected, a call to a server
 * that stops answering fails after about `socketTimeout` + `pingInterval` once the connection has nothing else
 * to write, and the client reconnects after a restart or a timeout. Your own options are kept; those you set
 * (`socket` and `commandOptions` are merged key by key) win.
 *
 * ```js
 * const client = await createClient(redisClientOptions({ url: process.env.REDIS_URL })).connect();
 * ```
 * A `url` that is `undefined` (an unset environment variable) is left out, so that node-redis connects to its
 * default server and the result types under `exactOptionalPropertyTypes`.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a `pingInterval` that is not a positive integer, or a
 * `socket.socketTimeout` below twice it.
 */
export function redisClientOptions<T extends object = Record<never, never>>(
  options?: T,
): ('url' extends keyof T
  ? Omit<T, 'url'> & {
      /** Your `url`, left out when it was `undefined`. */
      url?: Exclude<T['url' & keyof T], undefined>;
    }
  : T) &
  RedisClientTimeouts {
  // (An options object or nothing: a URL string given alone would be spread into its characters, and lost.)
  if (options !== undefined) assertOptionsObject(options, 'options', "{ url: 'redis://...' }");
  return readingOptions('options', () => clientOptions(options));
}

function clientOptions<T extends object>(options: T | undefined): ReturnType<typeof redisClientOptions<T>> {
  const own = (options ?? {}) as { socket?: object; commandOptions?: object; pingInterval?: unknown };
  const pingInterval = own.pingInterval === undefined ? PING_INTERVAL_MS : own.pingInterval;
  integerOption('redisClientOptions()', 'pingInterval', pingInterval, 1);
  const socket = { socketTimeout: SOCKET_TIMEOUT_MS, reconnectStrategy, ...own.socket };
  integerOption(
    'redisClientOptions()',
    'socket.socketTimeout',
    socket.socketTimeout,
    2 * (pingInterval as number),
    Infinity,
    `of at least twice pingInterval (${2 * (pingInterval as number)} ms: a healthy idle connection is silent for up to about pingInterval)`,
  );
  const made = {
    ...(options as T),
    pingInterval,
    commandOptions: { timeout: COMMAND_TIMEOUT_MS, ...own.commandOptions },
    socket,
  } as { url?: unknown };
  if ('url' in made && made.url === undefined) delete made.url;
  return made as ReturnType<typeof redisClientOptions<T>>;
}

/**
 * Waits for `calls`, handing each one's outcome to `settled(index, ok, valueOrError)` as it comes, and resolves
 * once every call has been handed over. Once `ms` pass in which none of them settled (the clock restarts at each
 * answer, so a big batch that Redis works through steadily is not cut), those still waiting are handed
 * `timeout()` as their error at once, and their late outcomes are dropped (handled: a late rejection is not left
 * unhandled). The commands are not withdrawn: node-redis has no way to, once written, so a server that resumes
 * may still run them. The timer's verdict waits for the answers the sockets hold (`IoDeadline`: after a frozen
 * process or a blocked event loop, an answer already there is not taken for late). One timer per batch, checked when it fires rather than moved at each answer (a timer's
 * `refresh()` per answer cost about 7,000 instructions per call in a batch of 100, callgrind).
 */
export function settleWithin<T>(
  calls: readonly Promise<T>[],
  ms: number,
  timeout: () => Error,
  settled: (index: number, ok: boolean, outcome: unknown) => void,
): Promise<void> {
  return new Promise((resolve) => {
    let waiting = calls.length;
    if (waiting === 0) return resolve();
    const done = new Uint8Array(waiting);
    let lastAnswer = 0;
    let timer: IoDeadline | undefined;
    const handOver = (i: number, ok: boolean, outcome: unknown) => {
      if (done[i] === 1) return;
      done[i] = 1;
      settled(i, ok, outcome);
      if (--waiting > 0) return;
      timer?.clear();
      resolve();
    };
    for (let i = 0; i < calls.length; i++) {
      void calls[i].then(
        (value) => {
          if (timer !== undefined) lastAnswer = performance.now();
          handOver(i, true, value);
        },
        (error: unknown) => {
          if (timer !== undefined) lastAnswer = performance.now();
          handOver(i, false, error);
        },
      );
    }
    if (ms === Infinity || waiting === 0) return;
    const check = () => {
      const left = lastAnswer + ms - performance.now();
      if (lastAnswer > 0 && left > 0) {
        timer = new IoDeadline(check, Math.ceil(left));
        return;
      }
      const error = timeout();
      for (let i = 0; i < done.length; i++) handOver(i, false, error);
    };
    timer = new IoDeadline(check, ms);
  });
}

/** Resolves when `promise` settles (true) or after `ms` (false), whichever comes first; never rejects. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  if (ms === Infinity) return settled;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([settled, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

type Args = ReadonlyArray<string | Buffer>;
type SingleSend = (args: Args, options?: object) => Promise<unknown>;
type ClusterSend = (firstKey: string | undefined, isReadonly: boolean, args: Args, options?: object) => Promise<unknown>;

const clusters = new WeakMap<object, boolean>();

/** Whether the client is a node-redis Cluster client (it has `masters` and `nodeClient`). */
export function isCluster(client: RedisClientLike): boolean {
  let known = clusters.get(client);
  if (known === undefined) {
    known = typeof (client as { nodeClient?: unknown }).nodeClient === 'function' && 'masters' in client;
    clusters.set(client, known);
  }
  return known;
}

/**
 * A command's replies as node-redis gives them by default (strings, numbers, arrays). Every command names its
 * type mapping, so a client made `withTypeMapping(...)` (Buffers for strings, say) gets the replies this
 * package reads: node-redis lets a command's options override the client's.
 */
const DEFAULT_REPLIES = Object.freeze({ typeMapping: Object.freeze({}) });

/** Sends a command about `key` (its first key; undefined for one about none, such as CLIENT ID). */
export function send(
  client: RedisClientLike,
  key: string | undefined,
  args: Args,
  options: object = DEFAULT_REPLIES,
): Promise<unknown> {
  if (isCluster(client)) return (client.sendCommand as unknown as ClusterSend)(key, false, args, options);
  return (client.sendCommand as unknown as SingleSend)(args, options);
}

/** Entries of an XREAD / XREADGROUP reply per stream name. */
export type StreamEntries = Map<string, [Buffer, unknown][]>;

/**
 * Stream -> entries of an XREAD / XREADGROUP reply, in RESP2 (`[[stream,
 * entries], ...]`) or RESP3 with maps as flat arrays (`[stream, entries, ...]`).
 */
export function xreadStreams(reply: unknown): StreamEntries {
  const out: StreamEntries = new Map();
  if (!Array.isArray(reply)) return out;
  if (reply.length > 0 && Array.isArray(reply[0])) {
    for (const [name, entries] of reply as [Buffer, [Buffer, unknown][]][]) out.set(name.toString(), entries);
  } else {
    for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), reply[i + 1] as [Buffer, unknown][]);
  }
  return out;
}

/** Polls of a Cluster read start this soon after an empty round and back off to POLL_MAX_MS. */
const POLL_MIN_MS = 5;
export const POLL_MAX_MS = 100;

/** Cuts a Cluster read's wait between polls short (`wake()`), as CLIENT UNBLOCK ends a blocked read. */
export class PollWaker {
  #wake: (() => void) | null = null;
  wake(): void {
    this.#wake?.();
  }
  /** Resolves after `ms` with false, or at `wake()` with true. */
  sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const finish = (woken: boolean) => {
        clearTimeout(timer);
        if (this.#wake === wake) this.#wake = null;
        resolve(woken);
      };
      const wake = () => finish(true);
      const timer = setTimeout(() => finish(false), ms);
      this.#wake = wake;
    });
  }
}

/**
 * XREAD or XREADGROUP (`head`: the command up to its STREAMS, without BLOCK) over several streams at their
 * positions. On a single server, one command, blocking up to `blockMs` when given. On a Cluster, one
 * non-blocking command per stream, all at once, repeated with a growing pause (5 ms up to 100 ms) while
 * every stream is empty, up to `blockMs` (a `waker` ends the wait early, with nothing read).
 */
export async function readStreams(
  client: RedisClientLike,
  head: readonly string[],
  names: readonly string[],
  positions: readonly string[],
  options: object,
  blockMs?: number,
  waker?: PollWaker,
): Promise<StreamEntries> {
  if (!isCluster(client)) {
    const block = blockMs === undefined ? [] : ['BLOCK', String(blockMs)];
    return xreadStreams(await send(client, names[0], [...head, ...block, 'STREAMS', ...names, ...positions], options));
  }
  const until = performance.now() + (blockMs ?? 0);
  let pause = POLL_MIN_MS;
  for (;;) {
    const replies = await Promise.all(
      names.map((name, i) => send(client, name, [...head, 'STREAMS', name, positions[i]], options)),
    );
    const out: StreamEntries = new Map();
    for (const reply of replies)
      for (const [name, entries] of xreadStreams(reply)) if (entries.length > 0) out.set(name, entries);
    const left = until - performance.now();
    if (out.size > 0 || blockMs === undefined || left <= 0) return out;
    // Woken: the caller's positions changed, and it asks again.
    if (await (waker ?? new PollWaker()).sleep(Math.min(pause, left))) return out;
    pause = Math.min(pause * 2, POLL_MAX_MS);
  }
}
