// A `workerFn` stream on the caller's thread: an ordinary `HandlerStream`
// (its lanes, backpressure, idle clock, limits and metrics are the caller's)
// whose body forwards input batches to the worker thread and emits the
// output batches that come back.
import { CrossPushStatus, CrossTakeStatus, addon } from '../addon/addon';
import { type HandlerStream } from '../core/stream';
import {
  Emit,
  INPUT_END,
  NO_INPUT,
  type StreamBody,
  kAwaitInput,
  kAwaitRoom,
  kBodyReturned,
  kBodyThrew,
  kEmit,
  kHandlerSignal,
  kPollInput,
  kReleaseInput,
  kStartBody,
  kTrace,
  kTimersPending,
} from '../core/body';
import { traceParent } from '../tracing';
import {
  type Arrived,
  type Encoded,
  decodeBatch,
  encodeBatch,
  encodePrefix,
  isThrown,
  needsTransfer,
  rebuildThrown,
} from './codec';
import { type Hosted, type ThreadHost, listen, ownInbox, unlisten } from './pool';
import { CALLER_SIDE, INPUT, LANE_BATCHES, MAX_BATCH, OUTPUT, PARKED_AT, TAKEN_END, sharedState, takenView } from './protocol';

/** A stream nobody holds any more is cancelled, so its worker-side handler stops too. */
const abandoned = new FinalizationRegistry<{ pair: number; host: ThreadHost }>(({ pair, host }) => {
  host.cancel(pair, undefined);
  addon.crossRelease(pair, CALLER_SIDE);
  unlisten(pair);
  host.leave(pair);
});

/** Streams a reader waits on while their worker has the next step: nothing else may hold them (a collected stream's reader would wait forever). */
const held = new Set<{ checkDormant(): void }>();

/**
 * How often held streams are checked for a handler that waits for input
 * that was never sent: such a stream has no next step on its worker, and is
 * let go (collectable, and no longer keeping the process alive), as an
 * in-process stream whose handler waits for input. Checked on a timer, not
 * told by the worker: that would cost a message per event.
 */
const SWEEP_MS = 250;
let sweeper: NodeJS.Timeout | undefined;

function sweep(): void {
  for (const body of held) body.checkDormant();
  if (held.size === 0) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

const enum InputState {
  /** Forwarding (or about to). */
  Moving,
  /** The stream has no input now; `kAwaitInput` calls back. */
  AwaitingInput,
  /** The lane is full and holds a batch back; its wake resumes. */
  AwaitingRoom,
  /** Ended, or the worker stopped reading. */
  Done,
}

export class CallerBody<I, O> implements StreamBody<I, O>, Hosted {
  readonly kind = 'worker';
  #stream!: HandlerStream<I, O>;
  readonly #host: ThreadHost;
  readonly #maxBatch: number;
  /** Large whole ArrayBuffers of events are moved to the worker (`WorkerFnConfig.transfer`). */
  readonly #transfer: boolean;
  /** What the worker sent by the port, one per output batch that refers to it, in order. */
  readonly #arrived: Arrived[] = [];
  /** An event the clone format refused: the stream fails with it once the handler has finished with the events before it. */
  #inputError: { error: unknown } | undefined;
  /** An output batch taken from the lane whose transferred ArrayBuffers have not arrived yet. */
  #waitingBatch: Buffer[] | null = null;
  #pair = -1;
  readonly signalListeners = 10;
  /** Shared with the worker (`PARKED_AT`, `TAKEN_END`). */
  readonly #state = sharedState();
  /** The worker handler's taken count, in `#state`'s buffer. */
  readonly #takenCount = takenView(this.#state);
  /** Input batches sent. */
  #pushed = 0;
  /** Let go by `checkDormant` until new input is sent or an output comes. */
  #dormant = false;

  #input = InputState.Moving;
  /** An event handed over by `kAwaitInput`, sent with the next batch. */
  #carry: unknown[] = [];
  #endAfterRoom = false;

  /** Outputs taken from the lane and not yet emitted. */
  #outVals: unknown[] = [];
  #outPos = 0;
  /** What the handler threw, emitted after its last outputs. */
  #thrown: { error: unknown } | undefined;
  #outputEnded = false;
  #awaitingOutput = false;
  #awaitingRoom = false;
  #finished = false;

  constructor(host: ThreadHost, buffer: number, transfer: boolean) {
    this.#host = host;
    this.#transfer = transfer;
    this.#maxBatch = Math.max(1, Math.min(buffer, MAX_BATCH));
  }

  [kStartBody](stream: HandlerStream<I, O>): void {
    this.#stream = stream;
    const pair = addon.crossOpen(ownInbox(), this.#host.inbox, LANE_BATCHES);
    this.#pair = pair;
    listen(pair, this);
    abandoned.register(this, { pair, host: this.#host }, this);
    const trace = stream[kTrace];
    this.#host.place(pair, this, {
      type: 'open',
      pair,
      id: stream.id,
      maxBatch: this.#maxBatch,
      state: this.#state,
      ...(trace === undefined ? {} : { trace: traceParent(trace) }),
    });
    this.#pumpInput();
    this.#pumpOutput();
  }

  /** A wake from the worker's side: room on the input lane, or outputs (or the end) on the output lane. */
  wake(lane: number): void {
    if (this.#finished) return;
    if (lane === INPUT) {
      if (this.#input !== InputState.AwaitingRoom) return;
      const status = addon.crossPush(this.#pair, INPUT, null);
      if (status === CrossPushStatus.Parked) return;
      if (status !== CrossPushStatus.Accepted) return this.#inputRefused();
      this.#input = InputState.Moving;
      if (this.#endAfterRoom) {
        this.#input = InputState.Done;
        addon.crossEnd(this.#pair, INPUT);
        return;
      }
      this.#pumpInput();
    } else if (this.#awaitingOutput) {
      this.#awaitingOutput = false;
      this.#pumpOutput();
    }
  }

  cancelled(): void {
    if (this.#finished) return;
    // (The stream is cancelled: its handler signal aborts with the cancel's reason.)
    this.#host.cancel(this.#pair, this.#stream[kHandlerSignal].reason);
    this.#finish();
    this.#stream[kBodyReturned]();
  }

  closedBy(reason: Error): void {
    if (!this.#finished) void this.#stream.cancel(reason);
  }

  crashed(error: Error): void {
    if (this.#finished) return;
    this.#finish();
    this.#stream[kBodyThrew](error);
  }

  transferArrived(arrived: Arrived): void {
    if (this.#finished) return;
    this.#arrived.push(arrived);
    if (this.#waitingBatch !== null) this.#pumpOutput();
  }

  /** What the worker's handler took: events the body forwarded that it never took are not taken (sessions pass them on). */
  taken(): number {
    return this.#takenCount[0];
  }

  takenEnd(): boolean {
    return Atomics.load(this.#state, TAKEN_END) === 1;
  }

  /** A reader waits on the stream (or stopped waiting): while the worker has the next step, the stream must not be collected. */
  keepAlive(on: boolean): void {
    if (on && !this.#finished) {
      held.add(this);
      sweeper ??= setInterval(sweep, SWEEP_MS).unref();
    } else held.delete(this);
  }

  /**
   * Lets the stream go if its handler waits for input with every batch sent
   * taken, and no output is left in the lane: nothing will come until the
   * caller sends more (as for an in-process handler waiting for input). Only
   * while this side waits for input too: with a batch held back for room, or
   * the end sent, the handler has a next step, though `PARKED_AT` may still
   * say where it last parked (its thread busy with another stream's handler).
   */
  checkDormant(): void {
    if (this.#finished || !this.#awaitingOutput || this.#input !== InputState.AwaitingInput) return;
    if (Atomics.load(this.#state, PARKED_AT) !== this.#pushed) return;
    // Outputs pushed before the handler parked are in the lane: take them first.
    this.#awaitingOutput = false;
    this.#pumpOutput();
    if (!this.#awaitingOutput) return;
    this.#dormant = true;
    this.#stream[kTimersPending](false, true);
  }

  /** New input, or its end: the handler has a next step again (a read waiting keeps the process alive until it settles). */
  #wakeFromDormant(): void {
    this.#dormant = false;
    if (this.#awaitingOutput) this.#stream[kTimersPending](true, true);
  }

  // ----- input: the stream's events, to the worker in batches -----

  #pumpInput(): void {
    const stream = this.#stream;
    while (this.#input === InputState.Moving) {
      const batch = this.#carry;
      this.#carry = [];
      let ended = false;
      while (batch.length < this.#maxBatch) {
        const v = stream[kPollInput]();
        if (v === NO_INPUT) break;
        if (v === INPUT_END) {
          ended = true;
          break;
        }
        batch.push(v);
      }
      if (batch.length > 0) {
        let encoded: Encoded | null;
        try {
          encoded = encodeBatch(batch, this.#transfer);
        } catch (error) {
          // The events before the refused one still reach the handler (their
          // sends resolved); then its input ends, and the stream fails with
          // the clone error once the handler has finished.
          this.#inputError = { error };
          this.#carry = [];
          stream[kReleaseInput]();
          encoded = encodePrefix(batch, this.#transfer);
          ended = true;
          if (encoded === null) {
            this.#input = InputState.Done;
            addon.crossEnd(this.#pair, INPUT);
            return;
          }
        }
        // The ArrayBuffers go first, by the thread's port: the batch that refers to them may be taken before they arrive, never after.
        if (encoded.byPort !== null) this.#host.transfer(this.#pair, encoded.byPort);
        const status = addon.crossPush(this.#pair, INPUT, encoded.bytes, encoded.attached);
        this.#pushed++;
        if (this.#dormant) this.#wakeFromDormant();
        if (status === CrossPushStatus.Parked) {
          this.#input = InputState.AwaitingRoom;
          this.#endAfterRoom = ended;
          return;
        }
        if (status !== CrossPushStatus.Accepted) return this.#inputRefused();
      }
      if (ended) {
        this.#input = InputState.Done;
        addon.crossEnd(this.#pair, INPUT);
        if (this.#dormant) this.#wakeFromDormant();
        return;
      }
      if (batch.length < this.#maxBatch) {
        this.#input = InputState.AwaitingInput;
        stream[kAwaitInput](this.#onInput);
        return;
      }
    }
  }

  readonly #onInput = (r: IteratorResult<I>): void => {
    if (this.#input !== InputState.AwaitingInput || this.#finished) return;
    this.#input = InputState.Moving;
    if (r.done === true) {
      this.#input = InputState.Done;
      addon.crossEnd(this.#pair, INPUT);
      if (this.#dormant) this.#wakeFromDormant();
      return;
    }
    this.#carry.push(r.value);
    this.#pumpInput();
  };

  /** The worker's handler stopped reading (it returned, threw, or left its loop): no more input goes to it. */
  #inputRefused(): void {
    this.#input = InputState.Done;
    this.#carry = [];
    this.#stream[kReleaseInput]();
  }

  // ----- output: batches from the worker, emitted -----

  #pumpOutput(): void {
    const stream = this.#stream;
    for (;;) {
      while (this.#outPos < this.#outVals.length) {
        const value = this.#outVals[this.#outPos];
        this.#outVals[this.#outPos++] = undefined;
        const emitted = stream[kEmit](value as O);
        if (emitted === Emit.Paused) {
          this.#awaitingRoom = true;
          stream[kAwaitRoom](this.#onRoom);
          return;
        }
        // Closed: cancelled, and `cancelled()` finishes.
        if (emitted === Emit.Closed) return;
      }
      if (this.#inputError !== undefined && (this.#thrown !== undefined || this.#outputEnded)) {
        const { error } = this.#inputError;
        this.#finish();
        stream[kBodyThrew](error);
        return;
      }
      if (this.#thrown !== undefined) {
        const { error } = this.#thrown;
        this.#finish();
        stream[kBodyThrew](error);
        return;
      }
      if (this.#outputEnded) {
        this.#finish();
        stream[kBodyReturned]();
        return;
      }
      const got = this.#waitingBatch ?? addon.crossTake(this.#pair, OUTPUT);
      this.#waitingBatch = null;
      if (typeof got === 'number') {
        if (got === CrossTakeStatus.Empty) {
          this.#awaitingOutput = true;
          stream[kTimersPending](!this.#dormant, true);
          return;
        }
        // Cancelled: by `cancelled()` or a crash, each of which finishes.
        if (got === CrossTakeStatus.Ended) this.#outputEnded = true;
        else return;
        continue;
      }
      this.#dormant = false;
      this.#outVals = [];
      this.#outPos = 0;
      let arrived: Arrived | undefined;
      if (needsTransfer(got)) {
        arrived = this.#arrived.shift();
        if (arrived === undefined) {
          // `transferArrived` resumes. Until then a waiting read keeps the
          // process alive and the stream held, as while the lane was empty.
          this.#waitingBatch = got;
          stream[kTimersPending](true, true);
          return;
        }
      }
      stream[kTimersPending](false, true);
      const decoded = decodeBatch(got, arrived);
      if (isThrown(decoded)) this.#thrown = { error: rebuildThrown(decoded) };
      else this.#outVals = decoded;
    }
  }

  readonly #onRoom = (): void => {
    if (!this.#awaitingRoom || this.#finished) return;
    this.#awaitingRoom = false;
    this.#pumpOutput();
  };

  #finish(): void {
    this.#finished = true;
    held.delete(this);
    this.#outVals = [];
    this.#carry = [];
    this.#stream[kTimersPending](false, true);
    abandoned.unregister(this);
    unlisten(this.#pair);
    this.#host.leave(this.#pair);
    addon.crossRelease(this.#pair, CALLER_SIDE);
  }
}
