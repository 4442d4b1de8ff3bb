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
  perf,
  scratch,
  scratchU32,
  settleOpened,
  unwatchIdle,
  valueTable,
} from '../addon/addon';
import type { StreamMetrics, StreamState } from '../types';
import { type NativeFunction, addon } from '../addon/addon';

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
// it has not retired by then: its owner, listed once when it opens
// (`listOpened` in addon.ts, with its idle watch), calls `kRegister` then.
// Until then it is held there (an abandoned stream is collectable a turn
// later).

// ----- streams without native state in their first turn -----
//
// Most streams end within the turn that opened them (a request's, a `run()`
// of a few events): their events are handed to a handler that waits, their
// outputs to a reader that waits, and the core would store nothing and decide
// nothing for them. Such a stream gets no native state at all while it lives
// within its first turn: it is admitted against its function's
// `maxConcurrent` here (`FirstTurnGate`), counts its handoffs here, and, done
// in that turn, adds its figures to its function's native totals in one call
// per turn for every such stream (`reportDone`). It is *adopted* by the core
// (one native call: `adoptStream`, with its key, open time, handoff counts
// and input's state) as soon as it needs anything only the core does (a
// buffered event or output, a cancel, a failure, its metrics while it runs,
// an idle hold) and at the latest on the turn after its open, with its
// finalizer registration (`kRegister`); its idle clock starts there, no
// earlier than any send it had, so it never idles out early. Its events all
// went straight to a waiting handler: each waited 0 µs, in its histogram and
// its function's.

/** Per stream function: admission and figures of its streams while they have no native state. */
export class FirstTurnGate {
  readonly native: NativeFunction;
  readonly id: number;
  readonly limit: number;
  /** Streams admitted here and neither adopted nor done. */
  open = 0;
  /**
   * No fewer than the streams open in the native gate: set from its stats, raised by each native open (an adopted
   * stream's too), never lowered otherwise. `open + nativeOpen <= limit` keeps the limit, and an adoption is never
   * refused.
   */
  nativeOpen = 0;
  /** Streams done here since the last report, their events in and outputs (`reportDone`). */
  done = 0;
  doneIn = 0;
  doneOut = 0;
  listed = false;

  constructor(native: NativeFunction, limit: number) {
    this.native = native;
    this.id = native.id;
    this.limit = limit;
  }

  /** Room for one more stream under the limit, counting both kinds (asks the native gate when it may be full). */
  hasRoom(): boolean {
    if (this.open + this.nativeOpen < this.limit) return true;
    this.nativeOpen = this.native.stats().open;
    return this.open + this.nativeOpen < this.limit;
  }
}

/** Gates with streams done since the last report. */
const doneGates: FirstTurnGate[] = [];

function doneLater(gate: FirstTurnGate): void {
  gate.listed = true;
  if (doneGates.push(gate) === 1) onNextTurn(reportDone);
}

/** Adds the figures of the streams done without native state to their functions' totals: one native call. */
export function reportDone(): void {
  let k = 0;
  for (let i = 0; i < doneGates.length; i++) {
    const gate = doneGates[i];
    gate.listed = false;
    scratch[k++] = gate.id;
    scratch[k++] = gate.done;
    scratch[k++] = gate.doneIn;
    scratch[k++] = gate.doneOut;
    gate.done = gate.doneIn = gate.doneOut = 0;
    if (k === scratch.length) {
      ops.reportDone(k / 4);
      k = 0;
    }
  }
  doneGates.length = 0;
  if (k > 0) ops.reportDone(k / 4);
}

/** Every stream still in its first turn gets native state, and those done are reported: before totals are read. */
export function settleFirstTurns(): void {
  settleOpened();
  if (doneGates.length > 0) reportDone();
}

/** Keys reserved for first-turn streams asked for their key (`reserveKeys`): `[next, end)`. */
let nextKey = 0;
let keysEnd = 0;

function reserveKey(): number {
  if (nextKey === keysEnd) {
    nextKey = ops.reserveKeys(1024);
    keysEnd = nextKey + 1024;
  }
  return nextKey++;
}

/** `performance.now()`'s origin, ms since the Unix epoch (read once: it is a getter). */
const TIME_ORIGIN = perf.timeOrigin;

const hrtime = process.hrtime;

function hrMs(): number {
  const t = hrtime();
  return t[0] * 1e3 + t[1] / 1e6;
}

/** Where `performance.now()`'s 0 is on `process.hrtime()`'s clock, in ms: the midpoint of the closest of 16 pairs of reads around one of it. */
const HR_ORIGIN = ((): number => {
  let closest = Infinity;
  let origin = 0;
  for (let i = 0; i < 16; i++) {
    const before = hrMs();
    const now = perf.now();
    const after = hrMs();
    if (after - before < closest) {
      closest = after - before;
      origin = (before + after) / 2 - now;
    }
  }
  return origin;
})();

/**
 * `performance.now()`, within a microsecond, read without its receiver check (about a third of its cost): both
 * read libuv's `uv_hrtime()`. Every clock read of a stream's open time and duration here is this one.
 */
function nowMs(): number {
  return hrMs() - HR_ORIGIN;
}

/** `NativeStream.#last` of a stream done in its first turn (its figures are in its fields). */
const DONE_FIRST_TURN: number[] = [];

/** A first-turn stream's input (`adoptStream`'s last field). */
const enum Input {
  Open = 0,
  Ended = 1,
  Released = 2,
}

/** `NativeStream`'s finalizer registration, on the turn after its open (see `listOpened` in addon.ts). */
export const kRegister = Symbol('velo.register');

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
  /** A task stage's window counters follow (`#last` is longer then). */
  Retries,
  Skipped,
  TaskP50Us,
  TaskP99Us,
}

/**
 * One stream's native core, seen from JavaScript. Every method is one native
 * call (two for a push that crosses in runs of both kinds), synchronous and
 * allocation-free; none waits. Collected with its owner: the finalizer then
 * frees the native state.
 */
export class NativeStream {
  /** The native handle, or -1 while the stream has no native state (its first turn: see `FirstTurnGate`). */
  #h: number;
  #key = -1;
  /** Without native state: its function's gate, its settings, when it opened, what was handed over, its input. */
  #gate: FirstTurnGate | null;
  #buffer = 0;
  #idleMs = 0;
  #openedAt = 0;
  #inputs = 0;
  #outputs = 0;
  #input = Input.Open;
  /** Done in its first turn: its duration (`#last` is then `DONE_FIRST_TURN`, its other figures in these fields). */
  #durationMs = 0;
  /**
   * Once retired (done, its native state freed): its final metrics, in
   * `Last` order. Every call then answers as the core would answer for a
   * done stream, with no native call.
   */
  #last: number[] | null = null;
  /**
   * A task stage's (`taskInit`): what to run once the finalizer freed its native state (its limiter serves its
   * line), or undefined. Null for any other stream.
   */
  #afterFree: (() => void) | undefined | null = null;

  /**
   * Wraps a handle from `NativeFunction.open`; or, with `gate`, a stream admitted there with no native state yet
   * (`handle` -1), of `buffer` places each way and an idle timeout of `idleMs` (0: none).
   */
  constructor(handle: number, gate: FirstTurnGate | null = null, buffer = 0, idleMs = 0) {
    this.#h = handle;
    this.#gate = gate;
    if (gate !== null) {
      this.#buffer = buffer;
      this.#idleMs = idleMs;
      this.#openedAt = nowMs();
    }
  }

  /** The turn after its open (its owner's `turnAfterOpen`): a finalizer frees its native state, unless it was retired already. */
  [kRegister](): void {
    if (this.#last !== null) return;
    reclaim.register(this, this.#afterFree == null ? this.#handle() : { handle: this.#handle(), afterFree: this.#afterFree });
  }

  /** Retired (done, its native state freed), or done in its first turn: it needs no finalizer. */
  get retired(): boolean {
    return this.#last !== null;
  }

  /** Without native state yet (its first turn: see `FirstTurnGate`), and not done. */
  get firstTurn(): boolean {
    return this.#h < 0 && this.#last === null;
  }

  /** The native handle, made now for a stream that has none yet (`adoptStream`). */
  #handle(): number {
    return this.#h >= 0 ? this.#h : this.#adopt();
  }

  #adopt(): number {
    const gate = this.#gate as FirstTurnGate;
    scratch[0] = this.#key > 0 ? this.#key : 0;
    scratch[1] = TIME_ORIGIN + this.#openedAt;
    scratch[2] = (nowMs() - this.#openedAt) * 1000;
    scratch[3] = this.#inputs;
    scratch[4] = this.#outputs;
    scratch[5] = this.#input;
    const h = ops.adoptStream(gate.id, this.#buffer, this.#idleMs);
    // (Admitted within the limit by the gate, whose count of native streams is never below the native gate's.)
    if (h < 0) throw new Error('velo-stream: the native gate refused a stream admitted in its first turn (a bug)');
    gate.open--;
    gate.nativeOpen++;
    this.#h = h;
    this.#gate = null;
    return h;
  }

  /** Done in its first turn (its handler returned, nothing left to read): its figures go to its function's in the turn's report. */
  #doneFirstTurn(inputs: number, outputs: number): void {
    const gate = this.#gate as FirstTurnGate;
    const eventsIn = this.#inputs + inputs;
    const eventsOut = this.#outputs + outputs;
    gate.open--;
    gate.done++;
    gate.doneIn += eventsIn;
    gate.doneOut += eventsOut;
    if (!gate.listed) doneLater(gate);
    this.#gate = null;
    // (Its figures stay in its fields: `metrics` reads them there.)
    this.#inputs = eventsIn;
    this.#outputs = eventsOut;
    this.#durationMs = nowMs() - this.#openedAt;
    this.#last = DONE_FIRST_TURN;
  }

  /** The stream is done: its native state is freed now (its final metrics kept here). */
  retire(): void {
    if (this.#last === null && this.#h >= 0 && ops.retire(this.#h)) this.#retired();
  }

  #retired(): void {
    // (One literal of the known length: a loop of pushes regrows the array twice.)
    this.#last =
      this.#afterFree === null
        ? [scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7]]
        : [
            scratch[0],
            scratch[1],
            scratch[2],
            scratch[3],
            scratch[4],
            scratch[5],
            scratch[6],
            scratch[7],
            scratch[8],
            scratch[9],
            scratch[10],
            scratch[11],
          ];
    this.#key = scratch[Last.Key];
  }

  /** The stream's process-unique key (its id, and its idle deadline's key). */
  get key(): number {
    if (this.#key < 0) this.#key = this.#h >= 0 ? ops.key(this.#h) : reserveKey();
    return this.#key;
  }

  /** The lifecycle state, as the core decided it. */
  get state(): StreamState {
    if (this.#last !== null) return PHASES[PhaseCode.Done];
    if (this.#h < 0) return PHASES[this.#input === Input.Ended ? PhaseCode.Ending : PhaseCode.Open];
    return PHASES[ops.phase(this.#h)];
  }

  /** Open or ending: not done, failed nor cancelled. */
  get live(): boolean {
    return this.#last === null && (this.#h < 0 || ops.phase(this.#h) < 2);
  }

  // ----- input: sender -> handler -----

  /** Sends one event. `handlerWaiting`: the handler waits for input right now (the core may hand the event over). */
  send(event: unknown, handlerWaiting: boolean): Push {
    if (this.#last !== null) return Push.Closed;
    return pushOne(this.#handle(), event, handlerWaiting, ops.sendNumber, ops.sendValue);
  }

  /** Free input room for `sendSlice` (0 when full, closed, or when sends wait: they go first). */
  room(): number {
    return this.#last === null ? ops.room(this.#handle()) : 0;
  }

  /** Sends `events[start..start+n]`, which must fit in `room()` and `MAX_BATCH`. */
  sendSlice(events: readonly unknown[], start: number, n: number): void {
    pushRuns(this.#handle(), events, start, n, ops.sendNumbers, ops.sendValues);
  }

  /** Ends the input; true the first time. */
  end(): boolean {
    if (this.#last !== null) return false;
    if (this.#h >= 0) return ops.end(this.#h);
    // (An input the handler released is closed already: the core's `end` would answer false, the phase unchanged.)
    if (this.#input !== Input.Open) return false;
    this.#input = Input.Ended;
    return true;
  }

  /** Lends the handler the next run of events (at most `max`), written to `into[0..]`: its length, or a `Take`. */
  takeInput(max: number, into: unknown[]): number {
    if (this.#last !== null) return Take.Ended;
    // (With no native state, nothing was ever buffered.)
    if (this.#h < 0) return this.#input === Input.Open ? Take.Empty : Take.Ended;
    return unpack(ops.takeInput(this.#h, max), into, 0);
  }

  /** The handler took the next `n` events of its lent batch in one run of code, by now, the first `firstAgoUs` µs ago (negative: the run that lent them). */
  inputTaken(n: number, firstAgoUs: number): void {
    if (this.#last === null && this.#h >= 0) ops.inputTaken(this.#h, n, firstAgoUs);
  }

  /** Counts events and outputs handed over in JS, each where a push would have answered `Push.Handoff`; the last input `agoUs` ago. */
  handedOver(inputs: number, outputs: number, agoUs: number): void {
    if (this.#last !== null) return;
    if (this.#h >= 0) ops.handedOver(this.#h, inputs, outputs, agoUs);
    else {
      this.#inputs += inputs;
      this.#outputs += outputs;
    }
  }

  /**
   * Counts events and outputs handed over in JS while the stream has no native state (its first turn), to go with
   * its adoption or its done report: true. False once it has native state: the caller reports them (`handedOver`).
   */
  handedInFirstTurn(inputs: number, outputs: number): boolean {
    if (this.#h >= 0 || this.#last !== null) return false;
    this.#inputs += inputs;
    this.#outputs += outputs;
    return true;
  }

  /** The reader consumed `n` outputs of the batch it took: how many waiting outputs that admitted (see StreamCore::output_consumed). */
  outputConsumed(n: number): number {
    return this.#last === null && this.#h >= 0 ? ops.outputConsumed(this.#h, n) : 0;
  }

  /** Waiting senders (or the paused handler, for outputs) the last take admitted. */
  admitted(): number {
    return this.#last === null && this.#h >= 0 ? ops.admitted(this.#h) : 0;
  }

  /** The handler left its input loop: the input is cleared and closed. */
  releaseInput(): void {
    if (this.#last !== null) return;
    if (this.#h < 0) {
      if (this.#input === Input.Open) this.#input = Input.Released;
      return;
    }
    ops.releaseInput(this.#h);
    reap();
  }

  /** Holds the idle clock while the stream waits for admission, or lets it run again from now. */
  idleHold(held: boolean): void {
    ops.idleHold(this.#handle(), held ? 1 : 0);
  }

  /** The idle deadline passed: true if the stream really was idle and its input just ended. */
  idleFire(): boolean {
    // (No deadline is armed before a stream has native state.)
    return this.#last === null && this.#h >= 0 && ops.idleFire(this.#h);
  }

  // ----- output: handler -> reader -----

  /** Yields one output. `readerWaiting`: a one-at-a-time reader waits right now (the core may hand the output over). */
  yieldOutput(output: unknown, readerWaiting: boolean): Push {
    if (this.#last !== null) return Push.Closed;
    return pushOne(this.#handle(), output, readerWaiting, ops.yieldNumber, ops.yieldValue);
  }

  /** Free output room for `yieldSlice`. */
  outputRoom(): number {
    return this.#last === null ? ops.outputRoom(this.#handle()) : 0;
  }

  /** Yields `outputs[from..from+n]`, which must fit in the room `outputRoom()` granted (in slices of MAX_BATCH). */
  yieldSlice(outputs: readonly unknown[], from: number, n: number): void {
    const end = from + n;
    const h = this.#handle();
    for (let start = from; start < end; start += MAX_BATCH) {
      pushRuns(h, outputs, start, Math.min(MAX_BATCH, end - start), ops.yieldNumbers, ops.yieldValues);
    }
  }

  /** Lends a reader the next run of outputs, as `takeInput`, written to `into[at..]`. */
  takeOutput(max: number, into: unknown[], at: number): number {
    if (this.#last !== null) return Take.Ended;
    // (With no native state, no output was ever buffered, and the handler has not returned.)
    if (this.#h < 0) return Take.Empty;
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
    if (this.#h < 0 && retire && unread === 0) {
      this.#doneFirstTurn(inputs, outputs);
      return;
    }
    if (ops.handlerReturned(this.#handle(), retire, inputs, outputs, unread)) this.#retired();
    if (inputHeld) reap();
  }

  /** The handler threw: the stream has failed (outputs yielded before stay readable). */
  handlerFailed(): void {
    if (this.#last !== null) return;
    ops.handlerFailed(this.#handle());
    reap();
  }

  /** Cancels: everything buffered is dropped. False if the stream had already ended. */
  cancel(): boolean {
    if (this.#last !== null) return false;
    const cancelled = ops.cancel(this.#handle()) >= 0;
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
    if (last === null) return ops.metrics(this.#handle(), inLent, outLent);
    if (last === DONE_FIRST_TURN) {
      // Every event was handed straight to the handler: each waited 0 µs.
      return {
        eventsIn: this.#inputs,
        eventsOut: this.#outputs,
        bufferedIn: 0,
        bufferedOut: 0,
        backpressureWaits: 0,
        openedAt: TIME_ORIGIN + this.#openedAt,
        durationMs: this.#durationMs,
        queueWaitP50Us: 0,
        queueWaitP99Us: 0,
      };
    }
    const metrics: StreamMetrics = {
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
    if (last.length > Last.Retries) {
      // A task stage's, retired once its window was idle: nothing is in flight.
      metrics.inFlight = 0;
      metrics.retries = last[Last.Retries];
      metrics.skipped = last[Last.Skipped];
      metrics.taskP50Us = last[Last.TaskP50Us];
      metrics.taskP99Us = last[Last.TaskP99Us];
    }
    return metrics;
  }
}
