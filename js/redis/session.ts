// One live session of a partition: a key's run of events through one instance of the function.
import { type StreamKind } from '../core/protocol';
import { idTime } from './log-ids';
import type { InputEntry } from './transport';

/** A handler's failure as stored with an output: `{ name, message, code }` as JSON. */
export function serializeError(error: unknown): string {
  const e = error as { name?: unknown; message?: unknown; code?: unknown } | null;
  const out: Record<string, unknown> = {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(error),
  };
  if (typeof e?.code === 'string') out.code = e.code;
  return JSON.stringify(out);
}

export class Session<I, O> {
  /** Its entries (events, markers read for it): acked when it ends, less those given to the key's next session. */
  readonly ids: string[] = [];
  seq = 0;
  /** Its handler threw, or an output could not be encoded: its error was its last output, nothing comes after. */
  failed = false;
  /** Redis' time of its last event's entry, ms: its idle deadline is `idleTimeout` after (`PartitionRun.#endIdleByLog`). */
  lastTime = 0;
  /** A send into its stream waits for room: its input must not end before that event is in. */
  sending = false;
  forwarded: Promise<void> = Promise.resolve();
  /** Events of the log that belong to it (those dropped after its handler stopped included): for `maxSessionEvents`. */
  events = 0;
  /** Redis' time of its first entry, ms: for `maxSessionAge`. */
  readonly start: number;
  /**
   * Why the worker ended its input, if it did: a cap, or an entry the codec could not decode (`entry`: that
   * entry is the last of `sent`). The error is its last output if the session keeps that end (see `#ended`).
   */
  stop: { error: Error; entry: boolean } | undefined;
  /** Its outputs are all forwarded (the handler has finished). */
  forwardDone = false;
  ageTimer: NodeJS.Timeout | null = null;
  ageMarked = false;
  /**
   * Entries sent to its stream, in log order, that its handler may not have taken yet (counted in the
   * partition's `buffered`). Those it never takes go to the key's next session when it ends.
   */
  sent: InputEntry[] = [];
  /** Entries sent before `sent[0]`: all taken. */
  sentBase = 0;
  constructor(
    readonly key: string,
    readonly sid: string,
    readonly stream: StreamKind<I, O>,
  ) {
    this.start = idTime(sid.slice(sid.lastIndexOf('@') + 1));
  }
}
