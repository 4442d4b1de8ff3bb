// `postgresOutputs`: the outputs of a distributed stream function on Postgres, read from any process, in each
// partition's commit order. Output ids are given under the partition's group row, locked by each commit to its
// end (log/commit.ts): a reader that follows `id > cursor` never passes an output still to commit. There is no
// consumer group on Postgres: a reader keeps its own position (`after`), and polls (outputs send no NOTIFY).
import type { Outputs } from '../../durable/common/clients';
import { describe, invalidType, invalidValue } from '../../errors';
import { integerOption } from '../../validate';
import { pause } from '../../watch-abort';
import { MAX_READ_COUNT, type OutputBatch, type OutputItem, afterOption, batchMax, batcher } from '../../durable/common/outputs';
import { idParts, run, str } from '../log/sql';
import { PoolGate } from '../log/gate';
import { type PoolKey, type PostgresOptions, resolvePgOptions } from './options';
import { retriedOnConnection } from './retry';
import { rowItem } from './worker';

/** Options of `postgresOutputs`. */
export interface PostgresOutputsOptions<O = unknown> extends PostgresOptions<O>, PostgresOutputsOnly {}

/** An outputs reader's options on Postgres (where a reader keeps its own position, and polls). */
export interface PostgresOutputsOnly {
  /** Where to start: `'start'` (default: every stored output) or `'end'` (only outputs committed after the first read). */
  from?: 'start' | 'end';
  /**
   * Where to resume, by partition: the id of the last output handled there (`item.id`, or a batch's `to`); overrides
   * `from` for those partitions.
   */
  after?: Readonly<Record<number, string>>;
  /** Outputs per partition per read, 1 to 10,000. Default 256. */
  count?: number;
  /** How often a reader that found nothing looks again, ms. Default 100. */
  pollInterval?: number;
  /** Ends the iteration. */
  signal?: AbortSignal;
}

/** What `postgresOutputs` returns: its outputs as an async iterable, and a disposer for `await using`. */
export interface PostgresOutputs<O = unknown> extends Outputs<O> {
  /** Ends every loop over these outputs (at its next read or wait); a loop started after it ends at once. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The outputs of the function `options.name` on Postgres, every partition's in its commit order (so each key's in
 * order), as `redisOutputs` yields them: `(sid, seq)` identifies an output across retries and replays.
 */
export function postgresOutputs<O = unknown>(options: PostgresOutputsOptions<O>): PostgresOutputs<O> {
  return readPgOutputs(options, 'postgresOutputs()', 'pool');
}

/** `postgresOutputs` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export function readPgOutputs<O>(options: PostgresOutputsOptions<O>, what: string, poolKey: PoolKey): PostgresOutputs<O> {
  const o = resolvePgOptions(options, what, ['from', 'after', 'count', 'pollInterval', 'signal'], poolKey);
  // (Each read answered within the default callTimeout, else its connection destroyed and the read retried: gate.ts.)
  const pool = new PoolGate(o.pool).pool;
  const { from = 'start', after, count = 256, pollInterval = 100, signal } = options;
  if (from !== 'start' && from !== 'end')
    throw invalidValue(`${what}: options.from must be 'start' or 'end', not ${describe(from)}`);
  const given = afterOption(what, after, o.partitions);
  integerOption(what, 'count', count, 1, MAX_READ_COUNT);
  integerOption(what, 'pollInterval', pollInterval, 1, 60_000, 'from 1 to 60000 (ms)');
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw invalidType(`${what}: options.signal must be an AbortSignal, not ${describe(signal)}`);
  const disposed = new AbortController();
  const { S, fn } = o.space;
  const ps = Array.from({ length: o.partitions }, (_, p) => p);

  const stopped = () => disposed.signal.aborted || signal?.aborted === true;

  /**
   * Every read's outputs, in order per partition. `at` gets the positions the reading starts from (partition -> id:
   * `after` as given, or from `'end'` the ends), before the first read.
   */
  async function* rounds(at: Map<number, string>): AsyncGenerator<OutputItem<O>[]> {
    if (stopped()) return;
    // A lost connection (the server restarting) is retried: the reading goes on from the same positions.
    const stop = signal === undefined ? disposed.signal : AbortSignal.any([disposed.signal, signal]);
    const retried = <T>(call: () => Promise<T>) => retriedOnConnection(call, stop);
    await retried(o.prepare);
    const cursors = new Map<number, [string, string]>();
    if (from === 'end') {
      const { rows } = await retried(() => run(pool, `SELECT p, out_ms, out_seq FROM ${S}.groups WHERE fn = $1`, [fn]));
      for (const r of rows) {
        const p = Number(r.p);
        cursors.set(p, [str(r.out_ms), str(r.out_seq)]);
        // (A partition with no output yet is read from its start, as on Redis.)
        if (str(r.out_ms) !== '0' || str(r.out_seq) !== '0') at.set(p, `${str(r.out_ms)}-${str(r.out_seq)}`);
      }
    }
    for (const [p, { id }] of given) {
      cursors.set(p, idParts(id));
      at.set(p, id);
    }
    while (!stopped()) {
      const now = ps.map((p) => cursors.get(p) ?? ['0', '0']);
      const { rows } = await retried(() =>
        run(
          pool,
          `SELECT c.p, x.ms, x.seq, x.sid, x.oseq, x.key, x.field, x.data, x.tp
           FROM unnest($2::integer[], $3::bigint[], $4::bigint[]) AS c(p, ms, seq)
           CROSS JOIN LATERAL (SELECT ms, seq, sid, oseq, key, field, data, tp FROM ${S}.outputs o
                                WHERE o.fn = $1 AND o.p = c.p AND (o.ms, o.seq) > (c.ms, c.seq)
                                ORDER BY o.ms, o.seq LIMIT $5) x
          ORDER BY c.p, x.ms, x.seq`,
          [fn, ps, now.map((x) => x[0]), now.map((x) => x[1]), count],
        ),
      );
      if (rows.length === 0) {
        await pause(pollInterval, disposed.signal, signal);
        continue;
      }
      const items: OutputItem<O>[] = [];
      for (const r of rows) {
        const p = Number(r.p);
        cursors.set(p, [str(r.ms), str(r.seq)]);
        items.push(rowItem(o.codec, p, r));
      }
      yield items;
    }
  }

  async function* read(): AsyncGenerator<OutputItem<O>> {
    for await (const items of rounds(new Map())) {
      for (const item of items) {
        if (stopped()) return;
        yield item;
      }
    }
  }

  async function* batches(max: number): AsyncGenerator<OutputBatch<O>> {
    const at = new Map<number, string>();
    const cut = batcher<O>(at, max);
    for await (const items of rounds(at)) {
      for (const batch of cut(items)) {
        if (stopped()) return;
        yield batch;
      }
    }
  }

  async function* iterate<T>(loop: AsyncGenerator<T>): AsyncGenerator<T> {
    try {
      yield* loop;
    } catch (error) {
      // (A read given up at a dispose or an abort, while the server was away, ends the loop quietly.)
      if (!stopped()) throw error;
    }
  }

  return {
    [Symbol.asyncIterator]: () => iterate(read()),
    batches: (batchOptions) => iterate(batches(batchMax(what, batchOptions))),
    [Symbol.asyncDispose]: () => {
      disposed.abort();
      return Promise.resolve();
    },
  };
}
