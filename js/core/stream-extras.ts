// The part of a running stream's state that only some streams use (see `Extras`), and the small types the
// stream and its extras share. Its flags are not here: they are bits of the stream's state word (stream-state.ts).
import type { SourceStalledError } from '../errors';
import type { StreamTrace } from '../tracing';
import type { AliveGroup } from './alive-group';
import type { StreamBody } from './body';
import { Fifo } from './fifo';
import type { ReadKind, SessionHooks } from './protocol';
import type { SourcePull } from './pull';

/** A waiting promise's settle functions. */
export interface Settle<T> {
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/** A waiting read. */
export interface Reader extends Settle<unknown> {
  kind: ReadKind;
}

/** Stands for a waiting queue not made yet: always empty, never pushed to. */
export const NO_QUEUE = new Fifo<never>();

/** `Extras.lentFlags`: the stream is in `lentToTell`. */
export const LENT_LISTED = 1;
/** `Extras.lentFlags`: the run that lent the batch has ended with some of it left: later takes are told, per run. */
export const LENT_LATE = 2;

/**
 * The part of a stream's state that only some streams use (sessions, pipes, limiters, pulled sources and fused
 * reads, lent batches, timers, traces, task bodies, a second waiting read, `ctx.signal`, the id), made by the
 * stream's first write to it (`HandlerStream.#more`). Until then the stream reads `NO_EXTRAS`, these defaults: a
 * stream of one handler and one reader, fed by sends, never makes one.
 */
export class Extras<I, O> {
  /** The stream's id (`s<key>`), made when first asked for. */
  id: string | undefined = undefined;
  /** Stops for the async sources being sent now (made on the first one; a pulled source is `pull`). */
  sources: Set<SourceStop> | null = null;
  /** The idle deadline passed while the stream waited on a source sent into it (`#stalled`): its error. */
  stalled: SourceStalledError | undefined = undefined;
  /** The handler's `ctx.signal`, made on first use. */
  abort: AbortController | undefined = undefined;
  /** Why `ctx.signal` was aborted by the body (it is failing), if it was. */
  bodyAbort: { reason: unknown } | undefined = undefined;
  /** A task stage's body, or null for a handler generator. */
  body: StreamBody<I, O> | null = null;
  /** The session's durable side (`ctx.restored`, `ctx.checkpoint`), or undefined (a no-op checkpoint). */
  hooks: SessionHooks | undefined = undefined;
  /** In-process timers of `ctx.wakeAt` (without hooks), cleared when the handler finishes. */
  wakeTimers: Set<NodeJS.Timeout> | null = null;
  /** Those of them made with a key, by key. */
  keyedTimers: Map<string, NodeJS.Timeout> | null = null;
  /** The pipe's keep-alive group, for a stage of a pipe: it decides instead of this stream (see `AliveGroup`). */
  group: AliveGroup | null = null;
  /** This stage is the pipe's last (configuration, set with `group`: not a flag of the state word). */
  groupLast = false;
  /** Told at once when the stream is cancelled (`kWatchCancel`: its pipe). */
  onCancel: ((reason: unknown) => void) | null = null;
  /** Told at once when the handler has finished (`kWatchFinish`: its pipe, of its last stage). */
  onFinish: (() => void) | null = null;
  /** The source the handler pulls its events from directly, while one feeds it (see pull.ts). */
  pull: SourcePull<I> | null = null;
  /** Its reads are its owner's (`kOwnedReads`): they hold it for nothing while it waits for admission (set once). */
  ownedReads = false;
  /** How the taking of the lent batch is told to the core: `LENT_LISTED`, `LENT_LATE` (see `tellLater` in stream.ts). */
  lentFlags = 0;
  /** Events of the lent batch the core knows are taken (its first is told by the take that lent it). */
  inTold = 0;
  /** `performance.now()` at the first take of the lent batch in this run, when it is not the run that lent it. */
  lateFrom = 0;
  /** The stream's span, until it ends (tracing.ts); undefined when nothing traces. */
  trace: StreamTrace | undefined = undefined;
  /** Settles when the handler has returned; made only when someone asks (see kFinished). */
  finished: Promise<void> | null = null;
  resolveFinished: (() => void) | null = null;
  /** `#resumeStep` as the callback of a handler paused at its yield (`#resumeHandler`), made on first use. */
  resumeStepFn: (() => void) | undefined = undefined;
  /** Outputs the handler yielded so far (a checkpoint comes after them). */
  yielded = 0;
  /** Reads waiting after `HandlerStream.#reader` (a shared empty queue until the first one). */
  moreReaders: Fifo<Reader> = NO_QUEUE;
}

/** Closes an async source being sent (`#sendAsync`); `stalls`: its stall fails the stream (see `#stalled`). */
export type SourceStop = ((reason?: unknown) => void) & { readonly stalls: boolean };

/** Every stream's `Extras` until it writes one (never written to: `HandlerStream.#more` makes a stream its own). */
export const NO_EXTRAS: Readonly<Extras<unknown, unknown>> = new Extras<unknown, unknown>();
