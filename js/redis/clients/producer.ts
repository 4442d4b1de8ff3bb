// Producers: any process appends events to the partition of their key.
import type { Producer as AnyProducer } from '../../durable/common/clients';
import { encodeChecked } from '../../durable/common/codec';
import { eachPair } from '../../durable/common/send-pairs';
import { ranNothing, reportable } from '../../durable/common/reportable';
import type { RedisName } from '../log/name';
import { type RedisOptions, type Resolved, callTimeoutOption, checkKey, fnv1a, resolveOptions } from '../log/options';
import { settleWithin } from '../log/connection';
import { appendEvents, partitionLag } from '../log/redis-log';
import { LagLimitError, SendError, redisTimeoutError } from '../../errors';
import { integerArgument, integerOption } from '../../validate';
import { activeTraceFields } from '../../durable/common/trace-context';

/** Options of `redisProducer`. */
export interface RedisProducerOptions<I = unknown> extends RedisOptions<I>, RedisProducerOnly {
  /** The function's name in Redis; a `RedisName<I, O>` (`redisName(fn, name)`) gives the producer the function's event type. */
  name: RedisName<I, unknown>;
}

/** A producer's options on Redis only. */
export interface RedisProducerOnly {
  /**
   * Refuse sends to a partition whose workers are this many entries behind: `send()` and `sendMany()` reject
   * with `LagLimitError` (`ERR_VELO_LAG_LIMIT`), writing nothing, while the partition's lag (entries of its input
   * not yet read by the worker owning it, or all of them while no worker ever took it) has reached it. The lag
   * is measured at most every `lagInterval` per partition, in the background, and this producer's own sends
   * since the last measure are added to it; only the first send to a partition, and a send that this estimate
   * puts at the bound, wait for a measure: a refusal is always on a measure made for it. A call admitted may
   * take the lag past the bound by its own events. Default: no bound (the lag is never measured).
   */
  maxLag?: number;
  /** The longest a partition's measured lag is used before it is measured again, ms. Default 1000. */
  lagInterval?: number;
  /**
   * The longest `send()`, `sendMany()` and `lag()` wait for Redis to answer, ms, or `Infinity` for no bound.
   * Then they reject: a send with `SendError` (`ERR_VELO_SEND_FAILED`, `cause` an `ERR_VELO_REDIS_TIMEOUT`
   * error, the `ids` of the events without an answer `undefined`: the server may still run the call when it
   * resumes), `lag()` with the `ERR_VELO_REDIS_TIMEOUT` error. For a `sendMany()` split into several calls,
   * the wait is since the last of them was answered. Default 5000.
   */
  callTimeout?: number;
}

/** Appends events for a distributed stream function; see `redisProducer`. */
export interface RedisProducer<I> extends AnyProducer<I> {
  /** The function's partition count. */
  readonly partitions: number;
  /** The partition of `key`: `fnv1a(key) mod partitions`. */
  partitionOf(key: string): number;
  /**
   * Appends one event to its key's partition. Resolves with the entry id once Redis accepted it.
   * @throws {EventTooLargeError} `ERR_VELO_EVENT_TOO_LARGE` (rejects, nothing written) above `maxEventBytes`.
   * @throws {SendError} `ERR_VELO_SEND_FAILED` when Redis refused it, or gave no answer (within `callTimeout`).
   * @throws {Error} `ERR_VELO_REDIS_TIMEOUT` (nothing written) when, with `maxLag`, the partition's first lag measure got no answer within `callTimeout`.
   * @throws {TypeError} `ERR_VELO_ENCODE` when the codec cannot encode the event, `ERR_INVALID_ARG_TYPE` /
   * `ERR_INVALID_ARG_VALUE` for a key that is not a non-empty string.
   */
  readonly send: (key: string, event: I) => Promise<string>;
  /**
   * Appends many events: one script call per partition, in the given order (so per key too). Every event is
   * encoded and checked before anything is written: one bad event rejects the whole call with nothing written.
   * Resolves with the entry ids, in the order of `events`.
   */
  readonly sendMany: (events: Iterable<readonly [string, I]>) => Promise<string[]>;
  /**
   * The lag of `key`'s partition (or of partition `partition`), measured now: entries of its input not yet read
   * by the worker that owns it (all of them while no worker ever took it). One round trip; with `maxLag`, the
   * measure also serves the bound.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` for a partition number outside 0..partitions-1 (and the key errors of `send`).
   * @throws {Error} `ERR_VELO_REDIS_TIMEOUT` when Redis did not answer within `callTimeout`.
   */
  lag(keyOrPartition: string | number): Promise<number>;
}

/** What a producer knows of one partition's lag. */
interface LagState {
  /** The last measure (-1: none yet). */
  lag: number;
  /** `sent` when that measure was asked for: everything sent since may be in it or not, so it is added. */
  sentBefore: number;
  /** Events this producer appended to the partition. */
  sent: number;
  /** When the next measure is due (performance.now()). */
  due: number;
  measuring: Promise<void> | null;
}

/** One partition's events of a call: their positions in the call (`index`) and keys and encoded payloads. */
interface Group {
  partition: number;
  index: number[];
  items: [string, Buffer | string][];
}

/** Events per script call: keeps one call's arguments and its time on Redis' thread small. */
const CHUNK = 256;

class Producer<I> implements RedisProducer<I> {
  readonly #o: Resolved<I>;
  readonly #maxLag: number;
  readonly #lagInterval: number;
  readonly #lags = new Map<number, LagState>();
  readonly #callTimeout: number;
  constructor(options: Resolved<I>, maxLag: number, lagInterval: number, callTimeout: number) {
    this.#o = options;
    this.#maxLag = maxLag;
    this.#lagInterval = lagInterval;
    this.#callTimeout = callTimeout;
  }

  /** `settleWithin` `callTimeout`: those Redis does not answer in time get an ERR_VELO_REDIS_TIMEOUT error. */
  #settleWithin<T>(calls: Promise<T>[], settled: (index: number, ok: boolean, outcome: unknown) => void, what?: string) {
    return settleWithin(calls, this.#callTimeout, () => redisTimeoutError(this.#callTimeout, what), settled);
  }

  #lagState(partition: number): LagState {
    let state = this.#lags.get(partition);
    if (state === undefined) this.#lags.set(partition, (state = { lag: -1, sentBefore: 0, sent: 0, due: 0, measuring: null }));
    return state;
  }

  /** Measures the partition's lag (one measure at a time per partition). */
  #measure(partition: number): Promise<void> {
    const state = this.#lagState(partition);
    state.measuring ??= (async () => {
      const sentBefore = state.sent;
      state.due = performance.now() + this.#lagInterval;
      try {
        // A late answer after a timeout is dropped: it never overwrites a newer measure.
        let failure: { error: unknown } | null = null;
        await this.#settleWithin(
          [partitionLag(this.#o.client, this.#o.keys, partition)],
          (_, ok, outcome) => {
            if (ok) state.lag = outcome as number;
            else failure = { error: outcome };
          },
          'lag measure',
        );
        if (failure !== null) throw (failure as { error: unknown }).error;
        state.sentBefore = sentBefore;
      } finally {
        state.measuring = null;
      }
    })();
    return state.measuring;
  }

  async lag(keyOrPartition: string | number): Promise<number> {
    let partition: number;
    if (typeof keyOrPartition === 'number') {
      partition = integerArgument('lag()', 'partition', keyOrPartition, 0, this.#o.partitions - 1);
    } else partition = this.partitionOf(keyOrPartition);
    const state = this.#lagState(partition);
    // A measure already under way may have been asked for before sends that have resolved since: a new one.
    await state.measuring?.catch(() => {});
    try {
      await this.#measure(partition);
    } catch (error) {
      // (A closed client or a lost connection as ERR_VELO_REDIS_CONNECTION, its error the cause, as workers report it.)
      throw reportable(error);
    }
    return state.lag;
  }

  /**
   * With `maxLag`: refuses the call if one of its partitions is at the bound, else counts its events as sent.
   * Waits only for a partition's first measure; later ones run in the background once due. A first measure that
   * fails fails the call (`n` events, `what`) as a SendError: nothing of it written.
   */
  async #admit(counts: ReadonlyMap<number, number>, n: number, what: string): Promise<void> {
    if (this.#maxLag === Infinity) return;
    const first: Promise<void>[] = [];
    for (const partition of counts.keys()) {
      const state = this.#lagState(partition);
      if (state.lag < 0) first.push(this.#measure(partition));
      else if (state.measuring === null && performance.now() >= state.due) {
        // A failed background measure keeps the last one; it is retried when due again.
        this.#measure(partition).catch(() => {});
      }
    }
    const measured = (measures: Promise<void>[]) =>
      Promise.all(measures).catch((error: unknown) => {
        const cause = error as Error;
        const why = cause?.message || cause?.name || String(cause);
        throw new SendError(new Array<null>(n).fill(null), `${what}: 0 of ${n} events written, ${n} not: ${why}`, error);
      });
    if (first.length > 0) await measured(first);
    const estimate = (state: LagState) => state.lag + state.sent - state.sentBefore;
    // A partition the estimate puts at the bound is measured again before a refusal: the estimate adds this
    // producer's sends since the last measure, which its workers may have read since. Refused on that measure.
    if (first.length === 0) {
      const again: Promise<void>[] = [];
      for (const partition of counts.keys()) {
        const state = this.#lagState(partition);
        // (After any measure under way, which may have begun before this call: one begun after it.)
        if (estimate(state) >= this.#maxLag)
          again.push((state.measuring ?? Promise.resolve()).catch(() => {}).then(() => this.#measure(partition)));
      }
      if (again.length > 0) await measured(again);
    }
    for (const partition of counts.keys()) {
      const lag = estimate(this.#lagState(partition));
      if (lag >= this.#maxLag) throw new LagLimitError(partition, lag, this.#maxLag);
    }
    for (const [partition, n] of counts) this.#lagState(partition).sent += n;
  }

  get partitions(): number {
    return this.#o.partitions;
  }

  partitionOf(key: string): number {
    return fnv1a(checkKey(key)) % this.#o.partitions;
  }

  #encode(call: string, key: string, event: I): Buffer | string {
    return encodeChecked(this.#o.codec, event, this.#o.maxEventBytes, `event of ${call} for key ${JSON.stringify(key)}`);
  }

  async send(key: string, event: I): Promise<string> {
    const partition = this.partitionOf(key);
    const data = this.#encode('send()', key, event);
    // The span context active at the call (read before any await), when the application traces.
    const trace = activeTraceFields();
    await this.#admit(new Map([[partition, 1]]), 1, 'send()');
    return (await this.#append([{ partition, index: [0], items: [[key, data]] }], 1, 'send()', trace))[0];
  }

  /**
   * Appends each group's items (one call per CHUNK) and resolves with every event's id, by its index. If any
   * call fails, rejects with `SendError` once every call has settled, saying which events were written.
   */
  async #append(groups: Iterable<Group>, n: number, what: string, trace: [string, string] | undefined): Promise<string[]> {
    // (Every place an element, `undefined` until known: a hole would be skipped by forEach, map and filter.)
    const ids = new Array<string | null | undefined>(n).fill(undefined);
    const failures: unknown[] = [];
    const chunks: { index: number[]; n: number }[] = [];
    const calls: Promise<{ ids: string[]; refused?: string }>[] = [];
    for (const { partition, index, items } of groups) {
      for (let start = 0; start < items.length; start += CHUNK) {
        const chunk = items.slice(start, start + CHUNK);
        chunks.push({ index: index.slice(start, start + CHUNK), n: chunk.length });
        calls.push(appendEvents(this.#o.client, this.#o.keys, partition, chunk, trace));
      }
    }
    // Late answers of timed out calls are dropped by `settleWithin`: once the call has rejected, the `ids` it
    // handed out never change.
    await this.#settleWithin(calls, (c, ok, outcome) => {
      if (ok) {
        const { ids: got, refused } = outcome as { ids: string[]; refused?: string };
        const { index, n } = chunks[c];
        for (let i = 0; i < n; i++) ids[index[i]] = i < got.length ? got[i] : null;
        if (refused !== undefined) failures.push(new Error(refused));
      } else {
        // Refused before it ran: none of its events written. Else (no answer, or none in time) unknown.
        if (ranNothing(outcome)) for (const i of chunks[c].index) ids[i] = null;
        failures.push(outcome);
      }
    });
    if (failures.length === 0) return ids as string[];
    const written = ids.filter((id) => typeof id === 'string').length;
    const refused = ids.filter((id) => id === null).length;
    const cause = failures[0] as Error;
    const more = failures.length === 1 ? '' : ` (the first of ${failures.length} failed calls)`;
    throw new SendError(
      ids,
      `${what}: ${written} of ${n} events written, ${refused} not, ${n - written - refused} unknown: ${cause?.message || cause?.name || String(cause)}${more}`,
      cause,
    );
  }

  async sendMany(events: Iterable<readonly [string, I]>): Promise<string[]> {
    const trace = activeTraceFields();
    const byPartition = new Map<number, Group>();
    let n = 0;
    eachPair<I>(events, (key, event) => {
      const partition = this.partitionOf(key);
      let group = byPartition.get(partition);
      if (group === undefined) byPartition.set(partition, (group = { partition, index: [], items: [] }));
      group.index.push(n++);
      group.items.push([key, this.#encode('sendMany()', key, event)]);
    });
    await this.#admit(new Map([...byPartition].map(([partition, group]) => [partition, group.items.length])), n, 'sendMany()');
    return this.#append(byPartition.values(), n, 'sendMany()', trace);
  }
}

/**
 * A producer for the distributed stream function `options.name`: `send(key, event)` appends to the stream of
 * the key's partition (`velo:{<name>:p<N>}`), where the worker owning that partition picks it up.
 */
export function redisProducer<I = unknown>(options: RedisProducerOptions<I>): RedisProducer<I> {
  return startProducer(options, 'redisProducer()');
}

/** `redisProducer` for the entry point `what` (named in its errors). */
export function startProducer<I>(options: RedisProducerOptions<I>, what: string): RedisProducer<I> {
  const resolved = resolveOptions(options, what, ['maxLag', 'lagInterval', 'callTimeout']);
  const { maxLag = Infinity, lagInterval = 1000 } = options;
  const callTimeout = callTimeoutOption(what, options.callTimeout);
  if (maxLag !== Infinity) integerOption(what, 'maxLag', maxLag, 1, Infinity, 'of at least 1 (entries), or Infinity');
  integerOption(what, 'lagInterval', lagInterval, 1, Infinity, 'of at least 1 (ms)');
  return new Producer(resolved, maxLag, lagInterval, callTimeout);
}
