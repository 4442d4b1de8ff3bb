// What an output of a distributed stream function is, as stored in its partition's output stream and as readers,
// local delivery and the simulator see it.
import { describe, invalidType, invalidValue, outOfRange } from '../../errors';
import { integerOption } from '../../validate';
import type { Codec } from './codec';
import { entryFields } from './stored';
import { isTraceparent } from './trace-context';

/** A handler's failure as stored in the output stream. */
export interface HandlerFailure {
  /** The error's `name`. */
  name: string;
  /** The error's `message`. */
  message: string;
  /** The error's `code`, when it had a string one. */
  code?: string;
}

/** One output: `(sid, seq)` identifies it across retries and replays (use it as the idempotency key). */
export type OutputItem<O> = {
  /** The output stream entry's id (within its partition). */
  id: string;
  /** The partition it was written to. */
  partition: number;
  /** The key of its session. */
  key: string;
  /** The session: `<key>@<id of its first input entry>`. */
  sid: string;
  /** 1 for the session's first output. */
  seq: number;
  /**
   * The W3C `traceparent` of the span of the session that made it, when the worker traced it (a tracer provider
   * was registered): `outputTraceContext(item)` makes it the parent of a reader's spans. Absent otherwise.
   */
  traceparent?: string;
} & (
  | {
      /** The output, decoded by the codec. */
      value: O;
    }
  | {
      /** The session's handler failed (its last item): its error as stored. */
      error: HandlerFailure;
    }
);

/** An output stream entry (fields as Buffers) as an item; null for an entry trimmed away while pending (nil fields). */
export function outputItem<O>(codec: Codec<O>, partition: number, id: Buffer, list: unknown): OutputItem<O> | null {
  if (!Array.isArray(list)) return null;
  const f = entryFields(list);
  const base: { id: string; partition: number; key: string; sid: string; seq: number; traceparent?: string } = {
    id: id.toString(),
    partition,
    key: f.get('k')?.toString() ?? '',
    sid: f.get('sid')?.toString() ?? '',
    seq: Number(f.get('seq')?.toString()),
  };
  // Only a valid one (version 00): an application may copy it into a header as it is.
  const traceparent = f.get('t');
  if (traceparent !== undefined && traceparent.length === 55) {
    const text = traceparent.toString('latin1');
    if (isTraceparent(text)) base.traceparent = text;
  }
  const error = f.get('e');
  if (error !== undefined) return { ...base, error: JSON.parse(error.toString()) as HandlerFailure };
  return { ...base, value: codec.decode(f.get('v') ?? Buffer.alloc(0)) };
}

/**
 * A batch of outputs (`batches()` of `sessionOutputs`), with the positions to keep in the transaction that writes it:
 * the reader's position before the batch (`from`) and after it (`to`).
 */
export interface OutputBatch<O> {
  /** Its outputs, at least one and at most `max`, in order per partition (so per key). */
  readonly outputs: OutputItem<O>[];
  /**
   * Per partition, the id the batch was read after: the reader's `after` (as given), moved on by the batches before
   * this one (from `'end'`, the ends it started at). A partition not in it was read from its start.
   */
  readonly from: Readonly<Record<number, string>>;
  /** `from` with each partition of the batch at the id of its last output in the batch: store it, and read on with it as `after`. */
  readonly to: Readonly<Record<number, string>>;
}

/** Options of `batches()`. */
export interface OutputBatchOptions {
  /** The most outputs in a batch, 1 to 100,000. A batch takes what the reader has at hand, without waiting for more. Default 1000. */
  max?: number;
}

/** The largest part of an entry id: stream ids are two 64-bit unsigned integers. */
const MAX_ID_PART = (1n << 64n) - 1n;
const ID = /^(\d{1,20})(?:-(\d{1,20}))?$/;

/**
 * Checks the `after` option of a reader of `partitions` partitions: a plain object whose keys are partition numbers
 * (0 to partitions - 1, written as `String(n)` writes them) and whose values are entry ids (`<ms>-<seq>` or `<ms>`,
 * decimal, each part below 2^64). Returns partition -> the id as given, and its parts as decimals.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for an `after` that is not a plain object, or an id that is not a
 * string; `ERR_INVALID_ARG_VALUE` for a string that is not an entry id.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a key that is not a partition of the function.
 */
export function afterOption(
  what: string,
  after: unknown,
  partitions: number,
): Map<number, { id: string; ms: bigint; seq: bigint }> {
  const positions = new Map<number, { id: string; ms: bigint; seq: bigint }>();
  if (after === undefined) return positions;
  const proto: unknown = after !== null && typeof after === 'object' ? Object.getPrototypeOf(after) : undefined;
  if (proto !== Object.prototype && proto !== null)
    throw invalidType(`${what}: options.after must be an object of partition -> output id, not ${describe(after)}`);
  for (const [key, id] of Object.entries(after as object)) {
    const partition = Number(key);
    if (String(partition) !== key || !Number.isSafeInteger(partition) || partition < 0 || partition >= partitions)
      throw outOfRange(
        `${what}: options.after has the key ${JSON.stringify(key)}: its keys must be partition numbers, 0 to ${partitions - 1}`,
      );
    if (typeof id !== 'string')
      throw invalidType(`${what}: options.after[${key}] must be an output id (a string), not ${describe(id)}`);
    const m = ID.exec(id);
    const ms = m === null ? -1n : BigInt(m[1]);
    const seq = m === null ? -1n : BigInt(m[2] ?? '0');
    if (m === null || ms > MAX_ID_PART || seq > MAX_ID_PART)
      throw invalidValue(
        `${what}: options.after[${key}] must be an output id "<ms>-<seq>" (decimal, each below 2^64), not ${describe(id)}`,
      );
    positions.set(partition, { id, ms, seq });
  }
  return positions;
}

/** The most outputs a reader takes per partition per read (its `count`): the same for every reader, on every backend. */
export const MAX_READ_COUNT = 10_000;

/**
 * The `max` of `batches(options)` of the reader `what`.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for options that are not an object.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a `max` that is not an integer from 1 to 100,000.
 */
export function batchMax(what: string, options: unknown): number {
  if (options === undefined) return DEFAULT_BATCH;
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}.batches(): options must be an object such as { max: 500 }, not ${describe(options)}`);
  const { max = DEFAULT_BATCH } = options as OutputBatchOptions;
  return integerOption(`${what}.batches()`, 'max', max, 1, 100_000);
}
const DEFAULT_BATCH = 1000;

/**
 * Cuts a reader's outputs into batches of at most `max`, each with the positions before and after it. `at` (partition
 * -> id) is the reader's position, moved on as batches are cut.
 */
export function batcher<O>(at: Map<number, string>, max: number): (items: readonly OutputItem<O>[]) => OutputBatch<O>[] {
  return (items) => {
    const batches: OutputBatch<O>[] = [];
    for (let i = 0; i < items.length; i += max) {
      const outputs = items.slice(i, i + max);
      const from = Object.fromEntries(at) as Record<number, string>;
      for (const item of outputs) at.set(item.partition, item.id);
      batches.push({ outputs, from, to: Object.fromEntries(at) });
    }
    return batches;
  };
}
