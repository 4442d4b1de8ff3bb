// Reading the outputs of a distributed stream function from any process.
import type { Outputs } from '../../durable/common/clients';
import { RedisConnectionError, describe, invalidType, invalidValue } from '../../errors';
import { integerOption } from '../../validate';
import { pause, watchAbort } from '../../watch-abort';
import {
  MAX_READ_COUNT,
  type OutputBatch,
  type OutputItem,
  afterOption,
  batchMax,
  batcher,
  outputItem,
} from '../../durable/common/outputs';
import type { RedisName } from '../log/name';
import { type RedisOptions, callTimeoutOption, resolveOptions } from '../log/options';
import { type RedisClientLike, type StreamEntries, readStreams, send, settlesWithin } from '../log/connection';
import { reportable } from '../../durable/common/reportable';
import { checkGroupName } from '../log/options';

/** Options of `redisOutputs`. */
export interface RedisOutputsOptions<O = unknown> extends RedisOptions<O>, RedisOutputsOnly {
  /** The function's name in Redis; a `RedisName<I, O>` (`redisName(fn, name)`) gives the reader the function's output type. */
  name: RedisName<never, O>;
}

/** An outputs reader's options on Redis (where consumer groups are). */
export interface RedisOutputsOnly {
  /** Where to start without a group: `'start'` (the default, every stored output) or `'end'` (only new ones). With a group: where the group starts when it is created. */
  from?: 'start' | 'end';
  /**
   * Where to resume without a group, by partition: the id of the last output handled there (`item.id`, or a batch's
   * `to`); overrides `from` for those partitions.
   */
  after?: Readonly<Record<number, string>>;
  /** A consumer group: each output goes to one consumer of the group, and is acked when the iteration moves past it. */
  group?: string;
  /** This reader's consumer name in `group`: after a restart it gets back what it had read but not moved past. Default `'reader'`. */
  consumer?: string;
  /**
   * With a group: take over entries another consumer of the group has had pending for at least this many ms
   * (read ahead by a reader that stopped or died, or still being handled by a slow one: those are delivered
   * twice), with `XAUTOCLAIM`, swept at most every `claimIdle / 2` ms (and 50 ms). Default: never.
   */
  claimIdle?: number;
  /** Outputs per partition per read, 1 to 10,000. Default 256. */
  count?: number;
  /** Ends the iteration. */
  signal?: AbortSignal;
  /**
   * The longest the end of a loop (`break`, `return`, a throw in its body) waits for Redis to confirm the acks
   * of the outputs it moved past, ms, or `Infinity`; then it ends anyway, and the outputs whose acks were not
   * confirmed may come back to the group. Reads are not cut by it: the loop waits for Redis while it is away
   * (see the Redis docs, "going to production"). Default 5000.
   */
  callTimeout?: number;
}

/** What `redisOutputs` returns: its outputs as an async iterable, and a disposer for `await using`. */
export interface RedisOutputs<O = unknown> extends Outputs<O> {
  /**
   * Ends every loop over these outputs as an abort of `signal` does (a blocking read is cut, the connection
   * closed), and resolves once they have ended. A loop started after it ends at once. Idempotent.
   */
  [Symbol.asyncDispose](): Promise<void>;
}

const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };

/**
 * A reader's connection, for closing it if its iterator is dropped while it waits at an item (no `return()`),
 * what stops its acks in flight from waiting for a connection that is gone, and those acks: the outputs the loop
 * moved past before it was dropped are acked first (within `callTimeout`), as when it stops otherwise.
 */
type Held = {
  client: RedisClientLike | null;
  closed: AbortController;
  /** Sends the acks gathered this turn (the loop's `flush`). */
  flush: () => void;
  /** The acks sent and not yet answered. */
  acking: Set<Promise<void>>;
  callTimeout: number;
};
const abandoned = new FinalizationRegistry<Held>((held) => {
  // (A collector may find the iterator unreachable while an ack it sent is in flight: closing the connection then
  // would lose it, and the output it moved past would come back.)
  held.flush();
  const close = () => {
    held.closed.abort();
    void Promise.resolve(held.client?.destroy()).catch(() => {});
  };
  if (held.acking.size === 0) close();
  else void settlesWithin(Promise.all(held.acking), held.callTimeout).then(close);
});
const BLOCK_MS = 1000;
/** The longest `claimIdle`, ms (a day: pending entries older than that are for an operator to look at). */
const MAX_IDLE_MS = 86_400_000;
/** The shortest time between two claim sweeps, ms. */
const CLAIM_EVERY_MIN_MS = 50;

/** Checks a `claimIdle` option of `fn`. */
export function checkClaimIdle(fn: string, claimIdle: unknown): void {
  if (claimIdle !== undefined) integerOption(fn, 'claimIdle', claimIdle, 1, MAX_IDLE_MS, `from 1 to ${MAX_IDLE_MS} (ms)`);
}

/**
 * The sweep of a group consumer that takes over its group's stale entries (`claimIdle`): `due()` says
 * whether a sweep is due now (and starts the wait for the next), `claim()` takes over, with `XAUTOCLAIM`,
 * up to `count` entries per partition that another consumer has had pending for `claimIdle` ms, and
 * `blockMs` is how long a blocking read may wait without holding the next sweep back.
 */
export function claimSweep(names: string[], group: string, consumer: string, claimIdle: number | undefined, count: number) {
  // Where each partition's sweep goes on from, and when the next sweep is due.
  const from = names.map(() => '0-0');
  let dueAt = 0;
  const every = claimIdle === undefined ? 0 : Math.max(CLAIM_EVERY_MIN_MS, Math.floor(claimIdle / 2));
  return {
    blockMs: claimIdle === undefined ? BLOCK_MS : Math.min(BLOCK_MS, every),
    due(): boolean {
      if (claimIdle === undefined || performance.now() < dueAt) return false;
      dueAt = performance.now() + every;
      return true;
    },
    /** Partition stream name -> the entries taken over (every partition's in one pipelined round). */
    async claim(client: RedisClientLike): Promise<Map<string, [Buffer, unknown][]>> {
      const replies = await Promise.all(
        names.map((name, p) =>
          send(client, name, ['XAUTOCLAIM', name, group, consumer, String(claimIdle), from[p], 'COUNT', String(count)], BUFFERS),
        ),
      );
      const claimed = new Map<string, [Buffer, unknown][]>();
      for (let p = 0; p < names.length; p++) {
        const [next, entries] = replies[p] as [Buffer, [Buffer, unknown][]];
        from[p] = next.toString();
        if (entries.length > 0) claimed.set(names[p], entries);
      }
      return claimed;
    },
  };
}

/** First and longest wait before a call retried after a lost connection, ms. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;

/**
 * `call()`, again after a wait (growing from 50 ms to 1 s) each time it fails with a lost connection (refused,
 * reset, closed: the client reconnects by itself), until it succeeds or `signal` aborts. Other errors are thrown.
 */
export async function retriedOnConnection<T>(
  call: () => Promise<T>,
  signal: AbortSignal | undefined,
  onRetry?: () => void,
): Promise<T> {
  let wait = RETRY_MIN_MS;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (signal?.aborted || !(reportable(error) instanceof RedisConnectionError)) throw error;
    }
    onRetry?.();
    // The wait ends early at an abort (then the next failure throws): its timer never outlives the loop.
    await pause(wait, signal);
    if (signal?.aborted) throw signal.reason;
    wait = Math.min(wait * 2, RETRY_MAX_MS);
  }
}

/**
 * The outputs of the function `options.name`, from every partition, as an async iterable (per key in order;
 * across partitions interleaved). Reads on a connection of its own (a `duplicate()` of `options.client`),
 * released when the loop ends. Without a group, delivery is from the position on; with a group, at least
 * once per group.
 */
export function redisOutputs<O = unknown>(options: RedisOutputsOptions<O>): RedisOutputs<O> {
  return readOutputs(options, 'redisOutputs()');
}

/** `redisOutputs` for the entry point `what` (named in its errors). */
export function readOutputs<O>(options: RedisOutputsOptions<O>, what: string): RedisOutputs<O> {
  const o = resolveOptions(options, what, ['from', 'after', 'group', 'consumer', 'claimIdle', 'count', 'signal', 'callTimeout']);
  const { from = 'start', after, group, consumer = 'reader', claimIdle, count = 256, signal: given } = options;
  const callTimeout = callTimeoutOption(what, options.callTimeout);
  if (from !== 'start' && from !== 'end')
    throw invalidValue(`${what}: options.from must be 'start' or 'end', not ${describe(from)}`);
  const resumeAt = afterOption(what, after, o.partitions);
  if (after !== undefined && group !== undefined)
    throw invalidValue(`${what}: options.after needs no options.group (a group keeps its own position)`);
  if (group !== undefined) checkGroupName(what, 'group', group);
  checkGroupName(what, 'consumer', consumer);
  checkClaimIdle(what, claimIdle);
  if (claimIdle !== undefined && group === undefined)
    throw invalidValue(`${what}: options.claimIdle needs options.group (only a group has entries to claim)`);
  integerOption(what, 'count', count, 1, MAX_READ_COUNT);
  if (given !== undefined && !(given instanceof AbortSignal))
    throw invalidType(`${what}: options.signal must be an AbortSignal, not ${describe(given)}`);
  // `Symbol.asyncDispose` aborts each loop's own signal (also aborted by the caller's) and returns its iterator.
  let disposed = false;
  const loops = new Set<{ stop: AbortController; iterator: WeakRef<AsyncGenerator<OutputItem<O> | OutputBatch<O>>> }>();
  const names = Array.from({ length: o.partitions }, (_, p) => o.keys.output(p));
  const partitionOf = new Map(names.map((name, p) => [name, p]));

  const item = (name: string, id: Buffer, list: unknown) =>
    outputItem(o.codec, partitionOf.get(name) as number, id, list) as OutputItem<O>;

  /** The outputs one by one, or with `max`, in batches of at most `max` (without a group). */
  async function* read(held: Held, stop: AbortController, max?: number): AsyncGenerator<OutputItem<O> | OutputBatch<O>> {
    const signal = stop.signal;
    // (One listener per signal however many readers share it: watchAbort.)
    const unwatchGiven = given === undefined ? undefined : watchAbort(given, (reason) => stop.abort(reason));
    const client: RedisClientLike = o.client.duplicate();
    held.client = client;
    // Its commands report their own failures; without a listener an 'error' event would throw.
    client.on('error', () => {});
    // An abort ends the iteration without waiting for Redis. While it waits on Redis (connecting, a blocking read,
    // a claim sweep) the connection is closed at once. Otherwise (the loop's body runs) the acks of the outputs
    // moved past are sent first and the connection closed a turn later, once they are written: they are not
    // waited for, so one lost with its connection then is not made again (those outputs come back: at least once).
    let reading = true;
    const close = () => void Promise.resolve(client.destroy()).catch(() => {});
    let closedByAbort = false;
    const abort = () => {
      held.closed.abort();
      closedByAbort = true;
      if (reading) close();
      else {
        flush();
        setImmediate(close);
      }
    };
    signal?.addEventListener('abort', abort, { once: true });
    // Acks are not waited for one by one (a round trip per output capped a reader at about 10K outputs/s): the
    // outputs the loop moves past in one turn of the event loop are acked together at its end, one XACK per
    // stream, and every ack is confirmed before the next read, a sweep, or the loop's end.
    const acks: Promise<void>[] = [];
    const toAck = new Map<string, Buffer[]>();
    let ackFailure: { error: unknown } | null = null;
    let flushing: NodeJS.Immediate | null = null;
    const flush = () => {
      if (flushing !== null) clearImmediate(flushing);
      flushing = null;
      for (const [name, ids] of toAck) {
        const sent: Promise<void> = retriedOnConnection(
          () => send(client, name, ['XACK', name, group as string, ...ids]),
          held.closed.signal,
        ).then(
          () => void held.acking.delete(sent),
          (error: unknown) => {
            held.acking.delete(sent);
            ackFailure ??= { error };
          },
        );
        held.acking.add(sent);
        acks.push(sent);
      }
      toAck.clear();
    };
    held.flush = flush;
    const ack = (name: string, id: Buffer) => {
      const ids = toAck.get(name);
      if (ids === undefined) toAck.set(name, [id]);
      else ids.push(id);
      flushing ??= setImmediate(flush);
    };
    const acked = async () => {
      flush();
      if (acks.length > 0) await Promise.all(acks.splice(0));
      if (ackFailure !== null) throw ackFailure.error;
    };
    try {
      if (signal?.aborted) return;
      await client.connect();
      // node-redis (6.3) lets a connect() under way go on after destroy(): it resolves, and the connection stays
      // open. An abort while it connected (which destroyed it) is honoured here.
      if (signal?.aborted) {
        client.destroy();
        return;
      }
      reading = false;
      const positions: string[] = [];
      // The group on every partition's output stream (kept if it is there), from `start` ('$' or '0').
      const createGroups = (start: string) =>
        Promise.all(
          names.map((name) =>
            retriedOnConnection(
              () => send(client, name, ['XGROUP', 'CREATE', name, group as string, start, 'MKSTREAM']),
              signal,
            ).catch((error: unknown) => {
              if (!String((error as Error)?.message).startsWith('BUSYGROUP')) throw error;
            }),
          ),
        );
      // A group read answered NOGROUP: the server lost the group with its data (a restart without persistence; the
      // workers report ERR_VELO_LOG_RESET). Made again from the start of what the streams hold now, all of it
      // written since, the loop goes on as across a restart that lost nothing.
      const regrouped = async <T>(read: () => Promise<T>, none: T): Promise<T> => {
        try {
          return await read();
        } catch (error) {
          if (group === undefined || !String((error as Error)?.message).startsWith('NOGROUP')) throw error;
          await createGroups('0');
          replaying = true;
          positions.splice(0, positions.length, ...names.map(() => '0'));
          return none;
        }
      };
      if (group !== undefined) {
        await createGroups(from === 'end' ? '$' : '0');
        // This consumer's own pending entries first (read before a restart, never moved past).
        positions.push(...names.map(() => '0'));
      } else if (from === 'end') {
        const last = await Promise.all(
          names.map((name) =>
            retriedOnConnection(() => send(client, name, ['XREVRANGE', name, '+', '-', 'COUNT', '1'], BUFFERS), signal),
          ),
        );
        positions.push(...last.map((r) => (Array.isArray(r) && r.length > 0 ? String((r[0] as [Buffer])[0]) : '0-0')));
      } else positions.push(...names.map(() => '0-0'));
      // Where the batches start: the ends found from 'end', then `after` as given (read on after its id, in full).
      const at = new Map<number, string>();
      if (group === undefined && from === 'end') positions.forEach((id, p) => id !== '0-0' && at.set(p, id));
      for (const [p, { id, ms, seq }] of resumeAt) {
        positions[p] = `${ms}-${seq}`;
        at.set(p, id);
      }
      const cut = max === undefined ? null : batcher<O>(at, max);

      let replaying = group !== undefined;
      const sweep = claimSweep(names, group as string, consumer, claimIdle, count);
      while (!signal?.aborted) {
        await acked();
        if (!replaying && sweep.due()) {
          // Other consumers' stale entries.
          reading = true;
          const claimed = await retriedOnConnection(
            () => regrouped(() => sweep.claim(client), new Map() as StreamEntries),
            signal,
          ).finally(() => (reading = false));
          for (const [name, entries] of claimed) {
            for (const [id, list] of entries) {
              const claimedItem = item(name, id, list);
              if (claimedItem !== null) yield claimedItem;
              // Aborted while the loop had this one: it stays pending, as the one a loop stops on does.
              if (signal?.aborted) return;
              ack(name, id);
            }
          }
          await acked();
          if (signal?.aborted) break;
        }
        // A read lost with its connection is made again from the same positions. A group's '>' read may have been
        // delivered before the connection went: its entries are then pending for this consumer, unseen, so the
        // group goes back to reading its own pending entries first (all yielded before were acked).
        reading = true;
        const streams = await retriedOnConnection(
          () =>
            group === undefined
              ? readStreams(client, ['XREAD', 'COUNT', String(count)], names, positions, BUFFERS, BLOCK_MS)
              : regrouped(
                  () =>
                    replaying
                      ? readStreams(
                          client,
                          ['XREADGROUP', 'GROUP', group, consumer, 'COUNT', String(count)],
                          names,
                          positions,
                          BUFFERS,
                        )
                      : readStreams(
                          client,
                          ['XREADGROUP', 'GROUP', group, consumer, 'COUNT', String(count)],
                          names,
                          names.map(() => '>'),
                          BUFFERS,
                          sweep.blockMs,
                        ),
                  new Map() as StreamEntries,
                ),
          signal,
          () => {
            if (group === undefined) return;
            replaying = true;
            positions.splice(0, positions.length, ...names.map(() => '0'));
          },
        ).finally(() => (reading = false));
        let got = 0;
        if (cut !== null) {
          // Batches (no group: nothing to ack): this read's outputs, cut at `max`.
          const items: OutputItem<O>[] = [];
          for (const [name, entries] of streams) {
            const p = partitionOf.get(name) as number;
            for (const [id, list] of entries) {
              positions[p] = id.toString();
              const next = item(name, id, list);
              if (next !== null) items.push(next);
            }
          }
          for (const batch of cut(items)) {
            yield batch;
            if (signal?.aborted) return;
          }
          continue;
        }
        for (const [name, entries] of streams) {
          const p = partitionOf.get(name) as number;
          for (const [id, list] of entries) {
            got++;
            if (group === undefined || replaying) positions[p] = id.toString();
            const next = item(name, id, list);
            // An entry trimmed away while pending has nothing to deliver.
            if (next !== null) yield next;
            // Aborted while the loop had this one: the iteration ends here (this one stays pending with a group).
            if (signal?.aborted) return;
            // The loop asked for the next one: this one is handled.
            if (group !== undefined) ack(name, id);
          }
        }
        if (replaying && got === 0) replaying = false;
      }
    } catch (error) {
      if (!signal?.aborted) throw error;
    } finally {
      // The outputs the loop moved past stay acked when it stops (the one it stopped on stays pending); after an
      // abort, their acks went out without a wait (above). A server that does not answer holds the loop's end for
      // callTimeout at most: the retries stop below, and those outputs come back (at least once).
      if (!signal?.aborted) {
        flush();
        await settlesWithin(Promise.all(acks), callTimeout);
      }
      signal?.removeEventListener('abort', abort);
      unwatchGiven?.();
      abandoned.unregister(held);
      held.closed.abort();
      // (After an abort its handler closes the connection, a turn later if acks went out then.)
      if (!closedByAbort) client.destroy();
    }
  }

  /** A loop over the outputs (or in batches of `max`), ended by the disposer. */
  const loop = (max?: number) => {
    const held: Held = { client: null, closed: new AbortController(), flush: () => {}, acking: new Set(), callTimeout };
    const stop = new AbortController();
    if (disposed) stop.abort();
    const iterator = read(held, stop, max);
    // (Held weakly: an iterator dropped without return() is still collected, and closed by `abandoned`.)
    const entry = { stop, iterator: new WeakRef(iterator) };
    loops.add(entry);
    held.closed.signal.addEventListener('abort', () => loops.delete(entry), { once: true });
    abandoned.register(iterator, held, held);
    return iterator;
  };

  return {
    [Symbol.asyncIterator]: () => loop() as AsyncGenerator<OutputItem<O>>,
    batches(batchOptions) {
      const max = batchMax(what, batchOptions);
      if (group !== undefined)
        throw invalidValue(`${what}.batches(): reads from positions you keep (options.after), not with options.group`);
      return loop(max) as AsyncGenerator<OutputBatch<O>>;
    },
    async [Symbol.asyncDispose]() {
      disposed = true;
      const ending = [...loops].map(({ stop, iterator }) => {
        stop.abort();
        // (Queued behind a read under way, which the abort ends.)
        return iterator.deref()?.return(undefined) ?? Promise.resolve();
      });
      await Promise.allSettled(ending);
    },
  };
}
