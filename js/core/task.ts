// Task stages: `task(fn)` and `batch(fn)`, stream functions whose streams run
// per-item (or per-batch) async calls concurrently, results leaving in input
// order or as they complete.
//
// A task stage's stream is an ordinary `HandlerStream` (same input and output
// lanes, backpressure, idle clock, cancel and metrics) whose body is a
// `TaskRunner` instead of a handler generator. The runner only starts calls
// and settles their promises; every decision is the core's task window
// (crates/velo-core/src/task.rs): whether a call may start, which results
// are ready, when to retry, when a batch is due. Retry and `maxWait`
// deadlines are armed on the thread's deadline set, as idle deadlines are.
import { isPromise } from 'node:util/types';
import type { BatchConfig, StreamFn, TaskConfig, TaskContext } from '../types';
import { type IdleTarget, scratchU32, unwatchIdle, watchIdle } from '../addon/addon';
import { Fifo } from './fifo';
import { singleStage } from './function';
import { Attempt, MAX_BATCH, type NativeStream, TaskSettleCode, TaskStartCode } from './native-stream';
import { type HandlerStream } from './stream';
import {
  Emit,
  INPUT_END,
  NO_INPUT,
  type StreamBody,
  kAbortSignal,
  kAwaitInput,
  kAwaitRoom,
  kBodyReturned,
  kBodyThrew,
  kEmit,
  kHandlerSignal,
  kInputLent,
  kTakeLent,
  kPollInput,
  kReleaseInput,
  kStartBody,
  kTimersPending,
  kTrace,
} from './body';
import type { Span, StreamTrace } from '../tracing';
import { HeldSlot, keepWhenCollected, kHeldSlot, releaseWhenCollected } from '../limits/use';
import type { WindowPermits } from '../limits/local';
import { type Call, MAX_COUNT, type OnError, type TaskSpec, checkTaskConfig } from './task-config';

/** The native `then`: a plain promise's reactions run once each, so it needs no adopting. */
// eslint-disable-next-line @typescript-eslint/unbound-method -- compared by identity, never called unbound
const nativeThen = Promise.prototype.then;
/** A promise that settles as `await value` does. */
const awaited = async <T>(value: T): Promise<Awaited<T>> => await value;

/** A stream's task deadlines are reported under its key plus this (see crates/velo-node/src/task_state.rs). */
const TASK_KEY_OFFSET = 2 ** 40;

class TaskCtx implements TaskContext {
  readonly #stream: HandlerStream<unknown, unknown>;
  readonly attempt: number;
  readonly index: number;
  /** With limiters: where the call keeps the permits it holds (js/limits/use.ts). */
  readonly [kHeldSlot]: HeldSlot | undefined;
  constructor(stream: HandlerStream<unknown, unknown>, attempt: number, index: number, held: HeldSlot | undefined) {
    this.#stream = stream;
    this.attempt = attempt;
    this.index = index;
    this[kHeldSlot] = held;
  }
  get id(): string {
    return this.#stream.id;
  }
  get signal(): AbortSignal {
    return this.#stream[kHandlerSignal];
  }
}

/** Runs one task stage's stream: starts calls as the window allows, settles them, emits what is ready. */
class TaskRunner<I, O> implements StreamBody<I, O>, IdleTarget {
  #stream!: HandlerStream<I, O>;
  readonly #native: NativeStream;
  readonly #fn: Call<unknown, O>;
  /**
   * With a limiter the window takes permits from: `fn` unwrapped, run by the calls the window granted a permit as
   * it started them (the others run `#fn`, which waits for one); and the limiter's side of it.
   */
  readonly #direct: Call<unknown, O> | undefined;
  readonly #permits: WindowPermits | undefined;
  /** With limiters: per slot, the permits its call holds now, outside the window's (`HeldSlot`; made as used). */
  readonly #held: HeldSlot[] | undefined;
  readonly #onError: OnError<unknown, O>;
  readonly #ordered: boolean;
  /** A batch stage's size bound, or 0 for a per-item stage. */
  readonly #maxSize: number;
  readonly #maxWait: number;
  /** Each call in flight may add an abort listener to `ctx.signal` (Node's default limit is 10). */
  readonly signalListeners: number;
  /** Traced: the stream's trace and each slot's call span (tracing.ts). */
  #trace: StreamTrace | undefined;
  #callSpans: (Span | undefined)[] | undefined;
  readonly kind: 'task' | 'batch';

  // Per call slot (0..concurrency): its item (or batch), index and attempt, and its promise's reactions.
  readonly #items: unknown[] = [];
  readonly #index: number[] = [];
  readonly #attempt: number[] = [];
  readonly #onOk: ((value: unknown) => void)[] = [];
  readonly #onErr: ((error: unknown) => void)[] = [];
  /** Slots waiting for their retry. */
  readonly #retrying = new Set<number>();
  /** Ordered mode: results by index, until every earlier one settled. */
  readonly #ring: unknown[] = [];
  readonly #ringSize: number;
  /** Ordered mode: the first index not yet ready (the core's head). */
  #head = 0;
  /** Ordered mode: errors of items that failed for good, by index. */
  readonly #errors = new Map<number, unknown>();
  /** Results ready to emit, in order. */
  readonly #ready = new Fifo<O>();
  /** Ready results dropped (filtered), not yet reported to the core. */
  #dropped = 0;
  /** Ready results emitted or dropped, not yet reported to the core (reported with its next start or settle). */
  #emitted = 0;
  /** Calls that succeeded since the last flush, and their results: settled in the core in one call per burst. */
  #doneSlots: number[] = [];
  #doneValues: (O | undefined)[] = [];
  #flushScheduled = false;
  /** Slots and items of the calls being started (reused). */
  readonly #startSlots: number[] = [];
  readonly #startItems: I[] = [];
  #nextIndex = 0;
  /** Items whose call began (the stream's `kTaken`): an item taken from the input and dropped before its call (a failure) was never taken. */
  #called = 0;
  /** Calls (and `onError` functions) whose promise has not settled. */
  #running = 0;
  /** An item taken from the input while no call could start. */
  #stash: { value: I } | undefined;
  /** The batch being filled. */
  #batch: I[] = [];

  #inputEnded = false;
  #waitingInput = false;
  #paused = false;
  #failure: { error: unknown } | undefined;
  #cancelled = false;
  #finished = false;
  #pumping = false;
  #again = false;
  #timersOn = false;
  /**
   * The batch being filled waits for the window (no call may start): no `maxWait` deadline is armed then (a call
   * settling or a result emitted moves things first), and none holds the stage.
   */
  #windowFull = false;

  constructor(native: NativeStream, spec: TaskSpec<I, O>) {
    this.#native = native;
    this.#fn = spec.fn as Call<unknown, O>;
    this.#direct = spec.direct?.fn as Call<unknown, O> | undefined;
    this.#permits = spec.direct?.permits;
    this.#onError = spec.onError as OnError<unknown, O>;
    this.#ordered = spec.policy.ordered;
    this.#maxSize = spec.policy.maxSize;
    this.kind = this.#maxSize > 0 ? 'batch' : 'task';
    this.#maxWait = spec.policy.maxWaitMs;
    this.#ringSize = Math.max(spec.policy.buffer, spec.policy.concurrency) + 1;
    // With limiters, the permits its calls hold come back if the stream is collected with calls that never settle
    // (those the window holds come back with its native state: `taskInit`).
    if (spec.limited) {
      this.#held = [];
      releaseWhenCollected(this, this.#held);
    }
    this.signalListeners = Math.min(spec.policy.concurrency, MAX_COUNT) + 10;
    native.taskInit(spec.policy, this.#permits?.collected);
  }

  [kStartBody](stream: HandlerStream<I, O>): void {
    this.#stream = stream;
    this.#pump();
  }

  /** Items passed to `fn`: sessions pass on those the stage took in and dropped when it failed. */
  taken(): number {
    return this.#called;
  }

  cancelled(): void {
    this.#cancelled = true;
    this.#stopWaiting();
    this.#ready.drain();
    this.#pump();
  }

  /** A retry or the batch's `maxWait` is due. */
  idleFired(): void {
    if (this.#finished || this.#cancelled || this.#failure !== undefined) return;
    for (const slot of this.#native.taskDue()) {
      this.#retrying.delete(slot);
      this.#attempt[slot]++;
      this.#running++;
      this.#call(slot);
    }
    this.#pump();
  }

  /** Moves things along until nothing can move: emits, takes input and starts calls, finishes. Re-entrant calls (a call that settles at once) loop here instead of nesting. */
  #pump(): void {
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#again = false;
        if (this.#finished) return;
        this.#emitReady();
        if (this.#failure === undefined && !this.#cancelled) {
          if (this.#maxSize > 0) this.#pullBatch();
          else this.#pull();
        }
        this.#syncTimers();
        this.#finishIfDone();
      } while (this.#again);
    } finally {
      this.#pumping = false;
    }
  }

  #emitReady(): void {
    let acked = this.#dropped;
    this.#dropped = 0;
    while (!this.#paused && this.#ready.length > 0) {
      const value = this.#ready.shift() as O;
      acked++;
      const emitted = this.#stream[kEmit](value);
      if (emitted === Emit.Paused) {
        // The output is in the core's line; the rest wait for room.
        this.#paused = true;
        this.#stream[kAwaitRoom](this.#onRoom);
      } else if (emitted === Emit.Closed) {
        this.#ready.drain();
      }
    }
    this.#emitted += acked;
  }

  /** A ready result: emitted now, unless earlier ones wait for output room. */
  #output(value: O): void {
    if (this.#paused || this.#ready.length > 0) {
      this.#ready.push(value);
      return;
    }
    this.#emitted++;
    const emitted = this.#stream[kEmit](value);
    if (emitted === Emit.Paused) {
      this.#paused = true;
      this.#stream[kAwaitRoom](this.#onRoom);
    }
  }

  /** Takes the count of results emitted since the last report, for a native call that reports it. */
  #takeEmitted(): number {
    const n = this.#emitted;
    this.#emitted = 0;
    return n;
  }

  readonly #onRoom = (): void => {
    this.#paused = false;
    this.#pump();
  };

  readonly #onInput = (r: IteratorResult<I>): void => {
    // (Called with `{ value, done }`, as a handler's pending next() is answered.)
    this.#waitingInput = false;
    if (r.done === true) this.#endOfInput();
    else if (this.#maxSize > 0) {
      this.#batch.push(r.value);
      this.#native.taskBatchAdd(1);
    } else this.#stash = { value: r.value };
    this.#pump();
  };

  #endOfInput(): void {
    this.#inputEnded = true;
    if (this.#maxSize > 0) this.#native.taskEndInput();
  }

  /** The next input item; or `NO_INPUT` when there is none now (the runner then waits for one) or the input ended. */
  #next(): I | typeof NO_INPUT {
    const v = this.#stream[kPollInput]();
    if (v === NO_INPUT) {
      this.#waitingInput = true;
      this.#stream[kAwaitInput](this.#onInput);
      return NO_INPUT;
    }
    if (v === INPUT_END) {
      this.#endOfInput();
      return NO_INPUT;
    }
    return v;
  }

  /** Per-item stage: takes input while calls may start, starting them a batch at a time. */
  #pull(): void {
    while (!this.#inputEnded && !this.#waitingInput) {
      let first: I;
      if (this.#stash !== undefined) first = this.#stash.value;
      else {
        const v = this.#next();
        if (v === NO_INPUT) return;
        first = v;
      }
      // The first item, and as many of the batch lent as calls may start (each granted its permit now, if the window
      // takes them, until one is refused).
      const permits = this.#permits;
      const started = this.#native.taskStart(
        Math.min(1 + this.#stream[kInputLent](), MAX_BATCH),
        this.#takeEmitted(),
        permits === undefined ? 0 : permits.takeNow(),
      );
      const n = started & (TaskStartCode.NoPermit - 1);
      const granted = permits === undefined ? 0 : n - (started - n) / TaskStartCode.NoPermit;
      if (n === 0) {
        // The window is full: this item waits for a call to settle.
        this.#stash ??= { value: first };
        return;
      }
      this.#stash = undefined;
      // Everything is taken before any call runs: a call may reenter the stream.
      const slots = this.#startSlots;
      const items = this.#startItems;
      for (let k = 0; k < n; k++) {
        slots[k] = scratchU32[k];
        items[k] = k === 0 ? first : (this.#stream[kPollInput]() as I);
      }
      for (let k = 0; k < n; k++) {
        const item = items[k];
        items[k] = undefined as I;
        this.#begin(slots[k], item, k < granted ? this.#direct! : this.#fn);
      }
    }
  }

  /** Batch stage: fills the batch, and starts it when the window says it is due. */
  #pullBatch(): void {
    let added = 0;
    while (!this.#inputEnded && !this.#waitingInput && this.#batch.length < this.#maxSize) {
      // The rest of the batch lent, in one move; then the next item (or the wait for one).
      const before = this.#batch.length;
      this.#batch = this.#stream[kTakeLent](this.#batch, this.#maxSize - before) as I[];
      if (this.#batch.length > before) {
        added += this.#batch.length - before;
        continue;
      }
      const v = this.#next();
      if (v === NO_INPUT) break;
      this.#batch.push(v);
      added++;
    }
    if (added > 0) this.#native.taskBatchAdd(added);
    this.#windowFull = false;
    if (this.#batch.length === 0) return;
    // The gate counts results held: report those emitted first.
    if (this.#emitted > 0) this.#native.taskEmitted(this.#takeEmitted());
    const slot = this.#native.taskStartBatch();
    if (slot < 0) {
      this.#windowFull = slot === -2;
      return;
    }
    const batch = this.#batch;
    this.#batch = [];
    this.#begin(slot, batch);
    // Room for the next batch: take more input.
    this.#again = true;
  }

  /** Starts the call in `slot`; `fn` is `#direct` for a call that holds the window's permit. */
  #begin(slot: number, item: unknown, fn = this.#fn): void {
    this.#called += this.#maxSize > 0 ? (item as I[]).length : 1;
    this.#items[slot] = item;
    this.#index[slot] = this.#nextIndex++;
    this.#attempt[slot] = 1;
    this.#running++;
    this.#call(slot, fn);
  }

  /** With limiters, the slot's `HeldSlot` (made at its first call). */
  #heldSlot(slot: number): HeldSlot | undefined {
    const held = this.#held;
    return held === undefined ? undefined : (held[slot] ??= new HeldSlot());
  }

  #ctx(slot: number): TaskCtx {
    return new TaskCtx(
      this.#stream as HandlerStream<unknown, unknown>,
      this.#attempt[slot],
      this.#index[slot],
      this.#heldSlot(slot),
    );
  }

  #call(slot: number, fn = this.#fn): void {
    let result: O | Promise<O>;
    try {
      const trace = this.#stream[kTrace];
      if (trace === undefined) result = fn(this.#items[slot], this.#ctx(slot));
      else result = this.#tracedCall(trace, slot, fn);
    } catch (error) {
      this.#attemptFailed(slot, error);
      return;
    }
    if (result === null || (typeof result !== 'object' && typeof result !== 'function')) {
      this.#succeeded(slot, result);
      return;
    }
    // One pair of reactions per slot, made once: a slot's call settles once before the slot is used again.
    const onOk = (this.#onOk[slot] ??= (value: unknown) => this.#succeeded(slot, value as O | undefined));
    const onErr = (this.#onErr[slot] ??= (error: unknown) => this.#attemptFailed(slot, error));
    // Followed as `await` follows it. A native promise whose `constructor` is `Promise` goes by the native `then`,
    // whatever `then` it has of its own; anything else by its `then`, read once (a getter that throws, a revoked
    // Proxy, fails the call; one that is not a function makes the value itself the result). The plain promise is
    // told first, by its `then` and `constructor` (`isPromise` is a runtime call per call): so a native promise's
    // `then` is read once where `await` would not read it.
    let then: unknown;
    let thenFailed: { error: unknown } | undefined;
    let constructor: unknown;
    try {
      then = (result as { then?: unknown }).then;
      if (then === nativeThen) constructor = (result as { constructor?: unknown }).constructor;
    } catch (error) {
      thenFailed = { error };
    }
    if (then === nativeThen && constructor === Promise) {
      void (result as Promise<O>).then(onOk, onErr);
      return;
    }
    if (isPromise(result)) {
      try {
        constructor = (result as { constructor?: unknown }).constructor;
      } catch (error) {
        this.#attemptFailed(slot, error);
        return;
      }
      if (constructor === Promise) {
        void nativeThen.call(result, onOk, onErr);
        return;
      }
    }
    if (thenFailed !== undefined) {
      this.#attemptFailed(slot, thenFailed.error);
      return;
    }
    if (typeof then !== 'function') {
      this.#succeeded(slot, result as O);
      return;
    }
    // Any other thenable (a Promise subclass included) is adopted by a promise first, whose resolve functions
    // settle it once: its then() may throw, call back twice, or both.
    new Promise<O>((resolve, reject) => {
      (then as PromiseLike<O>['then']).call(result, resolve, reject);
    }).then(onOk, onErr);
  }

  /** A call in a span of its own, a child of the stream's (tracing.ts): ended when the attempt settles. */
  #tracedCall(trace: StreamTrace, slot: number, fn: Call<unknown, O>): O | Promise<O> {
    this.#trace = trace;
    const span = trace.child(`velo ${this.kind} call`, {
      'velo.task.index': this.#index[slot],
      'velo.task.attempt': this.#attempt[slot],
    });
    (this.#callSpans ??= [])[slot] = span;
    return trace.runIn(span, () => fn(this.#items[slot], this.#ctx(slot)));
  }

  /** Ends the span of `slot`'s call, if it has one. */
  #endCallSpan(slot: number, failure?: { error: unknown }): void {
    const span = this.#callSpans?.[slot];
    if (span === undefined) return;
    this.#callSpans![slot] = undefined;
    this.#trace!.endCall(span, failure);
  }

  #stopped(): boolean {
    return this.#cancelled || this.#failure !== undefined;
  }

  /** A call succeeded: queued, and settled in the core with the others of this burst of promise jobs. */
  #succeeded(slot: number, value: O | undefined): void {
    if (this.#callSpans !== undefined) this.#endCallSpan(slot);
    this.#doneSlots.push(slot);
    // Ordered: straight into the ring (a stop before the flush drops it with the rest).
    if (this.#ordered) this.#ring[this.#index[slot] % this.#ringSize] = value;
    else this.#doneValues.push(value);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushDone);
    }
  }

  readonly #flushDone = (): void => {
    this.#settleDone();
    this.#pump();
  };

  /**
   * Before a failure reaches the core: the calls that succeeded earlier in this burst of promise jobs (waiting
   * for the flush) are settled first, so the failure does not drop results that were ready before it (with
   * `ordered: false`, the flush would find the stage failed and drop them).
   */
  #settleEarlier(): void {
    if (this.#doneSlots.length > 0) this.#settleDone();
  }

  /** Settles the calls that succeeded in this burst of promise jobs (the flush's work, without moving on). */
  #settleDone(): void {
    this.#flushScheduled = false;
    const slots = this.#doneSlots;
    const values = this.#doneValues;
    const n = slots.length;
    this.#running -= n;
    // The permits these calls hold (of a limiter the window takes them from) come back in the same native calls.
    const now = this.#giveBackNow();
    if (this.#stopped()) {
      for (let k = 0; k < n; k++) this.#native.taskSettle(slots[k], Attempt.Dropped, now);
      this.#ring.length = 0;
    } else {
      for (let start = 0; start < n; start += MAX_BATCH) {
        const end = Math.min(n, start + MAX_BATCH);
        const code = this.#native.taskSettleDone(start === 0 ? slots : slots.slice(start), end - start, this.#takeEmitted(), now);
        if (this.#ordered) this.#takeReady(code & (TaskSettleCode.Failed - 1));
        else {
          for (let k = start; k < end; k++) {
            const value = values[k];
            if (value === undefined) this.#dropped++;
            else this.#output(value);
          }
        }
        if ((code & TaskSettleCode.Failed) !== 0) {
          this.#fail(this.#errors.get(this.#head));
          break;
        }
      }
    }
    for (let k = 0; k < n; k++) this.#items[slots[k]] = undefined;
    slots.length = 0;
    values.length = 0;
    this.#permits?.gaveBack();
  }

  /** When permits come back (the window's limiter's clock, read only while someone waits for one); 0 without. */
  #giveBackNow(): number {
    return this.#permits === undefined ? 0 : this.#permits.giveBackNow();
  }

  /** `taskSettle`, with the permit the call in `slot` may hold given back, and the waiters it decided settled. */
  #settle(slot: number, how: Attempt): number {
    const permits = this.#permits;
    if (permits === undefined) return this.#native.taskSettle(slot, how, 0);
    const code = this.#native.taskSettle(slot, how, permits.giveBackNow());
    permits.gaveBack();
    return code;
  }

  /** Ordered mode: moves `count` results from the head of the ring to the ready queue. */
  #takeReady(count: number): void {
    for (let k = 0; k < count; k++) {
      const at = this.#head++ % this.#ringSize;
      const result = this.#ring[at] as O | undefined;
      this.#ring[at] = undefined;
      if (result === undefined) this.#dropped++;
      else this.#output(result);
    }
  }

  #attemptFailed(slot: number, error: unknown): void {
    if (this.#callSpans !== undefined) this.#endCallSpan(slot, { error });
    this.#settleEarlier();
    this.#running--;
    if (this.#stopped()) {
      this.#settle(slot, Attempt.Dropped);
      this.#items[slot] = undefined;
      this.#pump();
      return;
    }
    const code = this.#settle(slot, Attempt.Error);
    if (code === TaskSettleCode.Retry) {
      this.#retrying.add(slot);
      this.#pump();
      return;
    }
    // No attempt left: the error policy decides.
    const policy = this.#onError;
    if (policy === 'skip') {
      this.#settled(slot, this.#settle(slot, Attempt.Skipped), undefined, undefined);
    } else if (policy === 'fail') {
      this.#settled(slot, this.#settle(slot, Attempt.Failed), undefined, { error });
    } else {
      this.#running++;
      let replaced: O | undefined | Promise<O | undefined>;
      try {
        replaced = policy(error, this.#items[slot], this.#ctx(slot));
      } catch (thrown) {
        this.#running--;
        this.#settled(slot, this.#settle(slot, Attempt.Failed), undefined, { error: thrown });
        this.#items[slot] = undefined;
        this.#pump();
        return;
      }
      // Followed exactly as `await` follows it (`Promise.resolve` would call a native promise's own `then`).
      awaited(replaced).then(
        (value) => {
          this.#running--;
          if (this.#stopped()) this.#settle(slot, Attempt.Dropped);
          else this.#settled(slot, this.#settle(slot, Attempt.Done), value, undefined);
          this.#items[slot] = undefined;
          this.#pump();
        },
        (thrown: unknown) => {
          this.#settleEarlier();
          this.#running--;
          if (this.#stopped()) this.#settle(slot, Attempt.Dropped);
          else this.#settled(slot, this.#settle(slot, Attempt.Failed), undefined, { error: thrown });
          this.#items[slot] = undefined;
          this.#pump();
        },
      );
      return;
    }
    this.#items[slot] = undefined;
    this.#pump();
  }

  /**
   * The core's answer to a final settle of `slot`: how many results just
   * became ready, and whether the stage fails now. `value` is the slot's
   * result (`undefined`: filtered), `failure` its error if it failed.
   */
  #settled(slot: number, code: number, value: O | undefined, failure: { error: unknown } | undefined): void {
    const failedNow = (code & TaskSettleCode.Failed) !== 0;
    const count = code & (TaskSettleCode.Failed - 1);
    if (this.#ordered) {
      const index = this.#index[slot];
      if (failure !== undefined) this.#errors.set(index, failure.error);
      this.#ring[index % this.#ringSize] = value;
      this.#takeReady(count);
      if (failedNow) this.#fail(this.#errors.get(this.#head));
    } else {
      if (count > 0) {
        if (value === undefined) this.#dropped++;
        else this.#output(value);
      }
      if (failedNow) this.#fail(failure?.error);
    }
  }

  /** An item failed for good: no new calls, the calls in flight see their signal abort and their results are dropped; the stream fails once they settled and what was ready before is emitted. */
  #fail(error: unknown): void {
    this.#failure = { error };
    this.#stopWaiting();
    this.#stream[kAbortSignal](error);
    this.#stream[kReleaseInput]();
  }

  /** Drops the retries waiting, an item taken and not started, and the batch being filled. */
  #stopWaiting(): void {
    if (this.#retrying.size > 0) {
      this.#native.taskDropRetries();
      this.#retrying.clear();
    }
    this.#stash = undefined;
    this.#batch = [];
  }

  #finishIfDone(): void {
    if (this.#running > 0 || this.#paused) return;
    if (this.#cancelled) {
      this.#finish();
      this.#stream[kBodyReturned]();
    } else if (this.#failure !== undefined) {
      if (this.#ready.length > 0) return;
      this.#finish();
      this.#stream[kBodyThrew](this.#failure.error);
    } else if (
      this.#inputEnded &&
      this.#stash === undefined &&
      this.#retrying.size === 0 &&
      this.#ready.length === 0 &&
      this.#batch.length === 0
    ) {
      this.#finish();
      this.#stream[kBodyReturned]();
    }
  }

  #finish(): void {
    this.#finished = true;
    // (No call runs now, so no slot holds a permit: nothing is left for a finalizer to give back.)
    if (this.#held !== undefined) keepWhenCollected(this.#held);
    this.#syncTimers();
  }

  /**
   * Watches the stream's task deadlines while a retry waits or a batch waits
   * for `maxWait` (the runner is then held, as a stream whose idle deadline
   * runs is); a read waiting meanwhile keeps the process alive.
   */
  #syncTimers(): void {
    const want =
      !this.#finished &&
      !this.#stopped() &&
      (this.#retrying.size > 0 || (this.#maxWait > 0 && this.#batch.length > 0 && !this.#inputEnded && !this.#windowFull));
    if (want === this.#timersOn) return;
    this.#timersOn = want;
    const key = this.#native.key + TASK_KEY_OFFSET;
    if (want) watchIdle(key, this);
    else unwatchIdle(key);
    this.#stream[kTimersPending](want, false);
  }
}

function makeStage<I, O>(kind: 'task' | 'batch', fn: unknown, config: unknown): StreamFn<I, Exclude<O, undefined>> {
  const { spec, stream } = checkTaskConfig<I, O>(kind, fn, config);
  const name = (fn as { name?: string }).name || kind;
  return singleStage<I, Exclude<O, undefined>>(
    (native, buffer) =>
      new TaskRunner<I, Exclude<O, undefined>>(native, { ...spec, policy: { ...spec.policy, buffer } } as TaskSpec<
        I,
        Exclude<O, undefined>
      >),
    stream,
    name,
  );
}

/**
 * A stage that calls `fn` once per item, up to `concurrency` calls at once
 * per stream, and outputs the results in input order (or as they complete,
 * with `ordered: false`). A result of `undefined` filters the item out.
 */
export function task<I, O>(
  fn: (item: I, ctx: TaskContext) => O | Promise<O>,
  config?: TaskConfig<I, O>,
): StreamFn<I, Exclude<O, undefined>> {
  return makeStage<I, O>('task', fn, config);
}

/**
 * A stage that groups items into batches of up to `maxSize` (flushed when
 * full, after `maxWait` with at least `minSize`, or at the end of the input)
 * and calls `fn` once per batch; one output per call.
 */
export function batch<I, O>(
  fn: (items: I[], ctx: TaskContext) => O | Promise<O>,
  config: BatchConfig<I, O>,
): StreamFn<I, Exclude<O, undefined>> {
  return makeStage<I, O>('batch', fn, config);
}
