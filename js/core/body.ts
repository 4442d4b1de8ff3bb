// The body protocol: what runs inside a `HandlerStream` in place of a handler generator (a task stage's runner,
// js/core/task.ts; a worker stream's caller, js/worker/caller.ts) drives the stream with. The same input and
// output paths a handler's `for await` and `yield` take, without a promise per event.

/** The stream's `ctx.signal` for its handler or body (registered: other copies of the module read it). */
export const kHandlerSignal = Symbol.for('velo-stream.handlerSignal');
export const kNextInput = Symbol.for('velo-stream.nextInput');
/** The body leaves its input: as a handler leaving its `for await`. */
export const kReleaseInput = Symbol.for('velo-stream.releaseInput');

/** Starts a `StreamBody` on its stream. */
export const kStartBody = Symbol('velo.startBody');
/** The next input event now, or `NO_INPUT` (none yet) or `INPUT_END`. */
export const kPollInput = Symbol('velo.pollInput');
export const NO_INPUT = Symbol('velo.noInput');
export const INPUT_END = Symbol('velo.inputEnd');
/** How many more events `kPollInput` returns without asking the core (the rest of the batch lent). */
export const kInputLent = Symbol('velo.inputLent');
/** Moves up to `max` events of the batch lent onto the end of an array (a batch stage's batch), as many `kPollInput` calls would; returns the array (a new one in place of an empty one). */
export const kTakeLent = Symbol('velo.takeLent');
/** Calls back once with the next input (or its end) when there is none now. */
export const kAwaitInput = Symbol('velo.awaitInput');
/** Emits one output: `Emit.Emitted`, `Emit.Paused` (wait with `kAwaitRoom`), or `Emit.Closed`. */
export const kEmit = Symbol('velo.emit');
/** Calls back once when a paused emit's output went in (or at a cancel). */
export const kAwaitRoom = Symbol('velo.awaitRoom');
/** The body finished: `kBodyReturned()` or `kBodyThrew(error)`, as a handler returns or throws. */
export const kBodyReturned = Symbol('velo.bodyReturned');
export const kBodyThrew = Symbol('velo.bodyThrew');
/** Aborts `ctx.signal` with a reason (the body is failing). */
export const kAbortSignal = Symbol('velo.abortSignal');
/**
 * The body has deadlines or work elsewhere pending: a waiting read keeps the process alive for them, as for the
 * idle deadline; with `sendsToo` a waiting send does too (its answer comes from work off this thread).
 */
export const kTimersPending = Symbol('velo.timersPending');
/** The stream's trace (tracing.ts), or undefined: a body runs its calls in its context. */
export const kTrace = Symbol('velo.trace');
/** Makes the stream a member of a pipe's keep-alive group (`last`: the stage the user reads). Registered: a pipe joins stages of other copies of the module. */
export const kJoinAliveGroup = Symbol.for('velo-stream.joinAliveGroup');
/**
 * Calls `cancelled(reason)` when the stream is cancelled, at once (before any reader or handler learns of it): a
 * pipe cancels itself when one of its stages is cancelled from outside it. Registered, as `kJoinAliveGroup`.
 */
export const kWatchCancel = Symbol.for('velo-stream.watchCancel');
/**
 * Calls `finished()` when the stream's handler has finished, at once (its failure known, before any reader learns
 * of its end): a pipe decides its outcome at its last stage's end, so a reader that saw the end sees it counted.
 */
export const kWatchFinish = Symbol.for('velo-stream.watchFinish');

export const enum Emit {
  Emitted,
  Paused,
  Closed,
}

/** Something that runs inside a stream in place of a handler generator. */
export interface StreamBody<I, O> {
  /** What kind of stream it is, for traces (`task`, `batch`, `worker`). */
  readonly kind: string;
  /** Its events' and outputs' types (never set: they type the stream it runs in). */
  readonly types?: (event: I) => O;
  /** Starts it in `stream`, the `HandlerStream` it runs in (typed by each body: this module is below stream.ts). */
  [kStartBody](stream: unknown): void;
  /** The stream was cancelled: stop, and finish once nothing runs. */
  cancelled(): void;
  /** Listeners `ctx.signal` may hold at once before Node warns of a leak: calls in flight each add theirs (`fetch(url, { signal })`). */
  readonly signalListeners: number;
  /** A read waits and the stream holds the process alive for it (or no longer): a body whose next step happens elsewhere holds itself meanwhile. */
  keepAlive?(on: boolean): void;
  /**
   * How many events its handler has taken, when that is not what the body took from the stream (a worker
   * stream's body forwards events to a handler on another thread, which may stop before taking them all):
   * the stream's `kTaken`. Never decreases.
   */
  taken?(): number;
  /** Whether its handler was told its input ended (the stream's `kTakenEnd`), when that is not whether the body was. */
  takenEnd?(): boolean;
}
