// What an output of a distributed stream function is, as stored in its partition's output stream and as readers,
// local delivery and the simulator see it.
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
