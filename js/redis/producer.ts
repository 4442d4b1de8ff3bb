// Producers: any process appends events to the partition of their key.
import { encodeChecked } from './codec';
import { type RedisOptions, type Resolved, checkKey, fnv1a, resolveOptions } from './options';
import { appendEvents } from './redis-log';
import { describe, invalidType } from '../errors';

/** Appends events for a distributed stream function; see `redisProducer`. */
export interface RedisProducer<I> {
  readonly partitions: number;
  /** The partition of `key`: `fnv1a(key) mod partitions`. */
  partitionOf(key: string): number;
  /**
   * Appends one event to its key's partition. Resolves with the entry id once Redis accepted it.
   * @throws {EventTooLargeError} `ERR_VELO_EVENT_TOO_LARGE` (rejects, nothing written) above `maxEventBytes`.
   * @throws {TypeError} `ERR_VELO_ENCODE` when the codec cannot encode the event, `ERR_INVALID_ARG_TYPE` /
   * `ERR_INVALID_ARG_VALUE` for a key that is not a non-empty string.
   */
  send(key: string, event: I): Promise<string>;
  /**
   * Appends many events: one script call per partition, in the given order (so per key too). Every event is
   * encoded and checked before anything is written: one bad event rejects the whole call with nothing written.
   * Resolves with the entry ids, in the order of `events`.
   */
  sendMany(events: Iterable<readonly [string, I]>): Promise<string[]>;
}

/** Events per script call: keeps one call's arguments and its time on Redis' thread small. */
const CHUNK = 256;

class Producer<I> implements RedisProducer<I> {
  readonly #o: Resolved<I>;
  constructor(options: Resolved<I>) {
    this.#o = options;
  }

  get partitions(): number {
    return this.#o.partitions;
  }

  partitionOf(key: string): number {
    return fnv1a(checkKey(key)) % this.#o.partitions;
  }

  #encode(key: string, event: I): Buffer | string {
    return encodeChecked(this.#o.codec, event, this.#o.maxEventBytes, `event for key ${JSON.stringify(key)}`);
  }

  async send(key: string, event: I): Promise<string> {
    const partition = this.partitionOf(key);
    const data = this.#encode(key, event);
    const [id] = await appendEvents(this.#o.client, this.#o.keys, partition, [[key, data]]);
    return id;
  }

  async sendMany(events: Iterable<readonly [string, I]>): Promise<string[]> {
    if (events === null || typeof (events as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] !== 'function') {
      throw invalidType(`sendMany(): events must be an iterable of [key, event] pairs, not ${describe(events)}`);
    }
    const byPartition = new Map<number, { index: number[]; items: [string, Buffer | string][] }>();
    let n = 0;
    for (const pair of events) {
      if (!Array.isArray(pair) || pair.length !== 2)
        throw invalidType(`sendMany(): item ${n} must be a [key, event] pair, not ${describe(pair)}`);
      const [key, event] = pair as [string, I];
      const partition = this.partitionOf(key);
      let group = byPartition.get(partition);
      if (group === undefined) byPartition.set(partition, (group = { index: [], items: [] }));
      group.index.push(n++);
      group.items.push([key, this.#encode(key, event)]);
    }
    const ids = new Array<string>(n);
    const calls: Promise<void>[] = [];
    for (const [partition, group] of byPartition) {
      for (let start = 0; start < group.items.length; start += CHUNK) {
        const chunk = group.items.slice(start, start + CHUNK);
        calls.push(
          appendEvents(this.#o.client, this.#o.keys, partition, chunk).then((got) => {
            for (let i = 0; i < got.length; i++) ids[group.index[start + i]] = got[i];
          }),
        );
      }
    }
    await Promise.all(calls);
    return ids;
  }
}

/**
 * A producer for the distributed stream function `options.name`: `send(key, event)` appends to the stream of
 * the key's partition (`velo:{<name>:p<N>}`), where the worker owning that partition picks it up.
 */
export function redisProducer<I = unknown>(options: RedisOptions<I>): RedisProducer<I> {
  return new Producer(resolveOptions(options, 'redisProducer()'));
}
