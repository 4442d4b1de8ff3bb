// A stream made of stages: each stage is a stream of its own function, and a
// link moves one stage's outputs into the next stage's input in batches, with
// backpressure both ways (a full next stage stops the link, which stops
// reading, which pauses the previous handler at its yield).
import type { EventSource, StreamMetrics, StreamState } from '../types';
import { StreamBase, drainOutputs } from './drive';
import { watchAbort } from '../watch-abort';
import {
  ReadKind,
  type SendControl,
  kDrain,
  kFinished,
  kFuse,
  kInputError,
  kOwnedReads,
  kRead,
  kReadNow,
  kReadTo,
  type ReadTarget,
  kSendAll,
  kSendNow,
  kTraceAttributes,
  kSettle,
  kSignal,
  kStalled,
  kFedBy,
  kTaken,
  kTakenEnd,
  kWaitOutput,
  type NOT_NOW,
} from './protocol';
import type { StreamTrace } from '../tracing';
import { AliveGroup } from './alive-group';
import { type HandlerStream, kFailAtEnd, kFailure } from './stream';
import { kJoinAliveGroup, kWatchCancel, kWatchFinish } from './body';
import { kPullable } from './pull';

type Stage = HandlerStream<unknown, unknown>;
type PipeOutcome = 'completed' | 'failed' | 'cancelled';

export class PipedStream<I, O> extends StreamBase<I, O> {
  readonly #stages: readonly Stage[];
  readonly #head: Stage;
  readonly #tail: Stage;
  readonly #signal: AbortSignal | undefined;
  #failure: { error: unknown } | undefined;
  #cancelled = false;
  readonly #finished: Promise<void>;
  readonly #onOutcome: (outcome: PipeOutcome, error?: { error: unknown }) => void;
  /** The pipe's own span, the parent of its stages' (tracing.ts), if traced. */
  readonly #trace: StreamTrace | undefined;
  /** The reason of the cancel that decided the outcome, for the pipe's trace. */
  #cancelReason: { error: unknown } | undefined;
  #outcome: PipeOutcome | undefined;
  readonly #group = new AliveGroup();
  /** The pipe is cancelling a stage itself (`#cancelStage`): that stage's cancel is not the pipe's. */
  #cancelling = false;

  /**
   * `onOutcome` is told how the pipe ended as soon as that is known: at the
   * first stage failure, at `cancel()`, or else once every stage finished.
   */
  constructor(
    stages: readonly Stage[],
    signal: AbortSignal | undefined,
    onOutcome: (outcome: PipeOutcome, error?: { error: unknown }) => void,
    trace?: StreamTrace,
  ) {
    super();
    this.#onOutcome = onOutcome;
    this.#trace = trace;
    trace?.watch(this);
    this.#stages = stages;
    this.#head = stages[0];
    this.#tail = stages[stages.length - 1];
    this.#signal = signal;
    // Only a read of the last stage keeps the process alive, not the links' reads of the stages before it.
    stages.forEach((stage, i) => stage[kJoinAliveGroup](this.#group, i === stages.length - 1));
    // A stage cancelled from outside the pipe (its workerFn closed) cancels the pipe, before the next stage would
    // take its cut outputs for the whole of them: every stage stops, and the pipe is 'cancelled', never 'done'.
    for (const stage of stages)
      if (typeof stage[kWatchCancel] === 'function')
        stage[kWatchCancel]((reason) => {
          if (!this.#cancelling) void this.cancel(reason);
        });
    for (let i = 0; i + 1 < stages.length; i++) {
      // Stage errors are handled inside; anything else (a native call
      // failing) cancels the pipe with it rather than going unhandled.
      this.#link(i).catch((error: unknown) => void this.cancel(error));
    }
    // Stages whose end the pipe has not taken yet. The last stage's end, told at once where its kind tells it
    // (`kWatchFinish`), decides the outcome when the stages before it have ended: before its reader learns of the
    // end, so a reader whose `for await` ended sees the pipe counted in its `stats()`.
    let left = stages.length;
    const ended = (stage: Stage, i: number): void => {
      const failure = stage[kFailure];
      if (failure !== undefined) this.#fail(failure.error, i);
      if (--left === 0) this.#decide();
    };
    const last = stages.length - 1;
    let tailTold = false;
    if (typeof this.#tail[kWatchFinish] === 'function')
      this.#tail[kWatchFinish](() => {
        tailTold = true;
        ended(this.#tail, last);
      });
    stages.forEach((stage, i) => {
      void stage[kFinished].then(() => {
        if (i !== last || !tailTold) ended(stage, i);
      });
    });
    this.#finished = Promise.all(stages.map((s) => s[kFinished])).then(() => undefined);
    if (signal !== undefined) void this.#finished.then(watchAbort(signal, (reason) => void this.cancel(reason)));
  }

  /** Moves stage `i`'s outputs into stage `i + 1`'s input, in batches, until stage `i` ends. */
  async #link(i: number): Promise<void> {
    const from = this.#stages[i];
    const to = this.#stages[i + 1];
    // (A stage of another copy of this module may not know the pull: it keeps the batch link.)
    if (typeof to[kPullable] === 'function' && to[kPullable]()) return this.#pullLink(i, from, to);
    try {
      if (!(await drainOutputs(from, (batch) => to[kSendAll](batch, false)))) {
        // The next stage reads no more: what this one makes has nowhere to go.
        this.#cancelStage(from);
        return;
      }
    } catch (error) {
      // The stage threw, after its earlier outputs went on: the next stages
      // finish those, then the consumer gets its error.
      this.#fail(error, i);
      to.end();
      return;
    }
    if (from.state !== 'cancelled') to.end();
  }

  /**
   * The link as a pull (pull.ts): stage `i + 1`'s handler takes each event
   * from stage `i`'s outputs when it waits with nothing buffered, the outputs
   * ready with one (`kReadNow`) at once, with no loop between the two. The
   * same endings as the batch link: stage `i`'s end ends stage `i + 1`'s
   * input; its failure comes after its earlier outputs went on, and ends it
   * too; a next stage that stops taking events (it returned, or was
   * cancelled) cancels stage `i` (the source's `return()`).
   */
  async #pullLink(i: number, from: Stage, to: Stage): Promise<void> {
    const outputs: AsyncIterableIterator<unknown> & { [kReadNow](): unknown } = {
      next: () => from[kRead](ReadKind.Iter) as Promise<IteratorResult<unknown>>,
      return: () => {
        this.#cancelStage(from);
        return Promise.resolve({ value: undefined, done: true });
      },
      [kReadNow]: () => from[kReadNow](),
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    try {
      await to[kSendAll](outputs, true);
    } catch (error) {
      this.#fail(error, i);
      to.end();
    }
  }

  /**
   * Stage `at` failed. The stages before it stop: nothing they make can
   * reach the consumer any more. The stages after it finish processing what
   * it yielded before it threw (its link ends their input), and once the
   * consumer has read every output, reads reject with `error`. The first
   * failure is the pipe's.
   */
  #fail(error: unknown, at: number): void {
    if (this.#failure !== undefined || this.#cancelled) return;
    this.#failure = { error };
    this.#decide();
    for (let i = 0; i < at; i++) this.#cancelStage(this.#stages[i], error);
    if (this.#stages[at] !== this.#tail) this.#tail[kFailAtEnd](error);
  }

  /** Records how the pipe ended, once: the first of a failure, a cancel, or the end of every stage. */
  #decide(): PipeOutcome {
    if (this.#outcome === undefined) {
      this.#outcome = this.#failure ? 'failed' : this.#cancelled ? 'cancelled' : 'completed';
      this.#onOutcome(this.#outcome, this.#failure ?? this.#cancelReason);
    }
    return this.#outcome;
  }

  get id(): string {
    return this.#head.id;
  }

  get state(): StreamState {
    if (this.#failure !== undefined) return 'failed';
    if (this.#cancelled) return 'cancelled';
    const tail = this.#tail.state;
    if (tail === 'done' || tail === 'failed' || tail === 'cancelled') return tail;
    return this.#head.state === 'open' ? 'open' : 'ending';
  }

  get metrics(): StreamMetrics {
    const head = this.#head.metrics;
    const tail = this.#tail.metrics;
    return {
      ...head,
      eventsOut: tail.eventsOut,
      bufferedOut: tail.bufferedOut,
      durationMs: Math.max(head.durationMs, tail.durationMs + (tail.openedAt - head.openedAt)),
    };
  }

  get [kSignal](): AbortSignal | undefined {
    return this.#signal;
  }

  send(event: I): Promise<void> {
    return this.#head.send(event);
  }

  override [kSendNow](event: I): true | Promise<void> {
    return this.#head[kSendNow](event);
  }

  end(): void {
    this.#head.end();
  }

  [kInputError](): Error | undefined {
    return this.#head[kInputError]();
  }

  [kTaken](): number {
    return this.#head[kTaken]();
  }

  [kTakenEnd](): boolean {
    return this.#head[kTakenEnd]();
  }

  [kRead](kind: ReadKind): Promise<unknown> {
    return this.#tail[kRead](kind);
  }

  [kReadTo](reader: ReadTarget): void {
    this.#tail[kReadTo](reader);
  }

  [kSendAll](source: EventSource<I>, end: boolean, control?: SendControl): Promise<boolean> {
    return this.#head[kSendAll](source, end, control);
  }

  /** The first stage is the one fed, and the one with an idle clock. */
  [kStalled](): Error | undefined {
    return this.#head[kStalled]();
  }

  [kFedBy](): () => void {
    return this.#head[kFedBy]();
  }

  [kDrain](out: O[]): boolean {
    return this.#tail[kDrain](out);
  }

  [kWaitOutput](): Promise<unknown> {
    return this.#tail[kWaitOutput]();
  }

  [kSettle](): Promise<void> | undefined {
    return this.#tail[kSettle]();
  }

  [kReadNow](): O | typeof NOT_NOW {
    return this.#tail[kReadNow]() as O | typeof NOT_NOW;
  }

  [kFuse](): void {
    this.#tail[kFuse]();
  }

  [kOwnedReads](): void {
    this.#group.ownedReads();
  }

  [kTraceAttributes](attributes: Record<string, string>): void {
    this.#trace?.span.setAttributes(attributes);
  }

  cancel(reason?: unknown): Promise<void> {
    // A stage may have failed a moment ago (the consumer saw its error and
    // is cleaning up): that is a failure of the pipe, not a cancellation.
    this.#stages.forEach((stage, i) => {
      const failure = stage[kFailure];
      if (failure !== undefined) this.#fail(failure.error, i);
    });
    if (this.#failure === undefined) this.#cancelled = this.#cancelled || this.#tail.state !== 'done';
    this.#cancelReason ??= { error: reason };
    this.#decide();
    for (const stage of this.#stages) this.#cancelStage(stage, reason);
    return this.#finished;
  }

  /** Cancels a stage as part of the pipe's own work (not a cancel from outside: see `kWatchCancel`). */
  #cancelStage(stage: Stage, reason?: unknown): void {
    const was = this.#cancelling;
    this.#cancelling = true;
    try {
      void stage.cancel(reason);
    } finally {
      this.#cancelling = was;
    }
  }

  /** Settles when every stage's handler has finished (as a single stream's `kFinished`). */
  get [kFinished](): Promise<void> {
    return this.#finished;
  }
}
