// A stream made of stages: each stage is a stream of its own function, and a
// link moves one stage's outputs into the next stage's input in batches, with
// backpressure both ways (a full next stage stops the link, which stops
// reading, which pauses the previous handler at its yield).
import type { Duplex } from 'node:stream';
import { toDuplex } from './duplex';
import { type Endpoints, ReadKind, kDrain, kRead, kSendAll, kSignal, kWaitOutput } from './internal';
import { Outputs, type StreamImpl, assertSource, feedOutputs, kCancelWith, kFailure, kFinished } from './stream';
import type { EventSource, FeedOutputs, Stream, StreamMetrics, StreamState } from './types';

type Stage = StreamImpl<unknown, unknown>;
type PipeOutcome = 'completed' | 'failed' | 'cancelled';

export class PipedStream<I, O> implements Stream<I, O>, Endpoints<I, O> {
  readonly #stages: readonly Stage[];
  readonly #head: Stage;
  readonly #tail: Stage;
  readonly #signal: AbortSignal | undefined;
  #failure: { error: unknown } | undefined;
  #cancelled = false;
  readonly #finished: Promise<void>;
  /** How the pipe ended, once every stage's handler has finished. */
  readonly settled: Promise<PipeOutcome>;

  constructor(stages: readonly Stage[], signal: AbortSignal | undefined) {
    this.#stages = stages;
    this.#head = stages[0] as Stage;
    this.#tail = stages[stages.length - 1] as Stage;
    this.#signal = signal;
    for (let i = 0; i + 1 < stages.length; i++) void this.#link(stages[i] as Stage, stages[i + 1] as Stage);
    for (const stage of stages) {
      void stage[kFinished].then(() => {
        const failure = stage[kFailure];
        if (failure !== undefined) this.#fail(failure.error);
      });
    }
    this.#finished = Promise.all(stages.map((s) => s[kFinished])).then(() => undefined);
    this.settled = this.#finished.then(() => (this.#failure ? 'failed' : this.#cancelled ? 'cancelled' : 'completed'));
    if (signal !== undefined) {
      const onAbort = () => void this.cancel(signal.reason);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        void this.#finished.then(() => signal.removeEventListener('abort', onAbort));
      }
    }
  }

  async #link(from: Stage, to: Stage): Promise<void> {
    const batch: unknown[] = [];
    try {
      for (;;) {
        batch.length = 0;
        const finished = from[kDrain](batch);
        if (batch.length > 0 && !(await to[kSendAll](batch, false))) {
          // The next stage reads no more: what this one makes has nowhere to go.
          void from.cancel();
          return;
        }
        if (finished) {
          if (from.state !== 'cancelled') to.end();
          return;
        }
        await from[kWaitOutput]();
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  /** One stage failed: every other stage stops, and the consumer gets the error. */
  #fail(error: unknown): void {
    if (this.#failure !== undefined || this.#cancelled) return;
    this.#failure = { error };
    for (const stage of this.#stages) {
      if (stage === this.#tail) void stage[kCancelWith](error);
      else void stage.cancel(error);
    }
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

  end(): void {
    this.#head.end();
  }

  recv(): Promise<O> {
    return this.#tail[kRead](ReadKind.Recv) as Promise<O>;
  }

  feed(events: EventSource<I>): FeedOutputs<O> {
    assertSource(events);
    return Object.assign(feedOutputs(this, events), { cancel: (reason?: unknown) => this.cancel(reason) });
  }

  duplex(): Duplex {
    return toDuplex(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<O> {
    return new Outputs<O>(this);
  }

  [kRead](kind: ReadKind): Promise<unknown> {
    return this.#tail[kRead](kind);
  }

  [kSendAll](source: EventSource<I>, end: boolean): Promise<boolean> {
    return this.#head[kSendAll](source, end);
  }

  [kDrain](out: O[]): boolean {
    return this.#tail[kDrain](out as unknown[]);
  }

  [kWaitOutput](): Promise<unknown> {
    return this.#tail[kWaitOutput]();
  }

  cancel(reason?: unknown): Promise<void> {
    // A stage may have failed a moment ago (the consumer saw its error and
    // is cleaning up): that is a failure of the pipe, not a cancellation.
    for (const stage of this.#stages) {
      const failure = stage[kFailure];
      if (failure !== undefined) this.#fail(failure.error);
    }
    if (this.#failure === undefined) this.#cancelled = this.#cancelled || this.#tail.state !== 'done';
    for (const stage of this.#stages) void stage.cancel(reason);
    return this.#finished;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.cancel();
  }
}
