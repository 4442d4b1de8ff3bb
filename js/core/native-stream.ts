// The seam between a stream's JavaScript half and its native core.
//
// `NativeStream` is the only caller of the per-stream raw ops
// (`crates/velo-node/src/raw.rs`). It owns the native handle, the encoding of
// values (numbers copied through the scratch buffer, anything else by index
// into the value table), the reaping of table entries the core dropped, and
// the finalizer that frees a garbage-collected stream's native state. Above
// it, nothing sees a handle, a status code or a table index: pushes answer
// with a `Push`, takes with a count or a `Take`, the lifecycle with a
// `StreamState`.
//
// One `send` crosses the seam like this: `HandlerStream.send` ->
// `NativeStream.send` (a number goes as itself; any other value is put in
// the value table and its index goes) -> `ops.sendNumber`/`ops.sendValue`
// (raw.rs: `push_one`) -> `StreamCore::send` in velo-core, which answers
// accepted, parked (no room: the caller waits), refused, or, when the handler
// waits and nothing is ahead, handed over (the value goes to the handler
// directly and the core keeps nothing).
import {
  PHASES,
  PhaseCode,
  PushStatus as Push,
  TakeStatus as Take,
  freeValues,
  onNextTurn,
  ops,
  scratch,
  scratchU32,
  unwatchIdle,
  valueTable,
} from '../addon/addon';
import type { StreamMetrics, StreamState } from '../types';
import { addon } from '../addon/addon';

/** A task window's settings (declared by the binding). */
export type TaskPolicy = Parameters<typeof addon.taskInit>[1];
const taskInit = addon.taskInit;

// How a task attempt ended, and what settling it answers: declared by the binding (crates/velo-node/src/task.rs).
import { TaskAttempt as Attempt, TaskSettleCode, TaskStartCode } from '../addon/addon';
export { Attempt, TaskSettleCode, TaskStartCode };

// What a push answers (`Push`: Accepted, Parked, Closed, Handoff) and a take
// answers besides a count (`Take`: Empty, Ended) are the Rust side's codes,
// declared once there (`crates/velo-node/src/raw.rs`, generated into
// native/index.d.ts).
export { Push, Take };

/** The most values one take or one slice moves (the scratch buffer's length). */
export const MAX_BATCH = scratch.length;

// ----- the value table -----
//
// The core holds numbers itself and every other value as an index into this
// table (see crates/velo-node/src/slot.rs). An entry lives exactly as long as
// the core holds its index: it is freed when the core hands the value back (a
// take, or a push refused or handed straight over), and reaped when the core
// dropped it (a cancel, a cleared buffer, a garbage-collected stream). The
// table is shared by every copy of the module on this thread (see addon.ts).

function put(value: unknown): number {
  const i = freeValues.length > 0 ? (freeValues.pop() as number) : valueTable.length;
  valueTable[i] = value;
  return i;
}

function takeValue(i: number): unknown {
  const value = valueTable[i];
  valueTable[i] = undefined;
  freeValues.push(i);
  return value;
}

function dropValue(i: number): void {
  valueTable[i] = undefined;
  freeValues.push(i);
}

/** Frees the entries of every value the core has dropped. */
function reap(): void {
  for (;;) {
    const n = ops.released();
    for (let k = 0; k < n; k++) dropValue(scratchU32[k]);
    if (n < scratchU32.length) return;
  }
}

/** Value-table entries in use (for tests: nothing may leak). */
export function tableSize(): number {
  return valueTable.length - freeValues.length;
}

/** Moves a run that a take left in the scratch buffer into `into`; returns the take's answer. */
function unpack(code: number, into: unknown[], at: number): number {
  if (code >= Take.Values) {
    const n = code - Take.Values;
    for (let i = 0; i < n; i++) into[at + i] = takeValue(scratchU32[i]);
    return n;
  }
  for (let i = 0; i < code; i++) into[at + i] = scratch[i];
  return code;
}

type PushOneOp = (h: number, x: number, waiting: boolean) => number;
type PushRunOp = (h: number, count: number) => number;

function pushOne(h: number, value: unknown, waiting: boolean, pushNumber: PushOneOp, pushValue: PushOneOp): Push {
  if (typeof value === 'number') return pushNumber(h, value, waiting);
  const i = put(value);
  const code = pushValue(h, i, waiting);
  // Refused, or handed straight to the waiting side: the core kept no reference.
  if (code === Push.Handoff || code === Push.Closed) dropValue(i);
  return code;
}

/** Pushes `values[start..start+n]` (within the lane's room and MAX_BATCH): one native call per run of numbers or of other values. */
function pushRuns(
  h: number,
  values: readonly unknown[],
  start: number,
  n: number,
  pushNumbers: PushRunOp,
  pushValues: PushRunOp,
): void {
  let k = 0;
  while (k < n) {
    let len = 0;
    if (typeof values[start + k] === 'number') {
      for (; k < n && typeof values[start + k] === 'number'; k++) scratch[len++] = values[start + k] as number;
      pushNumbers(h, len);
    } else {
      for (; k < n && typeof values[start + k] !== 'number'; k++) scratchU32[len++] = put(values[start + k]);
      pushValues(h, len);
    }
  }
}

/**
 * Frees what a garbage-collected stream held: its idle watch (a weak one,
 * left while its clock was paused: the core never reports a disarmed
 * deadline, so nothing else would remove it), its native state, and the
 * value-table entries the core dropped with it. A stream retired before it
 * was collected has nothing left to free (`free` answers -1).
 */
const reclaim = new FinalizationRegistry<number | { handle: number; afterFree: () => void }>((held) => {
  const key = ops.free(typeof held === 'number' ? held : held.handle);
  if (key >= 0) unwatchIdle(key);
  reap();
  if (typeof held !== 'number') held.afterFree();
});

// ----- finalizers registered a turn later -----
//
// A registered finalizer is the dearest part of opening a stream: V8 keeps
// the registered object through young-generation collections and clears it
// only in a full mark-compact, so every registered stream adds to the old
// generation and to the marking work (callgrind, `bench/instructions.cjs
// open`: about 7,600 instructions per stream of 24,700). Most streams end
// within the turn that opened them, and a stream that is done (its handler
// returned and every output was read) is freed at once (`retire`): it needs
// no finalizer. So a stream is registered on the turn after its open, only if
// it has not retired by then. Until then it is held here (an abandoned
// stream is collectable a turn later, as with its idle watch).

/** Streams opened since the last turn, registered then unless retired. */
let toRegister: NativeStream[] = [];
const kRegister = Symbol('velo.register');

function registerLater(stream: NativeStream): void {
  // (A run that never yields to the event loop would pile up streams here: past 256, they are looked at now.)
  if (toRegister.length >= 256) registerOpened();
  if (toRegister.push(stream) === 1) onNextTurn(registerOpened);
}

function registerOpened(): void {
  const streams = toRegister;
  toRegister = [];
  for (let i = 0; i < streams.length; i++) streams[i][kRegister]();
  // Emptied, not only dropped (see `onNextTurn`).
  streams.length = 0;
}

/** Where a retired stream's last state is in the scratch buffer (`retire` in crates/velo-node/src/raw.rs). */
const enum Last {
  Key,
  EventsIn,
  EventsOut,
  BackpressureWaits,
  OpenedAt,
  DurationMs,
  QueueWaitP50Us,
  QueueWaitP99Us,
}

/**
 * One stream's native core, seen from JavaScript. Every method is one native
 * call (two for a push that crosses in runs of both kinds), synchronous and
 * allocation-free; none waits. Collected with its owner: the finalizer then
 * frees the native state.
 */
export class NativeStream {
  readonly #h: number;
  #key = -1;
  /**
   * Once retired (done, its native state freed): its final metrics, in
   * `Last` order. Every call then answers as the core would answer for a
   * done stream, with no native call.
   */
  #last: number[] | null = null;
  /** Run once its native state was freed by the finalizer (a task stage's limiter serves its line: `taskInit`). */
  #afterFree: (() => void) | undefined;

  /** Wraps a handle from `NativeFunction.open`. */
  constructor(handle: number) {
    this.#h = handle;
    registerLater(this);
  }

  /** The turn after its open: a finalizer frees its native state, unless it was retired already. */
  [kRegister](): void {
    if (this.#last === null)
      reclaim.register(this, this.#afterFree === undefined ? this.#h : { handle: this.#h, afterFree: this.#afterFree });
  }

  /** The stream is done: its native state is freed now (its final metrics kept here). */
  retire(): void {
    if (this.#last === null && ops.retire(this.#h)) this.#retired();
  }

  #retired(): void {
    // (One literal of the known length: a loop of pushes regrows the array twice.)
    this.#last = [scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7]];
    this.#key = scratch[Last.Key];
  }

  /** The stream's process-unique key (its id, and its idle deadline's key). */
  get key(): number {
    if (this.#key < 0) this.#key = ops.key(this.#h);
    return this.#key;
  }

  /** The lifecycle state, as the core decided it. */
  get state(): StreamState {
    return PHASES[this.#last === null ? ops.phase(this.#h) : PhaseCode.Done];
  }

  /** Open or ending: not done, failed nor cancelled. */
  get live(): boolean {
    return this.#last === null && ops.phase(this.#h) < 2;
  }

  // ----- input: sender -> handler -----

  /** Sends one event. `handlerWaiting`: the handler waits for input right now (the core may hand the event over). */
  send(event: unknown, handlerWaiting: boolean): Push {
    if (this.#last !== null) return Push.Closed;
    return pushOne(this.#h, event, handlerWaiting, ops.sendNumber, ops.sendValue);
  }

  /** Free input room for `sendSlice` (0 when full, closed, or when sends wait: they go first). */
  room(): number {
    return this.#last === null ? ops.room(this.#h) : 0;
  }

  /** Sends `events[start..start+n]`, which must fit in `room()` and `MAX_BATCH`. */
  sendSlice(events: readonly unknown[], start: number, n: number): void {
    pushRuns(this.#h, events, start, n, ops.sendNumbers, ops.sendValues);
  }

  /** Ends the input; true the first time. */
  end(): boolean {
    return this.#last === null && ops.end(this.#h);
  }

  /** Lends the handler the next run of events (at most `max`), written to `into[0..]`: its length, or a `Take`. */
  takeInput(max: number, into: unknown[]): number {
    if (this.#last !== null) return Take.Ended;
    return unpack(ops.takeInput(this.#h, max), into, 0);
  }

  /** The handler took the next `n` events of its lent batch in one run of code, by now, the first `firstAgoUs` µs ago (negative: the run that lent them). */
  inputTaken(n: number, firstAgoUs: number): void {
    if (this.#last === null) ops.inputTaken(this.#h, n, firstAgoUs);
  }

  /** Counts events and outputs handed over in JS, each where a push would have answered `Push.Handoff`; the last input `agoUs` ago. */
  handedOver(inputs: number, outputs: number, agoUs: number): void {
    if (this.#last === null) ops.handedOver(this.#h, inputs, outputs, agoUs);
  }

  /** The reader consumed `n` outputs of the batch it took: how many waiting outputs that admitted (see StreamCore::output_consumed). */
  outputConsumed(n: number): number {
    return this.#last === null ? ops.outputConsumed(this.#h, n) : 0;
  }

  /** Waiting senders (or the paused handler, for outputs) the last take admitted. */
  admitted(): number {
    return this.#last === null ? ops.admitted(this.#h) : 0;
  }

  /** The handler left its input loop: the input is cleared and closed. */
  releaseInput(): void {
    if (this.#last !== null) return;
    ops.releaseInput(this.#h);
    reap();
  }

  /** Holds the idle clock while the stream waits for admission, or lets it run again from now. */
  idleHold(held: boolean): void {
    ops.idleHold(this.#h, held ? 1 : 0);
  }

  /** The idle deadline passed: true if the stream really was idle and its input just ended. */
  idleFire(): boolean {
    return this.#last === null && ops.idleFire(this.#h);
  }

  // ----- output: handler -> reader -----

  /** Yields one output. `readerWaiting`: a one-at-a-time reader waits right now (the core may hand the output over). */
  yieldOutput(output: unknown, readerWaiting: boolean): Push {
    if (this.#last !== null) return Push.Closed;
    return pushOne(this.#h, output, readerWaiting, ops.yieldNumber, ops.yieldValue);
  }

  /** Free output room for `yieldSlice`. */
  outputRoom(): number {
    return this.#last === null ? ops.outputRoom(this.#h) : 0;
  }

  /** Yields `outputs[from..from+n]`, which must fit in the room `outputRoom()` granted (in slices of MAX_BATCH). */
  yieldSlice(outputs: readonly unknown[], from: number, n: number): void {
    const end = from + n;
    for (let start = from; start < end; start += MAX_BATCH) {
      pushRuns(this.#h, outputs, start, Math.min(MAX_BATCH, end - start), ops.yieldNumbers, ops.yieldValues);
    }
  }

  /** Lends a reader the next run of outputs, as `takeInput`, written to `into[at..]`. */
  takeOutput(max: number, into: unknown[], at: number): number {
    if (this.#last !== null) return Take.Ended;
    return unpack(ops.takeOutput(this.#h, max), into, at);
  }

  // ----- endings -----

  /**
   * The handler returned: the stream ends once its outputs are read.
   * `inputHeld`: the input lane may hold events, which this drops (a value
   * table entry is freed only then; nothing else is dropped). `retire`:
   * nothing is left for readers, so the stream may be done now; it is
   * retired then, in the same call. `inputs`, `outputs`: handoffs not
   * reported yet (as `handedOver`). `unread`: outputs of the batch the
   * consumer took that it has not read yet (the stream is not done while
   * there are any; the read of the last one takes again, and finds the end).
   */
  handlerReturned(inputHeld: boolean, retire: boolean, inputs: number, outputs: number, unread: number): void {
    if (this.#last !== null) return;
    if (ops.handlerReturned(this.#h, retire, inputs, outputs, unread)) this.#retired();
    if (inputHeld) reap();
  }

  /** The handler threw: the stream has failed (outputs yielded before stay readable). */
  handlerFailed(): void {
    if (this.#last !== null) return;
    ops.handlerFailed(this.#h);
    reap();
  }

  /** Cancels: everything buffered is dropped. False if the stream had already ended. */
  cancel(): boolean {
    if (this.#last !== null) return false;
    const cancelled = ops.cancel(this.#h) >= 0;
    if (cancelled) reap();
    return cancelled;
  }

  // ----- task stages (see crates/velo-core/src/task.rs) -----

  /**
   * Makes this a task stage's stream, with its window's settings. `afterFree`: what to run once the finalizer freed
   * it (permits its calls held came back with its native state).
   */
  taskInit(policy: TaskPolicy, afterFree?: () => void): void {
    taskInit(this.#h, policy);
    this.#afterFree = afterFree;
  }

  /**
   * Starts up to `max` calls; their slots are `scratchU32[0..n]`, read them before the next native call. `emitted`:
   * ready results emitted or dropped since the last report. With a limiter the window takes permits from
   * (`TaskPolicy.limiter`), each call asks for one (`limiterNow`: ms on its clock; NaN: none asked for) until one is
   * refused: `n` plus `TaskStartCode.NoPermit` per call started without one (the last ones).
   */
  taskStart(max: number, emitted: number, limiterNow: number): number {
    return ops.taskStart(this.#h, max, emitted, limiterNow);
  }

  /**
   * Settles `slots[0..n]` as done: the ready count (`| TaskSettleCode.Failed` when the stage fails now). `emitted` as
   * for `taskStart`. The permits the calls hold come back at `limiterNow` (ms on the limiter's clock).
   */
  taskSettleDone(slots: readonly number[], n: number, emitted: number, limiterNow: number): number {
    for (let i = 0; i < n; i++) scratchU32[i] = slots[i];
    return ops.taskSettleDone(this.#h, n, emitted, limiterNow);
  }

  /**
   * How the attempt in `slot` ended: ready results (`| TaskSettleCode.Failed` when the stage fails now),
   * `TaskSettleCode.Retry` or `TaskSettleCode.Exhausted`. A permit the call holds comes back at `limiterNow`.
   */
  taskSettle(slot: number, how: Attempt, limiterNow: number): number {
    return ops.taskSettle(this.#h, slot, how, limiterNow);
  }

  /** `n` ready results were emitted or dropped. */
  taskEmitted(n: number): void {
    ops.taskEmitted(this.#h, n);
  }

  /** Slots whose retry is due now, each starting its next attempt. */
  taskDue(): number[] {
    const n = ops.taskDue(this.#h);
    return Array.from(scratchU32.subarray(0, n));
  }

  taskDropRetries(): void {
    ops.taskDropRetries(this.#h);
  }

  /** `n` items joined the batch being filled. */
  taskBatchAdd(n: number): void {
    ops.taskBatchAdd(this.#h, n);
  }

  /** Starts the batch being filled if it is due and a call may start: its slot; else -1, or -2 when no call may start. */
  taskStartBatch(): number {
    return ops.taskStartBatch(this.#h);
  }

  taskEndInput(): void {
    ops.taskEndInput(this.#h);
  }

  /** A snapshot of the counters; `inLent`/`outLent`: values lent to JS and not consumed yet (still buffered). */
  metrics(inLent: number, outLent: number): StreamMetrics {
    const last = this.#last;
    if (last === null) return ops.metrics(this.#h, inLent, outLent);
    return {
      eventsIn: last[Last.EventsIn],
      eventsOut: last[Last.EventsOut],
      bufferedIn: 0,
      bufferedOut: 0,
      backpressureWaits: last[Last.BackpressureWaits],
      openedAt: last[Last.OpenedAt],
      durationMs: last[Last.DurationMs],
      queueWaitP50Us: last[Last.QueueWaitP50Us],
      queueWaitP99Us: last[Last.QueueWaitP99Us],
    };
  }
}
