// One running stream of a single handler: the JavaScript half of its state.
//
// The core (behind `NativeStream`) holds the events and outputs, and
// decides: a send that finds no room is told `Push.Parked`, a take that
// finds nothing is told `Take.Empty`, and the lifecycle phase is the core's.
// This file owns only what must live in JavaScript: the promises of whoever
// waits (parked senders, the handler waiting for input, readers, the handler
// paused at a yield), the driving of the handler's async iterator, and the
// JavaScript values that explain an ending (the handler's error, the cancel
// reason).
//
// Per event, nothing here allocates beyond the `{ value, done }` result an
// async iterator must return; promises are made only when someone waits.
import { setMaxListeners } from 'node:events';
import { ERROR_CODES, SourceStalledError, StreamClosedError, describe, invalidReturn, invalidType } from '../errors';
import { readString, textOf } from '../text';
import type {
  EntryInfo,
  EventSource,
  JournalCall,
  JournalStreamCall,
  StreamContext,
  StreamHandler,
  StreamMetrics,
  StreamState,
  WakeAtOptions,
} from '../types';
import { type CallSite, runCall, streamCall } from './journal-calls';
import {
  type OpenedTarget,
  holdAlive,
  holdIdle,
  listOpened,
  onNextTurn,
  perf,
  releaseAlive,
  unlistOpened,
  unwatchIdle,
} from '../addon/addon';
import type { AliveGroup } from './alive-group';
import { StreamBase } from './drive';
import { watchAbort } from '../watch-abort';
import { Fifo } from './fifo';
import { Extras, LENT_LATE, LENT_LISTED, NO_EXTRAS, NO_QUEUE, type Reader, type Settle, type SourceStop } from './stream-extras';
import { F, S, type StateView } from './stream-state';
import { SourcePull, kPullDetached, kPullable } from './pull';
import { checkedIterator, checkedResult, closeSource, judgesOwnCut } from './source';
import { type Listing, reportFailure } from './stream-list';
import { MAX_BATCH, type NativeStream, Push, Take, kRegister } from './native-stream';
import {
  doneResult,
  ReadKind,
  type SendControl,
  type SessionHooks,
  kCheckpoint,
  kDrain,
  kFinished,
  kFuse,
  kOwnedReads,
  kInputError,
  kRead,
  kReadNow,
  kReadTo,
  type ReadTarget,
  kSendAll,
  kStalled,
  kFedBy,
  kSendNow,
  kTraceAttributes,
  kSettle,
  kSignal,
  kTaken,
  kTakenEnd,
  kWaitOutput,
  NOT_NOW,
} from './protocol';

/** Streams waiting for a limiter's permit with a read waiting on them (see `#syncAdmissionHold`). */
const readingAdmitted = new Set<HandlerStream<unknown, unknown>>();
/** A stream's `SessionHooks` (module-private: only its `HandlerContext` reads them). */
const kHooks = Symbol('hooks');
/** The latest time a Date holds, ms since the epoch (and minus it the earliest). */
const MAX_DATE_MS = 8.64e15;
/** `ctx.wakeAt` (module-private). */
const kWakeAt = Symbol('wakeAt');
/** `ctx.cancelTimer` (module-private). */
const kCancelTimer = Symbol('cancelTimer');
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
  kJoinAliveGroup,
  kWatchCancel,
  kWatchFinish,
  kNextInput,
  kPollInput,
  kReleaseInput,
  kStartBody,
  kTimersPending,
  kTrace,
} from './body';
import type { StreamTrace } from '../tracing';

/** The handler's error, if it threw (used by pipes). */
export const kFailure = Symbol.for('velo-stream.failure');
/** Once every output is read, reads reject with `error` (a pipe's earlier stage failed). */
export const kFailAtEnd = Symbol.for('velo-stream.failAtEnd');
/** Stands for a batch array not made yet (never written to). */
const NO_BUFFER: unknown[] = Object.freeze([]) as unknown as unknown[];
const RESOLVED: Promise<void> = Promise.resolve();

const ignore = (): void => {};

/**
 * A send refused by a closed stream: rejected, but never an unhandled rejection. An un-awaited send (which the
 * docs allow: sends keep their order) must not end the process; the stream's failure or end reaches its reader.
 */
function refusedSend(error: Error): Promise<void> {
  const refused = Promise.reject(error);
  refused.catch(ignore);
  return refused;
}

/** A send waiting for room: settled by the stream; `sent` is its promise, marked handled if it is refused. */
interface WaitingSend extends Settle<void> {
  sent: Promise<void> | undefined;
}
/** `poll` found nothing yet. */
const NOT_YET = Symbol('velo.notYet');

// ----- handoffs counted later -----
//
// An event sent to a handler that waits for input with nothing ahead of it,
// or an output yielded to a reader that waits with nothing ahead of it, is
// handed over on the spot: the core would store nothing and decide nothing
// (its answer would be `Push.Handoff`). Its only business with the core is
// to be counted, so the stream counts such handoffs itself and reports them
// in one call (`NativeStream.handedOver`) before anything reads the counts
// (its metrics, its function's stats, its ending) and at the latest on the
// next turn of the event loop. A live event then costs no native call, and a
// short stream's handoffs ride on the native call of its handler's return. When
// the stream has an idle clock, the time of its last handed event goes with
// the report (and a report comes first when its idle deadline is looked at),
// so that the clock restarts as a send would have restarted it (see
// `stampLater` for that time).

/** Masks of the state word (inlined, as its bits are). */
const enum Mask {
  /** The flags `#syncKeepAlive` looks at beyond the extras: with none of them set and no extras, it has nothing to do. */
  KEEP_ALIVE = S.IDLE_ON |
    S.IDLE_HELD |
    S.KEEPING_ALIVE |
    S.WAITING_ADMISSION |
    S.ADMITTING |
    S.ADMISSION_HELD |
    S.PULL_HELD |
    S.TIMERS_PENDING |
    S.TIMERS_ANSWER_SENDS,
}

/** Streams with handoffs not reported yet (each listed once, by `#handoffsListed`). */
const unreported: HandlerStream<unknown, unknown>[] = [];
const kReport = Symbol('velo.reportHandoffs');
let reportScheduled = false;

function reportLater(stream: HandlerStream<unknown, unknown>): void {
  // (A run that never yields to the event loop, a loop of awaited `run()`s, would pile up streams here: past 256,
  // they are reported at once.)
  if (unreported.length >= 256) reportHandoffs();
  unreported.push(stream);
  if (reportScheduled) return;
  reportScheduled = true;
  onNextTurn(reportOnTurn);
}

function reportOnTurn(): void {
  reportScheduled = false;
  reportHandoffs();
}

/** Reports every stream's handoffs to the core (before a function's stats or totals are read). */
export function reportHandoffs(): void {
  // (A report is one native call per stream, and never adds to the list.)
  for (let i = 0; i < unreported.length; i++) unreported[i][kReport](true);
  unreported.length = 0;
}

// ----- the time of handed-over events -----
//
// Reading the clock costs more than the rest of a handoff (`performance.now()`
// is about 370 instructions; a live round trip without an idle clock is
// about 7,000), so a handed-over event is not timed on its own. A stream with
// an idle clock that hands events over is stamped once, when the synchronous
// run it is in ends: at the next processing of `process.nextTick` callbacks,
// which comes after the current macrotask's code and every promise job it led
// to (Node drains the microtask queue, then ticks queued meanwhile). So one
// clock read covers every handoff of that run, on every stream. The stamp is
// never earlier than the last handoff it covers, so a stream never idles out
// early; it is later by whatever the run did after that handoff. An idle
// deadline is judged in a callback of its own, after the stamp; a report made
// before it (a metrics read, the stream's end) uses the report's own time,
// which is later than the handoff too.

/** Streams with handoffs not timed yet (see `#stampDue`). */
const toStamp: HandlerStream<unknown, unknown>[] = [];
const kStamp = Symbol('velo.stamp');
let stampScheduled = false;

function stampLater(stream: HandlerStream<unknown, unknown>): void {
  // A run with handoffs on many streams stamps them in groups of 256 (now is no earlier than their handoffs).
  if (toStamp.length >= 256) stampNow();
  toStamp.push(stream);
  if (stampScheduled) return;
  stampScheduled = true;
  process.nextTick(stampHandoffs);
}

function stampHandoffs(): void {
  stampScheduled = false;
  stampNow();
}

function stampNow(): void {
  const now = perf.now();
  for (let i = 0; i < toStamp.length; i++) toStamp[i][kStamp](now);
  toStamp.length = 0;
}

// ----- when the handler takes the events of a lent batch -----
//
// A take lends the handler's side a batch of events, and an event's queue
// wait ends when the handler takes it (crates/velo-core/src/lent_waits.rs).
// Each take is not timed (a clock read per event would cost more than the
// rest of it). What the handler takes in one run of code is told in one
// native call, by a time no earlier than the last of those takes: when the
// run ends (at the next processing of `process.nextTick` callbacks, as in
// `stampLater`), or at the handler's next take, end or a metrics read if
// that comes first. The core spreads a run's takes evenly from its first take
// to that time: the first take of the run that lent the batch is the
// lending; that of a later run is timed here, one clock read per run. A fast
// handler, which takes its whole batch in the run that lent it and comes back
// for more in that run, costs one listing per batch and no native call: its
// next take tells the core.

/** Streams whose taking of a lent batch is told when this run ends. */
const lentToTell: HandlerStream<unknown, unknown>[] = [];
const kTellLent = Symbol('velo.tellLent');
let lentScheduled = false;

function tellLater(stream: HandlerStream<unknown, unknown>): void {
  // (A run that only awaits promises never reaches the ticks' processing: past 256 streams, they are told at once,
  // a time no earlier than their takes.)
  if (lentToTell.length >= 256) tellNow();
  lentToTell.push(stream);
  if (lentScheduled) return;
  lentScheduled = true;
  process.nextTick(tellLent);
}

function tellLent(): void {
  lentScheduled = false;
  tellNow();
}

function tellNow(): void {
  for (let i = 0; i < lentToTell.length; i++) lentToTell[i][kTellLent]();
  lentToTell.length = 0;
}

// ----- holds let go a turn later -----
//
// A stream whose idle deadline runs is held (the deadline will end it), and a
// read waiting on it keeps the process alive (the deadline will settle it).
// In a live stream both change on every event: a read waits, then is served;
// a send into a full buffer waits (pausing the clock), then is admitted. So a
// hold is taken at once, but given back only if it is still not wanted on the
// next turn of the event loop: a live stream keeps its holds while it runs,
// instead of paying for two updates of the thread's maps and counters (and a
// `WeakRef`) per event, and an abandoned stream is collectable a turn later.

/** Streams to look at on the next turn (each listed once, by `#recheckListed`). */
let toRecheck: HandlerStream<unknown, unknown>[] = [];
const kRecheck = Symbol('velo.recheckHolds');

/**
 * A run that never yields to the event loop (a loop of sends and reads that
 * all settle in promise jobs) must not pile up streams here: past this many,
 * the list is looked at at once (amortized, one look per stream listed).
 */
const RECHECK_AT_MOST = 256;

function recheckLater(stream: HandlerStream<unknown, unknown>): void {
  if (toRecheck.length >= RECHECK_AT_MOST) recheckOnTurn();
  toRecheck.push(stream);
  if (recheckScheduled) return;
  recheckScheduled = true;
  onNextTurn(recheckTurn);
}

/** `recheckOnTurn` is asked for on the next turn (the list may empty and fill again meanwhile: `#afterHandler`). */
let recheckScheduled = false;

function recheckTurn(): void {
  recheckScheduled = false;
  recheckOnTurn();
}

function recheckOnTurn(): void {
  const streams = toRecheck;
  toRecheck = [];
  for (let i = 0; i < streams.length; i++) streams[i][kRecheck]();
  // Emptied, not only dropped: a list may outlive this call (see `onNextTurn`).
  streams.length = 0;
}

/** Streams whose batch readers are served on the next turn of the event loop (one immediate for all of them). */
let toWake: HandlerStream<unknown, unknown>[] = [];
const kWake = Symbol('velo.wake');
const kWakeNeeded = Symbol('velo.wakeNeeded');

/**
 * Past this many streams listed, those whose wake would serve no one (their handler done, no reader or settle
 * waiter left) are taken off: a run that never yields to the event loop (a loop of awaited `run()`s) lists a
 * stream per run. Doubled while most listed still wait, so that each listing costs one look at most, amortized.
 */
let wakeSweepAt = 256;

function wakeLater(stream: HandlerStream<unknown, unknown>): void {
  if (toWake.length >= wakeSweepAt) {
    let kept = 0;
    for (let i = 0; i < toWake.length; i++) if (toWake[i][kWakeNeeded]()) toWake[kept++] = toWake[i];
    toWake.length = kept;
    wakeSweepAt = Math.max(256, 2 * kept);
  }
  toWake.push(stream);
  if (wakeScheduled) return;
  wakeScheduled = true;
  onNextTurn(wakeOnTurn);
}

let wakeScheduled = false;

function wakeOnTurn(): void {
  wakeScheduled = false;
  const streams = toWake;
  toWake = [];
  for (let i = 0; i < streams.length; i++) streams[i][kWake]();
  // Emptied, not only dropped (see `onNextTurn`).
  streams.length = 0;
}

/** The async iterable a handler reads its events from. */
class HandlerInput<I> implements AsyncIterableIterator<I> {
  readonly #stream: HandlerStream<I, unknown>;
  constructor(stream: HandlerStream<I, unknown>) {
    this.#stream = stream;
  }
  next(): Promise<IteratorResult<I>> {
    return this.#stream[kNextInput]();
  }
  /** The handler left its `for await` early: it will read no more events. */
  return(): Promise<IteratorResult<I>> {
    this.#stream[kReleaseInput]();
    return Promise.resolve(doneResult());
  }
  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Whether a handler stream's `ctx.signal` is aborted, made or not (`CallSignal.aborted`). */
const kHandlerAborted = Symbol('velo.handlerAborted');

/**
 * A context's `CallSite`: its stream's id and signal at each call, and whether that signal is aborted, told without
 * making it (a class: one shape, fast getters).
 */
class ContextSite implements CallSite {
  readonly #stream: HandlerStream<unknown, unknown>;
  readonly nextCall: () => number;
  constructor(stream: HandlerStream<unknown, unknown>, nextCall: () => number) {
    this.#stream = stream;
    this.nextCall = nextCall;
  }
  get id(): string {
    return this.#stream.id;
  }
  get signal(): AbortSignal {
    return this.#stream[kHandlerSignal];
  }
  get aborted(): boolean {
    return this.#stream[kHandlerAborted];
  }
}

class HandlerContext implements StreamContext {
  readonly #stream: HandlerStream<unknown, unknown>;
  /** In-process journaled calls made (their keys' places). */
  #calls = 0;
  constructor(stream: HandlerStream<unknown, unknown>) {
    this.#stream = stream;
  }
  get id(): string {
    return this.#stream.id;
  }
  get signal(): AbortSignal {
    return this.#stream[kHandlerSignal];
  }
  get restored(): unknown {
    return this.#stream[kHooks]?.restored;
  }
  checkpoint(state: unknown): void {
    this.#stream[kCheckpoint](state);
  }
  get entry(): EntryInfo | undefined {
    return this.#stream[kHooks]?.entry;
  }
  wakeAt(time: number, payload: unknown, options?: WakeAtOptions): void {
    // Within a Date's range (±8.64e15 ms): a time past it is no time (its wake-up's entry id, `new Date(time)`,
    // and the log's clock cannot hold it). Here, so that the worker, the simulator and in-process timers refuse alike.
    if (typeof time !== 'number' || !(Math.abs(time) <= MAX_DATE_MS)) {
      throw invalidType(
        `ctx.wakeAt(): the "time" argument must be a finite number of ms since the Unix epoch, within a Date's range ` +
          `(-8.64e15 to 8.64e15). Received ${describe(time)}`,
      );
    }
    let key: unknown;
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') {
        throw invalidType(`ctx.wakeAt(): the "options" argument must be an object ({ key }). Received ${describe(options)}`);
      }
      try {
        key = options.key;
      } catch (error) {
        // A revoked Proxy, or a getter that throws: coded, the read's own error as the cause.
        throw invalidType(
          `ctx.wakeAt(): the "options" argument cannot be read (a revoked Proxy, or a getter that throws: ${textOf(readString(() => (error as Error).message) ?? error)})`,
          error,
        );
      }
      if (key !== undefined && typeof key !== 'string') {
        throw invalidType(`ctx.wakeAt(): the "options.key" argument must be a string. Received ${describe(key)}`);
      }
    }
    this.#stream[kWakeAt](time, payload, key as string | undefined);
  }
  cancelTimer(key: string): boolean {
    if (typeof key !== 'string') {
      throw invalidType(`ctx.cancelTimer(): the "key" argument must be a string. Received ${describe(key)}`);
    }
    return this.#stream[kCancelTimer](key);
  }
  /** What its journaled calls need of it: made at its first call, then the same (a call per event makes none). */
  #site: ContextSite | null = null;
  #callSite(): CallSite {
    return (this.#site ??= new ContextSite(this.#stream, () => ++this.#calls));
  }
  run<T>(name: string, body: (call: JournalCall) => T | PromiseLike<T>): Promise<T> {
    return runCall(this.#stream[kHooks], this.#callSite(), name, body) as Promise<T>;
  }
  stream<C>(name: string, factory: (call: JournalStreamCall<C>) => AsyncIterable<C> | Iterable<C>): AsyncIterable<C> {
    return streamCall(
      this.#stream[kHooks],
      this.#callSite(),
      name,
      factory as (call: JournalStreamCall) => AsyncIterable<unknown>,
    ) as AsyncIterable<C>;
  }
}

/** See `HandlerStream[kHoldIdle]`. */
export const kHoldIdle = Symbol('velo-stream.holdIdle');
/** See `HandlerStream[kBegin]`. */
export const kBegin = Symbol('velo-stream.begin');

/** `stateOf`'s reader, set by `HandlerStream`'s static block (the only code that sees its private fields). */
let readState: (stream: object) => StateView | undefined;

/**
 * A stream's state word and the facts the table speaks of (see stream-state.ts), or undefined for anything but a
 * `HandlerStream`. For tests only, through the package's private `#testing` entry: not on the stream, so that the
 * public API shows none of it.
 */
export function stateOf(stream: object): StateView | undefined {
  return readState(stream);
}

export class HandlerStream<I, O> extends StreamBase<I, O> implements OpenedTarget {
  static {
    readState = (stream) => {
      if (!(#state in stream)) return undefined;
      const phase = stream.#native.state;
      const facts =
        (stream.#cancel !== undefined ? F.CANCELLED : 0) |
        (stream.#failure !== undefined ? F.FAILED : 0) |
        (stream.#x.group !== null ? F.IN_GROUP : 0) |
        (stream.#x.pull !== null ? F.PULLED : 0) |
        (stream.#resolveInput !== null ? F.INPUT_WAITS : 0) |
        (stream.#resumeHandler !== null ? F.HANDLER_PAUSED : 0) |
        (stream.#reader !== null ? F.READER : 0) |
        (stream.#senders.length > 0 ? F.SENDERS : 0) |
        (stream.#staged > stream.#stageHead ? F.STAGED : 0) |
        (phase === 'open'
          ? F.PHASE_OPEN
          : phase === 'ending'
            ? F.PHASE_ENDING
            : phase === 'done'
              ? F.PHASE_DONE
              : phase === 'failed'
                ? F.PHASE_FAILED
                : F.PHASE_CANCELLED);
      return { word: stream.#state, facts };
    };
  }

  readonly #native: NativeStream;
  /** Its function's name and list (a failure is reported there). */
  readonly #listing: Listing;
  readonly #capacity: number;
  readonly #signal: AbortSignal | undefined;
  /** Removes the open signal's listener. */
  #detachSignal: (() => void) | undefined;
  /**
   * The stream's flags, as bits of `S` (stream-state.ts, where `STATE_TABLE` says which combinations are legal).
   * `IN_PENDING` (and `OUT_PENDING`, for outputs and their readers): the core may hold something for the handler
   * (events queued or waiting, a lent batch to acknowledge, the end of input to report); while clear, a take
   * would find nothing, so the handler waits without asking the core. `INPUT_OPEN`, with `#cancel`,
   * `HANDLER_DONE` and `INPUT_RELEASED`, tells whether the core's phase is still open without asking it: only
   * this stream's own calls change that phase.
   */
  #state: number = S.INPUT_OPEN;

  // Input side: parked senders, and the batch lent to the handler.
  /** Senders waiting for room (a shared empty queue until the first one). */
  #senders: Fifo<WaitingSend> = NO_QUEUE;
  /** The batch lent to the handler (made on first use). */
  #inBuf: unknown[] = NO_BUFFER;
  #inPos = 0;
  #inLen = 0;
  /**
   * Events handed to the handler (or body) so far, a lent batch counted
   * whole: what it has taken is this less what is left of the batch (see
   * `kTaken`). When the batch is dropped (the handler left its loop or
   * finished, a cancel), what was left of it comes off.
   */
  #handed = 0;
  /** Resolves the handler's pending `next()`, while it waits for input. */
  #resolveInput: ((r: IteratorResult<I>) => void) | null = null;
  /** That pending `next()`. */
  #inputPromise: Promise<IteratorResult<I>> | null = null;

  // Output side: readers, the batch lent to them, and the paused handler.
  /** The batch lent to readers (made on first use). */
  #outBuf: unknown[] = NO_BUFFER;
  #outPos = 0;
  #outLen = 0;
  /** Outputs of the taken batch the core was told are read (`#consumed`). */
  #outReported = 0;
  /** The first read waiting for an output (the others, rarely any, wait in `#moreReaders`). */
  #reader: Reader | null = null;
  /** Resumes the handler paused at a yield the core parked, or parked between reads (fused). */
  #resumeHandler: (() => void) | null = null;
  /** The handler's iterator (a generator handler's; see `#step`). */
  #it: AsyncIterator<unknown> | null = null;
  /** The reactions to a step of the handler (`#step`): made when the handler starts. */
  #onStep: ((r: IteratorResult<unknown>) => void) | null = null;
  #onStepFailed: ((error: unknown) => void) | null = null;
  /**
   * Outputs yielded but not yet handed to the core, within `#credit`: room
   * the core granted, so they are within the bound. Committed in one call
   * before anyone reads, so a batch reader costs no native call per output;
   * a read of one output now (`kReadNow`) with nothing ahead of them in the
   * core takes them from here, as handoffs (see `#takeStaged`).
   */
  #stage: unknown[] = NO_BUFFER;
  /**
   * `#stage[#stageHead..#staged]` are staged. The array keeps its length between
   * batches while it held only numbers (refilled in place, not regrown);
   * one that held other values is emptied, so it holds none of them.
   */
  #staged = 0;
  #stageHead = 0;
  /**
   * Room for outputs granted and not used yet: the core's `outputRoom()`, or, while nothing has ever gone into
   * the core's output lane (`#outLaneUsed`), the whole buffer without asking (the lane is empty, nothing lent).
   * Credit is never given back: outputs taken from the stage do not free any, so the stage and the core's lane
   * together never hold more than the bound.
   */
  #credit = 0;

  // Handoffs not yet counted by the core (see `reportHandoffs`).
  #inHanded = 0;
  #outHanded = 0;
  /** `performance.now()` when the run of the last event handed over ended (see `stampLater`), if the idle clock runs. */
  #lastHandedAt = 0;

  // Endings. The phase is the core's (`#native.state`); these hold what
  // only JavaScript can: the error, the cancel reason, the handler's promise.
  /** The handler's error (or, for a pipe's last stage, the pipe's). */
  #failure: { error: unknown } | undefined;
  /** Set by the cancel the core accepted, with its reason. */
  #cancel: { reason: unknown } | undefined;
  /** Writers waiting in `kSettle` for the running handler to stop. */
  #settleWaiters: (() => void)[] | null = null;

  /** The rarely used part of the state (see `Extras`): `NO_EXTRAS` until its first write (`#more`). */
  #x: Readonly<Extras<I, O>> = NO_EXTRAS as Readonly<Extras<I, O>>;

  /** Sets or clears `bit` of the state word; returns `on`. */
  #flag(bit: S, on: boolean): boolean {
    this.#state = on ? this.#state | bit : this.#state & ~bit;
    return on;
  }

  /** The rarely used part of the state, to write to (made now if it was not). */
  #more(): Extras<I, O> {
    const x = this.#x;
    return x === NO_EXTRAS ? (this.#x = new Extras<I, O>()) : x;
  }

  /** The stream's state; `kBegin` starts it (kept apart, so that opening a stream may inline this and allocate the stream in place). */
  constructor(native: NativeStream, listing: Listing, capacity: number, idle: boolean, signal: AbortSignal | undefined) {
    super();
    this.#native = native;
    this.#listing = listing;
    this.#capacity = capacity;
    // (Initialized where declared, so that V8 sees a small integer from the start: a field first set to
    // undefined is stored tagged, and every bit test then checks its type.)
    if (idle) this.#state |= S.IDLE_ON | S.IDLE_HELD;
    // A stream with no native state yet needs no stamp: its idle clock starts when it gets native state, no
    // earlier than its handoffs, and its first report (from then on, handoffs are stamped) says now.
    if (idle && !native.firstTurn) this.#state |= S.STAMP_DUE;
    this.#signal = signal;
    listOpened(this);
  }

  /** Starts the handler (or body) of the stream just made, and watches its signal. */
  [kBegin](handler: StreamHandler<I, O> | StreamBody<I, O>, hooks?: SessionHooks, trace?: StreamTrace): void {
    // (The hooks, a trace and a body, which most streams have none of, are set up by a method of their own.)
    if (hooks !== undefined || trace !== undefined || typeof handler !== 'function') this.#startOther(handler, hooks, trace);
    else this.#startHandler(handler);
    // (A handler that threw at once has finished: nothing left to cancel.)
    const signal = this.#signal;
    if (signal !== undefined && (this.#state & S.HANDLER_DONE) === 0)
      this.#detachSignal = watchAbort(signal, (reason) => void this.cancel(reason));
  }

  /** The constructor's part for a stream with session hooks, a trace, or a body (a task stage's) instead of a handler. */
  #startOther(
    handler: StreamHandler<I, O> | StreamBody<I, O>,
    hooks: SessionHooks | undefined,
    trace: StreamTrace | undefined,
  ): void {
    const x = this.#more();
    x.hooks = hooks;
    hooks?.attach?.(() => x.yielded);
    this.#more().trace = trace;
    trace?.watch(this);
    if (typeof handler !== 'function') {
      this.#more().body = handler;
      if (trace === undefined) handler[kStartBody](this);
      else trace.run(() => handler[kStartBody](this));
      return;
    }
    if (trace === undefined) this.#startHandler(handler);
    else trace.run(() => this.#startHandler(handler));
  }

  /** Calls the handler and starts taking its outputs (in its trace's context, if traced: see tracing.ts). */
  #startHandler(handler: StreamHandler<I, O>): void {
    const label = this.#listing.name;
    let iterator: AsyncIterator<O> | undefined;
    try {
      const iterable: unknown = handler(new HandlerInput(this), new HandlerContext(this as HandlerStream<unknown, unknown>));
      if (iterable !== null && typeof (iterable as AsyncIterable<O>)?.[Symbol.asyncIterator] === 'function') {
        iterator = (iterable as AsyncIterable<O>)[Symbol.asyncIterator]();
      } else {
        // An `async function` (not `async function*`) returns a promise: its
        // own rejection would go unhandled and crash the process, on top of
        // this error. This error is the one to report.
        if (typeof (iterable as PromiseLike<unknown> | null)?.then === 'function') {
          Promise.resolve(iterable).catch(() => {});
        }
        throw invalidReturn(
          `The handler of "${label}" must return an async iterable (write it as an async function*). Received ${describe(iterable)}`,
        );
      }
    } catch (error) {
      this.#handlerThrew(error);
    }
    if (iterator !== undefined) {
      this.#it = iterator;
      this.#onStep = (r) => this.#stepped(r);
      this.#onStepFailed = (error) => this.#handlerThrew(error);
      this.#step();
    }
  }

  [kTraceAttributes](attributes: Record<string, string>): void {
    this.#x.trace?.span.setAttributes(attributes);
  }

  /** The stream's trace, if the application traces (a body runs its calls in its context). */
  get [kTrace](): StreamTrace | undefined {
    return this.#x.trace;
  }

  get id(): string {
    return (this.#more().id ??= `s${this.#native.key}`);
  }

  get state(): StreamState {
    return this.#native.state;
  }

  get metrics(): StreamMetrics {
    this[kReport](false);
    this.#commitStage();
    return this.#native.metrics(this.#inLen - this.#inPos, this.#outLen - this.#outPos);
  }

  get [kSignal](): AbortSignal | undefined {
    return this.#signal;
  }

  /** The handler's `ctx.signal`, made on first use (most handlers never look). */
  get [kHandlerSignal](): AbortSignal {
    let abort = this.#x.abort;
    if (abort === undefined) {
      abort = this.#more().abort = new AbortController();
      const body = this.#x.body;
      if (body !== null) setMaxListeners(body.signalListeners, abort.signal);
      if (this.#cancel !== undefined) abort.abort(this.#cancel.reason);
      else if (this.#x.bodyAbort !== undefined) abort.abort(this.#x.bodyAbort.reason);
    }
    return abort.signal;
  }

  /** Whether `[kHandlerSignal]` is aborted, or would be made aborted: the handler was cancelled, or its body aborted. */
  get [kHandlerAborted](): boolean {
    return this.#cancel !== undefined || this.#x.bodyAbort !== undefined;
  }

  get [kHooks](): SessionHooks | undefined {
    return this.#x.hooks;
  }

  /**
   * `ctx.wakeAt(time, payload, { key })`: the hooks' (durable), or an in-process timer that sends `payload` into
   * this stream at `time`, dropped if the input has ended by then; one of the same key replaces it.
   */
  [kWakeAt](time: number, payload: unknown, key: string | undefined): void {
    if (this.#x.hooks !== undefined) {
      this.#x.hooks.wakeAt(time, payload, key);
      return;
    }
    if ((this.#state & S.HANDLER_DONE) !== 0) return;
    if (this.#x.wakeTimers === null) {
      const timers = (this.#more().wakeTimers = new Set());
      void this[kFinished].then(() => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        this.#x.keyedTimers?.clear();
      });
    }
    const timers = this.#x.wakeTimers as Set<NodeJS.Timeout>;
    const timer = setTimeout(
      () => {
        timers.delete(timer);
        if (key !== undefined && this.#x.keyedTimers?.get(key) === timer) this.#x.keyedTimers.delete(key);
        this.send(payload as I).catch(() => {});
      },
      Math.min(2_147_483_647, Math.max(0, time - Date.now())),
    );
    timers.add(timer);
    if (key !== undefined) {
      this[kCancelTimer](key);
      (this.#more().keyedTimers ??= new Map()).set(key, timer);
    }
  }

  /** `ctx.cancelTimer(key)`: the hooks', or the in-process timer of that key. */
  [kCancelTimer](key: string): boolean {
    if (this.#x.hooks !== undefined) return this.#x.hooks.cancelTimer(key);
    const timer = this.#x.keyedTimers?.get(key);
    if (timer === undefined) return false;
    clearTimeout(timer);
    this.#x.wakeTimers?.delete(timer);
    this.#x.keyedTimers?.delete(key);
    return true;
  }

  /** `ctx.checkpoint(state)`: every output yielded before it has reached `#emit`, every event taken is counted. */
  [kCheckpoint](state: unknown): void {
    this.#x.hooks?.checkpoint(state, this[kTaken](), this.#x.yielded);
  }

  get [kFinished](): Promise<void> {
    let finished = this.#x.finished;
    if (finished === null) {
      finished = this.#more().finished =
        (this.#state & S.HANDLER_DONE) !== 0 ? RESOLVED : new Promise((resolve) => (this.#more().resolveFinished = resolve));
    }
    return finished;
  }

  get [kFailure](): { error: unknown } | undefined {
    return this.#failure;
  }

  /** Reports the handoffs counted so far; `unlisted`: the stream was just taken off `unreported`. */
  [kReport](unlisted: boolean): void {
    const agoUs = this.#handoffsDue(unlisted);
    if (agoUs < 0) return;
    this.#native.handedOver(this.#inHanded, this.#outHanded, agoUs);
    this.#inHanded = this.#outHanded = 0;
  }

  /**
   * Readies the report of the handoffs counted so far (the caller makes it
   * and zeroes the counts): how long ago the last event was handed over, in
   * µs, or -1 when there is nothing to report.
   */
  #handoffsDue(unlisted: boolean): number {
    // (Before an ending gives the lent batch back, and before totals are read.)
    this.#tellTaken();
    if (unlisted) this.#state &= ~S.HANDOFFS_LISTED;
    else if ((this.#state & S.HANDOFFS_LISTED) !== 0 && unreported[unreported.length - 1] === this) {
      // Most often the stream reporting (at its end) is the last listed:
      // unlisted now, it is not held until the list's next report.
      unreported.pop();
      this.#state &= ~S.HANDOFFS_LISTED;
    }
    if (this.#inHanded === 0 && this.#outHanded === 0) return -1;
    // Not stamped yet (no stamp due): the handoff was in this run, and now is no earlier (0 ago).
    const agoUs =
      (this.#state & S.IDLE_ON) !== 0 && this.#inHanded > 0 && (this.#state & S.STAMP_DUE) !== 0
        ? (perf.now() - this.#lastHandedAt) * 1000
        : 0;
    if ((this.#state & S.STAMP_DUE) === 0 && (this.#state & S.IDLE_ON) !== 0 && toStamp[toStamp.length - 1] === this)
      toStamp.pop();
    if ((this.#state & S.IDLE_ON) !== 0) this.#state |= S.STAMP_DUE;
    else this.#state &= ~S.STAMP_DUE;
    return agoUs;
  }

  /** The run of this stream's last handoff has ended (see `stampLater`). */
  [kStamp](now: number): void {
    // (Nothing pending: the idle clock stopped, or a report has counted the handoffs since.)
    if ((this.#state & S.IDLE_ON) === 0 || (this.#state & S.STAMP_DUE) !== 0) return;
    this.#state |= S.STAMP_DUE;
    this.#lastHandedAt = now;
  }

  /** The run of code that listed this stream in `lentToTell` has ended: what the handler took in it is told. */
  [kTellLent](): void {
    this.#tellTaken();
    const flags = this.#x.lentFlags;
    // The run that lent the batch ended with some of it left: the handler takes the rest in later runs.
    this.#more().lentFlags = flags >= LENT_LATE || this.#inPos < this.#inLen ? LENT_LATE : 0;
  }

  /**
   * Tells the core what the handler took of the lent batch since it was last told, all in this run of code: from
   * the lending (the run that lent it), or from the first take timed in this run (a later run), up to now.
   */
  #tellTaken(): void {
    const n = this.#inPos - this.#x.inTold;
    if (n <= 0) return;
    this.#more().inTold = this.#inPos;
    this.#native.inputTaken(n, this.#x.lentFlags >= LENT_LATE ? (perf.now() - this.#x.lateFrom) * 1000 : -1);
  }

  /** The first take from the lent batch in a run after the one that lent it: timed, and told when this run ends. */
  #lateTake(): void {
    this.#more().lentFlags = LENT_LATE | LENT_LISTED;
    this.#more().lateFrom = perf.now();
    tellLater(this as HandlerStream<unknown, unknown>);
  }

  /** The core lent a batch of `n` events (its first taken now). */
  #lent(n: number): void {
    this.#more().inTold = 1;
    if (n <= 1) {
      if (this.#x.lentFlags !== 0) this.#more().lentFlags &= LENT_LISTED;
      return;
    }
    if ((this.#x.lentFlags & LENT_LISTED) === 0) tellLater(this as HandlerStream<unknown, unknown>);
    this.#more().lentFlags = LENT_LISTED;
  }

  #countLater(): void {
    if ((this.#state & S.HANDOFFS_LISTED) !== 0) return;
    this.#state |= S.HANDOFFS_LISTED;
    reportLater(this as HandlerStream<unknown, unknown>);
  }

  // ----- input -----

  send(event: I): Promise<void> {
    if (this.#resolveInput !== null && (this.#state & S.IN_PENDING) === 0) {
      // The handler waits and nothing is ahead of this event: it gets it
      // directly, counted later (see `reportHandoffs`).
      this.#inputHandedOver();
      return this.#handToHandler(event);
    }
    const pushed = this.#native.send(event, this.#resolveInput !== null);
    if (pushed !== Push.Closed) this.#sentToCore();
    if (pushed === Push.Handoff) {
      // The handler was waiting for input: it gets the event directly.
      return this.#handToHandler(event);
    }
    if (pushed === Push.Accepted) {
      this.#state |= S.IN_PENDING;
      this.#wakeInput();
      return RESOLVED;
    }
    if (pushed === Push.Parked) {
      this.#state |= S.IN_PENDING;
      return this.#waitAsSender();
    }
    // Refused because the handler left its input loop but still runs: it is
    // answered when the handler finishes (see `kReleaseInput`).
    if ((this.#state & S.INPUT_RELEASED) !== 0 && (this.#state & S.HANDLER_DONE) === 0 && this.#cancel === undefined)
      return this.#waitAsSender();
    return refusedSend(this.#closedError());
  }

  /** An event went to the handler with no native call: counted later, its time stamped for the idle clock (see `reportHandoffs`). */
  #inputHandedOver(): void {
    // (Without native state yet, it is counted there: nothing to report, and no idle clock runs until then.)
    if (this.#native.handedInFirstTurn(1, 0)) return;
    if ((this.#state & S.STAMP_DUE) !== 0) {
      this.#state &= ~S.STAMP_DUE;
      stampLater(this as HandlerStream<unknown, unknown>);
    }
    this.#inHanded++;
    this.#countLater();
  }

  /**
   * A send reached the core, which restarted the idle clock at its time. A
   * stamp still due for this run's handoffs (`stampLater`) would come later
   * than this send, and restart the clock later than the last send: it is
   * dropped, as the send's time is no earlier than those handoffs'. (Their
   * report then moves the clock nowhere.)
   */
  #sentToCore(): void {
    if ((this.#state & S.IDLE_ON) !== 0 && (this.#state & S.STAMP_DUE) === 0) this.#state |= S.STAMP_DUE;
  }

  /** Resolves the handler's pending `next()` with `event`. */
  #handToHandler(event: I): Promise<void> {
    const resolve = this.#resolveInput as (r: IteratorResult<I>) => void;
    this.#resolveInput = this.#inputPromise = null;
    this.#handed++;
    resolve({ value: event, done: false });
    return RESOLVED;
  }

  #waitAsSender(): Promise<void> {
    if (this.#senders === NO_QUEUE) this.#senders = new Fifo();
    const waiting: WaitingSend = { resolve: ignore, reject: ignore, sent: undefined };
    const sent = new Promise<void>((resolve, reject) => {
      waiting.resolve = resolve;
      waiting.reject = reject;
    });
    waiting.sent = sent;
    this.#senders.push(waiting);
    this.#syncKeepAlive();
    return sent;
  }

  end(): void {
    // (Ended already: the core would answer false.)
    if ((this.#state & S.INPUT_OPEN) !== 0 && this.#native.end()) this.#inputEnded();
  }

  /** The core just ended the input (by `end()` or the idle deadline): the handler sees the end after what is buffered. */
  #inputEnded(): void {
    this.#state &= ~S.INPUT_OPEN;
    // Nothing was held for the handler: the core's input is now closed and empty for good.
    if ((this.#state & S.IN_PENDING) === 0) this.#state |= S.IN_ENDED;
    this.#state |= S.IN_PENDING;
    this.#idleOff();
    this.#wakeInput();
  }

  [kInputError](): Error | undefined {
    if (
      (this.#state & S.HANDLER_DONE) !== 0 ||
      (this.#state & S.INPUT_RELEASED) !== 0 ||
      (this.#state & S.INPUT_OPEN) === 0 ||
      this.#cancel !== undefined
    )
      return this.#closedError();
    return undefined;
  }

  [kSendAll](source: EventSource<I>, end: boolean, control?: SendControl): Promise<boolean> {
    try {
      if (Array.isArray(source)) return this.#endAfter(this.#sendArray(source), end);
      if (typeof (source as AsyncIterable<I>)[Symbol.asyncIterator] === 'function') {
        // A pulled source ends the input itself at its end (`SourcePull`): its promise is the answer, with no
        // async frame around it (a request's body, once per request).
        if (this.#pullable(end)) return this.#pullFrom(source as AsyncIterable<I>, control);
        return this.#endAfter(this.#sendAsync(source as AsyncIterable<I>, control), end);
      }
      return this.#endAfter(this.#sendSync(source as Iterable<I>), end);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** What `kSendAll` answers for a source sent by this stream: whether it was sent whole (then, with `end`, the input ends). */
  async #endAfter(sending: Promise<boolean>, end: boolean): Promise<boolean> {
    const sent = await sending;
    if (sent && end) this.end();
    return sent;
  }

  /**
   * Whether the handler may pull its events from an async source directly
   * (pull.ts) rather than a sender reading it ahead. Only a generator
   * handler's stream (a task stage or a worker stream takes its input in
   * batches of its own), fed to its end by one source at a time, with no
   * session hooks (their events come first) and untraced: a pulled source
   * runs in the handler's context, where its spans would take the stream's
   * span as their parent instead of the caller's.
   */
  #pullable(end: boolean): boolean {
    return end && this.#x.pull === null && this.#x.body === null && this.#x.hooks === undefined && this.#x.trace === undefined;
  }

  [kPullable](): boolean {
    return this.#pullable(true);
  }

  #pullFrom(source: AsyncIterable<I>, control: SendControl | undefined): Promise<boolean> {
    const pull = new SourcePull<I>(source, this);
    // (A cancel closes it, as it closes the sources being sent: `#x.pull` is the one pulled source.)
    this.#more().pull = pull;
    if (control !== undefined) control.stop = pull.stop;
    // The handler may be waiting for its first event already.
    if (this.#resolveInput !== null && (this.#state & S.IN_PENDING) === 0) pull.request();
    return pull.done;
  }

  /** The pull stopped for good (its source ended, failed or was closed): forgotten. */
  [kPullDetached](detached: SourcePull<I>): void {
    if (this.#x.pull === detached) this.#more().pull = null;
    if ((this.#state & S.PULL_HELD) !== 0 && this.#x.pull === null) this.#holdForPull(false);
  }

  override [kSendNow](event: I): true | Promise<void> {
    const sent = this.send(event);
    return sent === RESOLVED ? true : sent;
  }

  /** One ordinary send; false if the stream is closed. */
  #sendOne(event: I): boolean | Promise<boolean> {
    const sent = this.send(event);
    if (sent === RESOLVED) return true;
    return sent.then(
      () => true,
      (error: unknown) => {
        if (error instanceof StreamClosedError) return false;
        throw error;
      },
    );
  }

  // Arrays cross into the core in slices that fit the free room: one native
  // call per slice instead of one per event.
  async #sendArray(events: readonly I[]): Promise<boolean> {
    let i = 0;
    while (i < events.length) {
      const room = this.#native.room();
      if (room === 0) {
        // Full, closed, or senders waiting: an ordinary send finds out which.
        if (!(await this.#sendOne(events[i++]))) return false;
        continue;
      }
      const n = Math.min(room, events.length - i, MAX_BATCH);
      this.#sendSlice(events, i, n);
      i += n;
    }
    return true;
  }

  /**
   * Sends `values[start..start+n]` (which fit in the room) through the
   * scratch buffer, one native call per run of numbers or of other values,
   * then wakes the handler if it waits.
   */
  #sendSlice(values: readonly I[], start: number, n: number): void {
    this.#native.sendSlice(values, start, n);
    this.#sentToCore();
    this.#state |= S.IN_PENDING;
    this.#wakeInput();
  }

  async #sendSync(source: Iterable<I>): Promise<boolean> {
    const it = checkedIterator(source[Symbol.iterator]());
    const stage: I[] = [];
    for (;;) {
      const room = this.#native.room();
      if (room === 0) {
        const r = checkedResult(it.next());
        if (r.done) return true;
        if (!(await this.#sendOne(r.value))) {
          closeSource(source, it);
          return false;
        }
        continue;
      }
      stage.length = 0;
      const max = Math.min(room, MAX_BATCH);
      let done = false;
      while (stage.length < max) {
        const r = checkedResult(it.next());
        if ((done = Boolean(r.done))) break;
        stage.push(r.value as I);
      }
      if (stage.length > 0) this.#sendSlice(stage, 0, stage.length);
      if (done) return true;
    }
  }

  async #sendAsync(source: AsyncIterable<I>, control: SendControl | undefined): Promise<boolean> {
    const it = checkedIterator(source[Symbol.asyncIterator]());
    // A source that has more events ready along with each one it gives
    // (protocol.ts) has them sent with it, as one slice.
    const readNow = (it as { [kReadNow]?: () => I | typeof NOT_NOW })[kReadNow];
    const ready: I[] = [];
    let stopped = false;
    // The stream may finish (cancelled, an idle timeout, its handler
    // returning) while the source waits for its next event, perhaps forever:
    // close it then. An async generator runs the return() only once its
    // pending next() settles, and so does a Node Readable's iterator: a
    // Readable (a socket, a request) is destroyed now instead, as leaving a
    // `for await` over it would destroy it.
    const stop: SourceStop = Object.assign(
      (reason?: unknown) => {
        if (stopped) return;
        stopped = true;
        closeSource(source, it, reason);
      },
      { stalls: !judgesOwnCut(source) },
    );
    if (control !== undefined) control.stop = stop;
    (this.#more().sources ??= new Set()).add(stop);
    try {
      for (;;) {
        const r = checkedResult(await it.next());
        if (stopped) return false;
        if (r.done) return true;
        let sent: boolean | Promise<boolean>;
        let more = typeof readNow === 'function' ? readNow.call(it) : NOT_NOW;
        if (more === NOT_NOW) sent = this.#sendOne(r.value);
        else {
          ready.length = 0;
          ready.push(r.value, more);
          while (ready.length < MAX_BATCH && (more = (readNow as () => I | typeof NOT_NOW).call(it)) !== NOT_NOW)
            ready.push(more);
          sent = this.#sendArray(ready);
        }
        if (sent === true || (await sent)) continue;
        // (Stopped while the send waited: `stop` closed the source already.)
        if (stopped) return false;
        stopped = true;
        await it.return?.();
        return false;
      }
    } finally {
      // Finished, or failed: nothing left to stop.
      stopped = true;
      this.#x.sources?.delete(stop);
    }
  }

  [kNextInput](): Promise<IteratorResult<I>> {
    if ((this.#state & S.INPUT_CUT) !== 0) return Promise.resolve(doneResult());
    // (A session's stream only: kept out of this path's own code, where it cost about 2.5 % of a live round trip.)
    if (this.#x.hooks !== undefined) {
      const first = this.#hookedInput(this.#x.hooks);
      if (first !== undefined) return first;
    }
    if (this.#inPos < this.#inLen) {
      if (this.#x.lentFlags === LENT_LATE) this.#lateTake();
      const value = this.#inBuf[this.#inPos] as I;
      this.#inBuf[this.#inPos++] = undefined;
      return Promise.resolve({ value, done: false });
    }
    const r = this.#pollInput();
    if (r !== null)
      return r.done === true && (this.#x.stalled !== undefined || this.#cancel !== undefined)
        ? Promise.reject(this.#inputFailure())
        : Promise.resolve(r);
    const pull = this.#x.pull;
    if (pull !== null) {
      // The handler asks again: the clock held while it worked runs from now.
      if ((this.#state & S.PULL_HELD) !== 0) this.#holdForPull(false);
      // The source has an event ready with the last (the rest of a chunk's lines): it goes over now.
      const value = pull.ready();
      if (value !== NOT_NOW) {
        this.#inputHandedOver();
        this.#handed++;
        return Promise.resolve({ value, done: false });
      }
    }
    // The handler is about to wait for input: whatever it yielded so far is
    // all there is for now, so batch readers need not wait any longer. (With
    // nothing staged or held, no reader could be answered.)
    if (this.#reader !== null && (this.#staged > this.#stageHead || (this.#state & S.OUT_PENDING) !== 0)) this.#serveReaders();
    this.#settled();
    // A second next() before the first settled (not something for-await
    // does) waits its turn rather than taking the first one's place.
    if (this.#inputPromise !== null) return this.#inputPromise.then(() => this[kNextInput]());
    const waiting = (this.#inputPromise = new Promise((resolve) => (this.#resolveInput = resolve)));
    if (this.#x.hooks !== undefined) this.#x.hooks.waiting?.();
    // (Its event comes as a send that finds the handler waiting: `kSendNow`, perhaps at once, from a stage's outputs.)
    pull?.request();
    return waiting;
  }

  /** An event the hooks give first (a durable timer due before the next event), counted as taken, or the end. */
  #hookedInput(hooks: SessionHooks): Promise<IteratorResult<I>> | undefined {
    const first = hooks.next?.(this.#x.yielded);
    if (first === undefined) return undefined;
    if (first === 'end') {
      // What is still buffered will never be taken (the core counts it as left when the handler returns).
      this.#state |= S.INPUT_CUT | S.END_TAKEN;
      this.#dropLent();
      return Promise.resolve(doneResult());
    }
    this.#handed++;
    return Promise.resolve({ value: first.value as I, done: false });
  }

  /** Take the next batch of events from the core; null if the handler must wait. */
  #pollInput(): IteratorResult<I> | null {
    if ((this.#state & S.IN_PENDING) === 0) return null;
    if ((this.#state & S.IN_ENDED) !== 0) {
      // (The core would answer `Take.Ended`, with no native call.)
      this.#state |= S.END_TAKEN;
      return doneResult();
    }
    if (this.#inBuf === NO_BUFFER) this.#inBuf = [];
    // The batch before is all taken: takes of it in later runs are told first (the take tells those of its run).
    if (this.#x.lentFlags >= LENT_LATE) this.#tellTaken();
    const n = this.#native.takeInput(this.#capacity, this.#inBuf);
    this.#lent(n);
    this.#state = n !== Take.Empty ? this.#state | S.IN_PENDING : this.#state & ~S.IN_PENDING;
    if (this.#senders.length > 0) this.#admitSenders(this.#native.admitted());
    if (n > 0) {
      this.#handed += n;
      this.#inPos = 1;
      this.#inLen = n;
      const value = this.#inBuf[0] as I;
      this.#inBuf[0] = undefined;
      return { value, done: false };
    }
    this.#inPos = this.#inLen = 0;
    if (n !== Take.Ended) return null;
    this.#state |= S.END_TAKEN;
    return doneResult();
  }

  /** What is left of the lent batch will never be taken (what was taken is told first). */
  #dropLent(): void {
    this.#tellTaken();
    if (this.#x.lentFlags !== 0) this.#more().lentFlags &= LENT_LISTED;
    this.#handed -= this.#inLen - this.#inPos;
    this.#inPos = this.#inLen = 0;
  }

  [kTaken](): number {
    const body = this.#x.body;
    if (body?.taken !== undefined) return body.taken();
    return this.#handed - (this.#inLen - this.#inPos);
  }

  [kTakenEnd](): boolean {
    const body = this.#x.body;
    if (body?.takenEnd !== undefined) return body.takenEnd();
    return (this.#state & S.END_TAKEN) !== 0;
  }

  #wakeInput(): void {
    const resolve = this.#resolveInput;
    if (resolve === null) return;
    const r = this.#pollInput();
    if (r === null) return;
    this.#resolveInput = this.#inputPromise = null;
    // A generator handler's input after its source stalled, or once the stream is cancelled, fails: its code after
    // the loop, which takes the input as whole, does not run (a body's callback takes the end: `kStalled` reports it).
    if (r.done === true && this.#x.body === null && (this.#x.stalled !== undefined || this.#cancel !== undefined)) {
      (resolve as unknown as (r: Promise<never>) => void)(Promise.reject(this.#inputFailure()));
      return;
    }
    resolve(r);
  }

  #admitSenders(count: number): void {
    for (let i = 0; i < count; i++) this.#senders.shift()?.resolve();
    if (count > 0) this.#syncKeepAlive();
  }

  [kReleaseInput](): void {
    // The handler takes no more events: its source is closed now, not when the handler finishes (run as it is
    // read, it may wait at a yield for long).
    this.#x.pull?.stop();
    // What the handler took of its lent batch is told before the rest is given back.
    this.#tellTaken();
    this.#native.releaseInput();
    this.#state |= S.IN_PENDING;
    this.#dropLent();
    this.#inBuf = NO_BUFFER;
    this.#idleOff();
    this.#state |= S.INPUT_RELEASED;
    // Waiting sends are not rejected yet. Leaving a `for await` by a throw
    // calls this first, and the error comes out of the handler only after its
    // `finally` blocks, which may await real cleanup: sends are answered when
    // the handler finishes (`#afterHandler`), with its error as the cause if
    // it threw. Until then they wait, as they would for a handler that is
    // slow to read; `cancel()` answers them at once.
  }

  /** Errors are made only when someone is waiting: capturing a stack costs microseconds. */
  #rejectSenders(makeError: () => Error): void {
    if (this.#senders.length === 0) return;
    const error = makeError();
    for (const sender of this.#senders.drain()) {
      sender.reject(error);
      sender.sent?.catch(ignore);
    }
    this.#syncKeepAlive();
  }

  // ----- idle -----

  /** The stream waits for admission (a limiter's permit, js/core/admit.ts): its idle clock is held, and it is held weakly. */
  [kHoldIdle](held: boolean): void {
    if (((this.#state & S.WAITING_ADMISSION) !== 0) !== held) {
      this.#flag(S.WAITING_ADMISSION, held);
      this.#syncAdmissionHold();
    }
    if ((this.#state & S.IDLE_ON) === 0 || ((this.#state & S.ADMITTING) !== 0) === held || !this.#native.live) return;
    this.#flag(S.ADMITTING, held);
    this.#native.idleHold(held);
    this.#syncKeepAlive();
  }

  idleFired(): void {
    this[kReport](false);
    // The deadline came while the handler worked, its pulled source not asked: no event was kept from it by the
    // source, so the clock is held (see `#pullHeld`) and the core re-arms the deadline instead of ending.
    const pull = this.#x.pull;
    if (pull !== null && !pull.asked && (this.#state & S.PULL_HELD) === 0 && (this.#state & S.ADMITTING) === 0)
      this.#holdForPull(true);
    if (!this.#native.idleFire()) return;
    // (Fed from a source, its stall: before the end reaches the handler, which then sees the error instead.)
    if (this.#x.pull !== null || this.#x.sources !== null) this.#stalled();
    this.#inputEnded();
  }

  /**
   * The idle deadline ended the input while the stream waited on a source sent into it (with room for its next
   * event, or its handler asking for it: the clock runs only then): that source stalled. It is closed now (its
   * `return()`, its signal aborted), a generator handler's input fails with the error after the events before it
   * (`kNextInput`), and `feed()` and `run()` report it after the outputs (`kStalled`). A source that judges
   * its own cut (`ndjsonEvents`, see `judgesOwnCut`) is left to its own rule.
   */
  #stalled(): void {
    const pull = this.#x.pull;
    const sources = this.#x.sources;
    let stalls = pull !== null && pull.stalls;
    if (sources !== null) for (const stop of sources) stalls ||= stop.stalls;
    if (!stalls) return;
    const error = new SourceStalledError(
      `The source fed to ${this.#describe()} gave no event within its idleTimeout: it was closed, and the stream failed`,
    );
    this.#more().stalled = error;
    if (pull !== null && pull.stalls) pull.stop(error);
    if (sources !== null) for (const stop of [...sources]) if (stop.stalls) stop(error);
  }

  [kStalled](): Error | undefined {
    return this.#x.stalled;
  }

  [kFedBy](): () => void {
    // (Its stall needs nothing of the writer: the stream fails, and whoever reads it passes the error on.)
    const fed: SourceStop = Object.assign(() => {}, { stalls: true });
    (this.#more().sources ??= new Set()).add(fed);
    return () => void this.#x.sources?.delete(fed);
  }

  /** Holds the idle clock for the pulled source, or lets it run again from now (see `#pullHeld`). */
  #holdForPull(held: boolean): void {
    this.#flag(S.PULL_HELD, held);
    if ((this.#state & S.IDLE_ON) !== 0 && this.#native.live) this.#native.idleHold(held);
    this.#syncKeepAlive();
  }

  /** Whether the idle deadline runs: not while a send waits for room, the stream waits for admission, or its clock is held for a pulled source. */
  #clockRuns(): boolean {
    return (
      (this.#state & S.IDLE_ON) !== 0 &&
      this.#senders.length === 0 &&
      (this.#state & S.ADMITTING) === 0 &&
      (this.#state & S.PULL_HELD) === 0
    );
  }

  #idleOff(): void {
    if ((this.#state & S.IDLE_ON) === 0) return;
    this.#state &= ~(S.IDLE_ON | S.IDLE_HELD | S.STAMP_DUE);
    if ((this.#state & S.IDLE_WATCHED) !== 0) {
      this.#state &= ~S.IDLE_WATCHED;
      unwatchIdle(this.#native.key);
    } else if (this.#native.retired) unlistOpened(this);
    this.#syncKeepAlive();
  }

  /** The native half retired: with no idle watch due either, the stream is taken off `listOpened`'s list. */
  #unlistIfDone(): void {
    if ((this.#state & S.IDLE_ON) === 0 && this.#native.retired) unlistOpened(this);
  }

  /** The turn after its open (see `listOpened`): its finalizer, and into the idle maps if its deadline still runs. */
  turnAfterOpen(): void {
    this.#native[kRegister]();
    if ((this.#state & S.IDLE_ON) === 0 || (this.#state & S.IDLE_WATCHED) !== 0) return;
    this.#state |= S.IDLE_WATCHED;
    holdIdle(this.#native.key, this, (this.#state & S.IDLE_HELD) !== 0);
  }

  /** Holds the stream strongly for its deadline, or weakly while its clock is paused. */
  #holdIdle(strong: boolean): void {
    this.#state = strong ? this.#state | S.IDLE_HELD : this.#state & ~S.IDLE_HELD;
    if ((this.#state & S.IDLE_WATCHED) !== 0) holdIdle(this.#native.key, this, strong);
  }

  /**
   * Follows whether this stream's idle deadline runs (it pauses while a send
   * waits for room): while it runs, the stream is held (see `holdIdle`), and
   * a pending read keeps the process alive, as the deadline will settle it.
   * Holds are taken at once and given back a turn later if still not wanted
   * (`recheckLater`).
   */
  #syncKeepAlive(): void {
    // (Without extras and with none of these flags, nothing is held nor wanted: the rest below would do nothing.)
    if ((this.#state & Mask.KEEP_ALIVE) === 0 && this.#x === NO_EXTRAS) return;
    if ((this.#state & S.WAITING_ADMISSION) !== 0) this.#syncAdmissionHold();
    if (this.#x.group !== null) {
      this.#syncGroup();
      return;
    }
    if ((this.#state & S.KEEPING_ALIVE) !== 0 && (this.#state & S.IDLE_HELD) !== 0) {
      // Every hold is taken already: only giving one back can be due.
      if ((this.#state & S.RECHECK_LISTED) === 0) this.#recheck();
      return;
    }
    const running = this.#clockRuns();
    if (running) {
      if ((this.#state & S.IDLE_HELD) === 0) this.#holdIdle(true);
    } else if ((this.#state & S.IDLE_HELD) !== 0) this.#recheck();
    if (this.#wantsAlive(running)) {
      if ((this.#state & S.KEEPING_ALIVE) !== 0) return;
      this.#state |= S.KEEPING_ALIVE;
      holdAlive();
      this.#x.body?.keepAlive?.(true);
    } else if ((this.#state & S.KEEPING_ALIVE) !== 0) this.#recheck();
  }

  /**
   * A stream waiting for a limiter's permit is held only weakly by the limiter (core/admit.ts: dropped, it
   * gives up its place in line). A read waiting on it meanwhile holds it strongly and keeps the process alive,
   * as a read keeps a running stream: its answer comes once the permit is granted.
   */
  #syncAdmissionHold(): void {
    // (A pipe's stage: its group holds it while the user reads the pipe. A stage's readers are the next stage.)
    if (this.#x.group !== null) {
      if (((this.#state & S.GROUP_ADMITTING) !== 0) !== ((this.#state & S.WAITING_ADMISSION) !== 0))
        this.#x.group.admitting(this, this.#flag(S.GROUP_ADMITTING, (this.#state & S.WAITING_ADMISSION) !== 0));
      return;
    }
    const hold = (this.#state & S.WAITING_ADMISSION) !== 0 && this.#reader !== null && !this.#x.ownedReads;
    if (hold === ((this.#state & S.ADMISSION_HELD) !== 0)) return;
    this.#flag(S.ADMISSION_HELD, hold);
    if (hold) {
      readingAdmitted.add(this as HandlerStream<unknown, unknown>);
      holdAlive();
    } else {
      readingAdmitted.delete(this as HandlerStream<unknown, unknown>);
      releaseAlive();
    }
  }

  /** A stage of a pipe: its group decides for the pipe (see `AliveGroup`). */
  #syncGroup(): void {
    const running = this.#clockRuns();
    if (running !== ((this.#state & S.IDLE_HELD) !== 0)) this.#holdIdle(running);
    const live = running || (this.#state & S.TIMERS_PENDING) !== 0;
    const group = this.#x.group as AliveGroup;
    if (live !== ((this.#state & S.GROUP_RUNNING) !== 0)) group.running(this.#flag(S.GROUP_RUNNING, live));
    const reading = this.#x.groupLast && this.#reader !== null;
    if (reading !== ((this.#state & S.GROUP_READING) !== 0)) group.reading(this.#flag(S.GROUP_READING, reading));
  }

  /** A pending read (or, for a worker's, a send) waits on an answer its running deadline or timers will give. */
  #wantsAlive(running: boolean): boolean {
    // A waiting send keeps the process alive as a waiting read does only when its answer depends on work off this
    // thread (a worker's handler finishing), not on a deadline of this one (a task stage's retry or `maxWait`).
    // (`running` is false while a send waits.)
    return (
      ((running || (this.#state & S.TIMERS_PENDING) !== 0) && this.#reader !== null) ||
      ((this.#state & S.TIMERS_ANSWER_SENDS) !== 0 && this.#senders.length > 0)
    );
  }

  #recheck(): void {
    if ((this.#state & S.RECHECK_LISTED) !== 0) return;
    this.#state |= S.RECHECK_LISTED;
    recheckLater(this as HandlerStream<unknown, unknown>);
  }

  /** A turn after a hold stopped being wanted: give it back if it still is not. */
  [kRecheck](): void {
    this.#state &= ~S.RECHECK_LISTED;
    // Parked since the last turn: its reader did not come back within the turn (it waits for I/O, or dropped the
    // iteration). The handler runs ahead into its buffer again, for good, as an unfused one does: it finishes
    // (its `finally` runs, its slot is freed) when its source ends, an abandoned stream is collected when it
    // pauses at a full buffer, and the idle clock is as for any pulled source (`feed-fusion.test.mjs`).
    if ((this.#state & S.PARKED) !== 0) this.#unfuse();
    if (this.#x.group !== null) return;
    const running = this.#clockRuns();
    if ((this.#state & S.IDLE_HELD) !== 0 && !running) this.#holdIdle(false);
    if ((this.#state & S.KEEPING_ALIVE) !== 0 && !this.#wantsAlive(running)) {
      this.#state &= ~S.KEEPING_ALIVE;
      releaseAlive();
      this.#x.body?.keepAlive?.(false);
    }
  }

  // ----- the handler -----

  /**
   * One step of the handler's iterator, answered by `#onStep` (`#stepped`), which takes the next step at once
   * while the output has room and, fused (`kFuse`), a read waits for it; otherwise the handler stays at its yield
   * (paused at a full buffer, or `#parked`) until `#resumeStep`.
   */
  #step(): void {
    let next: Promise<IteratorResult<unknown>>;
    try {
      next = (this.#it as AsyncIterator<unknown>).next();
    } catch (error) {
      this.#handlerThrew(error);
      return;
    }
    // (A custom iterator's non-promise answer is taken as `await` would take it.)
    if (!(next instanceof Promise)) next = Promise.resolve(next);
    void next.then(this.#onStep, this.#onStepFailed);
  }

  #stepped(r: IteratorResult<unknown>): void {
    try {
      // `for await` refuses what is not an object: so does the stream (else it would yield `undefined` forever).
      if (typeof r !== 'object' || r === null)
        throw invalidReturn(`Iterator result ${String(r)} is not an object (the handler's next() must return { value, done })`);
      if (this.#output(r)) this.#step();
    } catch (error) {
      this.#handlerThrew(error);
    }
  }

  /**
   * What a step of the handler gave: its end, or an output, which goes to a
   * waiting read or into the buffer. True when the handler should go on at
   * once; otherwise it has finished, is paused at a full buffer or parked
   * (`#resumeStep` goes on), or is being stopped.
   */
  #output(r: IteratorResult<unknown>): boolean {
    if (r.done) {
      this.#returned();
      return false;
    }
    // (Counted for session hooks, which a stream has from its start: without them, nothing reads the count.)
    if (this.#x !== NO_EXTRAS) this.#more().yielded++;
    // (After a cancel the core refuses every output, and the handler is
    // stopped below: a refused push, or no room granted.)
    const emitted = this.#emit(r.value as O);
    if (emitted === Emit.Emitted) {
      if ((this.#state & S.FUSED) === 0 || this.#reader !== null) return true;
      this.#park();
    } else if (emitted === Emit.Paused) {
      // Paused at its yield until a reader makes room. Its pulled source, not asked meanwhile, holds the idle
      // clock now rather than at the deadline: a stream nobody reads then is collected at once (see `#pullHeld`).
      const pull = this.#x.pull;
      if (pull !== null && !pull.asked && (this.#state & S.PULL_HELD) === 0 && (this.#state & S.ADMITTING) === 0)
        this.#holdForPull(true);
      this.#resumeHandler = this.#more().resumeStepFn ??= () => this.#resumeStep();
    } else this.#stopHandler();
    return false;
  }

  /** Resumes the handler paused at its yield (a reader made room or asks, or a cancel: then it is stopped). */
  #resumeStep(): void {
    if ((this.#state & S.PARKED) !== 0) this.#state &= ~S.PARKED;
    if (this.#cancel !== undefined) this.#stopHandler();
    else this.#step();
  }

  /**
   * Fused: the output went to its reader (or, with no read waiting, into the
   * buffer) and no other read waits. The handler stays at its yield until
   * the next read, as at a full buffer of one.
   */
  #park(): void {
    this.#state |= S.PARKED;
    this.#resumeHandler = this.#more().resumeStepFn ??= () => this.#resumeStep();
    this.#settled();
    // Still parked on the next turn (`kRecheck`): its reader is slow or gone, and it runs ahead again.
    if ((this.#state & S.RECHECK_LISTED) === 0) this.#recheck();
  }

  /** A one-at-a-time read waits with nothing buffered: a parked handler runs to its next output. */
  #unpark(): void {
    this.#resumeHandler = null;
    this.#resumeStep();
  }

  /** Stops the handler at its yield (its `finally` runs), then finishes as a return does. */
  #stopHandler(): void {
    let done: unknown;
    try {
      done = (this.#it as AsyncIterator<unknown>).return?.();
    } catch (error) {
      this.#handlerThrew(error);
      return;
    }
    Promise.resolve(done).then(
      () => this.#returned(),
      (error: unknown) => this.#handlerThrew(error),
    );
  }

  [kFuse](): void {
    // (A task stage's body, a session's stream and a traced one keep running ahead: see docs/performance.md.)
    // Only a handler that pulls its input from a source runs as it is read: one fed by sends or an array keeps
    // running ahead into its buffer (`conformance/overlap.test.mjs`).
    if (this.#x.pull === null || this.#x.body !== null || this.#x.hooks !== undefined || this.#x.trace !== undefined) return;
    this.#state |= S.FUSED;
  }

  /** A batch reader (or a wait for any output) came: the handler runs ahead of its readers again, for good. */
  #unfuse(): void {
    this.#state &= ~S.FUSED;
    if ((this.#state & S.PARKED) !== 0) this.#unpark();
  }

  /**
   * One output. A one-at-a-time reader waiting on an empty buffer takes it
   * straight from the producer. Otherwise outputs are staged within the room
   * the core granted, and committed in batches. `Paused`: the output is in
   * the core's line, and the producer waits until a reader makes room.
   */
  #emit(value: O): Emit {
    const reader = this.#reader;
    const direct = reader !== null && reader.kind !== ReadKind.Wake && this.#outPos === this.#outLen && this.#credit === 0;
    if (direct && (this.#state & S.OUT_PENDING) === 0 && this.#cancel === undefined) {
      // The reader waits and nothing is ahead of this output (the core's
      // answer would be `Push.Handoff`): it gets it directly, counted later.
      this.#outputHandedOver();
      return this.#handToReader(reader, value);
    }
    if (!direct) {
      if (this.#credit === 0) {
        this.#commitStage();
        this.#credit =
          (this.#state & S.OUT_LANE_USED) !== 0 || this.#cancel !== undefined ? this.#native.outputRoom() : this.#capacity;
      }
      if (this.#credit > 0) {
        this.#credit--;
        if (this.#stage === NO_BUFFER) this.#stage = [];
        if (typeof value !== 'number') this.#state |= S.STAGED_VALUES;
        this.#stage[this.#staged++] = value;
        // (With no read waiting there is nobody to serve, and no hold changes: an output of a handler running
        // ahead of its reader stages and goes on.)
        if (reader !== null) this.#outputArrived();
        return Emit.Emitted;
      }
    }
    this.#state |= S.OUT_LANE_USED;
    const pushed = this.#native.yieldOutput(value, direct);
    if (pushed === Push.Handoff) {
      return this.#handToReader(reader as Reader, value);
    }
    if (pushed === Push.Accepted) {
      this.#state |= S.OUT_PENDING;
      this.#outputArrived();
      return Emit.Emitted;
    }
    if (pushed === Push.Parked) {
      this.#state |= S.OUT_PENDING;
      this.#serveReaders();
      return Emit.Paused;
    }
    return Emit.Closed;
  }

  /** Gives `value` to the first waiting reader (a one-at-a-time one). */
  #handToReader(reader: Reader, value: O): Emit {
    this.#shiftReader();
    reader.resolve(reader.kind === ReadKind.Recv ? value : { value, done: false });
    this.#syncKeepAlive();
    return Emit.Emitted;
  }

  #returned(): void {
    // The handoffs not reported yet go with the return, in its native call
    // (the idle clock stops here, so their time does not matter).
    const handed = this.#handoffsDue(false) >= 0;
    this.#commitStage();
    // Nothing left for readers: the core's outputs are closed and drained for
    // good, and the stream is done unless a read still holds a lent batch. A
    // done stream retires in the same call (see `NativeStream.retire`).
    this.#native.handlerReturned(
      (this.#state & S.IN_PENDING) !== 0 && (this.#state & S.IN_ENDED) === 0,
      (this.#state & S.OUT_PENDING) === 0,
      handed ? this.#inHanded : 0,
      handed ? this.#outHanded : 0,
      this.#outLen - this.#outPos,
    );
    this.#unlistIfDone();
    this.#inHanded = this.#outHanded = 0;
    if ((this.#state & S.OUT_PENDING) === 0) this.#state |= S.OUT_ENDED;
    this.#afterHandler(true);
  }

  // ----- a body's operations (see `StreamBody`) -----

  [kPollInput](): I | typeof NO_INPUT | typeof INPUT_END {
    if (this.#inPos < this.#inLen) {
      if (this.#x.lentFlags === LENT_LATE) this.#lateTake();
      const value = this.#inBuf[this.#inPos] as I;
      this.#inBuf[this.#inPos++] = undefined;
      return value;
    }
    const r = this.#pollInput();
    return r === null ? NO_INPUT : r.done === true ? INPUT_END : r.value;
  }

  [kInputLent](): number {
    return this.#inLen - this.#inPos;
  }

  [kTakeLent](into: unknown[], max: number): unknown[] {
    const buf = this.#inBuf;
    const start = this.#inPos;
    const end = start + Math.min(max, this.#inLen - start);
    if (end === start) return into;
    if (this.#x.lentFlags === LENT_LATE) this.#lateTake();
    // An empty array is replaced by a copy of the run (one allocation of its size, not one per growth).
    if (into.length === 0) into = buf.slice(start, end);
    else for (let pos = start; pos < end; pos++) into.push(buf[pos]);
    for (let pos = start; pos < end; pos++) buf[pos] = undefined;
    this.#inPos = end;
    return into;
  }

  [kAwaitInput](callback: (r: IteratorResult<I>) => void): void {
    // Waiting for input: what the body emitted so far is all there is for now.
    if (this.#reader !== null) this.#serveReaders();
    this.#resolveInput = callback;
    this.#x.hooks?.waiting?.();
  }

  [kEmit](value: O): Emit {
    return this.#emit(value);
  }

  [kAwaitRoom](callback: () => void): void {
    this.#resumeHandler = callback;
  }

  [kBodyReturned](): void {
    // A body (a task or batch stage, a worker's stream) takes its input's end after a stall as an end: the stream
    // fails with the stall, as a generator's does when its input loop throws it.
    const stalled = this.#x.stalled;
    if (stalled !== undefined) this.#handlerThrew(stalled);
    else this.#returned();
  }

  [kBodyThrew](error: unknown): void {
    this.#handlerThrew(error);
  }

  [kAbortSignal](reason: unknown): void {
    this.#more().bodyAbort ??= { reason };
    this.#x.abort?.abort(reason);
  }

  [kTimersPending](pending: boolean, sendsToo: boolean): void {
    this.#flag(S.TIMERS_PENDING, pending);
    this.#flag(S.TIMERS_ANSWER_SENDS, pending && sendsToo);
    this.#syncKeepAlive();
  }

  #handlerThrew(error: unknown): void {
    if (this.#cancel !== undefined) {
      // Thrown while being cancelled: nobody is left to see it.
      this.#afterHandler(false);
      return;
    }
    this.#failure = { error };
    reportFailure(this.#listing, this, error);
    this[kReport](false);
    this.#commitStage();
    this.#native.handlerFailed();
    // (Waiting sends are refused with the handler's error as the cause: `#closedError` with `#failure` set.)
    this.#afterHandler(false);
  }

  /** The handler finished: `returned`, or threw (then waiting sends are refused as `#closedError` says). */
  #afterHandler(returned: boolean): void {
    if (this.#x.trace !== undefined) this.#endTrace();
    // The handler takes no more events: its source is closed, as a sender's is at its next send, refused.
    this.#x.pull?.stop();
    this.#state |= S.IN_PENDING | S.OUT_PENDING;
    // (The refusal's maker is made only for waiting sends: most streams have none.)
    if (this.#senders.length > 0) {
      this.#rejectSenders(
        returned
          ? () => new StreamClosedError(`${this.#describe()} has finished: its handler returned`)
          : () => this.#closedError(),
      );
    }
    this.#dropLent();
    this.#inBuf = NO_BUFFER;
    this.#idleOff();
    this.#detachSignal?.();
    this.#detachSignal = undefined;
    this.#x.onFinish?.();
    this.#serveReaders();
    this.#state |= S.HANDLER_DONE;
    this.#settled();
    this.#x.resolveFinished?.();
    // No hold is wanted again (every read was answered, the idle clock stopped): given back now rather than a turn
    // later, when the stream is the last listed (most often it is), so that nothing holds a stream done in its turn.
    if ((this.#state & S.RECHECK_LISTED) !== 0 && toRecheck[toRecheck.length - 1] === this) {
      toRecheck.pop();
      this[kRecheck]();
    }
  }

  #endTrace(): void {
    const trace = this.#x.trace as StreamTrace;
    this.#more().trace = undefined;
    const metrics = this.metrics;
    if (this.#cancel !== undefined) trace.end('cancelled', metrics, { error: this.#cancel.reason });
    else if (this.#failure !== undefined) trace.end('failed', metrics, this.#failure);
    else trace.end('completed', metrics);
  }

  [kOwnedReads](): void {
    this.#more().ownedReads = true;
    if (this.#x.group !== null) this.#x.group.ownedReads();
    else this.#syncKeepAlive();
  }

  [kWatchCancel](cancelled: (reason: unknown) => void): void {
    this.#more().onCancel = cancelled;
  }

  [kWatchFinish](finished: () => void): void {
    this.#more().onFinish = finished;
  }

  [kJoinAliveGroup](group: AliveGroup, last: boolean): void {
    if ((this.#state & S.KEEPING_ALIVE) !== 0) {
      this.#state &= ~S.KEEPING_ALIVE;
      releaseAlive();
      this.#x.body?.keepAlive?.(false);
    }
    this.#more().group = group;
    this.#more().groupLast = last;
    if (this.#x.body !== null) group.join(this.#x.body);
    this.#syncKeepAlive();
  }

  // ----- output -----

  [kRead](kind: ReadKind): Promise<unknown> {
    if (this.#outPos < this.#outLen && kind !== ReadKind.Wake) return Promise.resolve(this.#shiftOut(kind));
    try {
      const r = this.#poll(kind);
      if (r !== NOT_YET) return Promise.resolve(r);
    } catch (error) {
      return Promise.reject(error);
    }
    if (kind === ReadKind.Wake && (this.#state & S.FUSED) !== 0) this.#unfuse();
    return new Promise((resolve, reject) => {
      this.#pushReader({ kind, resolve, reject });
      this.#syncKeepAlive();
      if ((this.#state & S.PARKED) !== 0) this.#unpark();
    });
  }

  [kReadTo](reader: ReadTarget): void {
    const kind = reader.kind;
    if (this.#outPos < this.#outLen && kind !== ReadKind.Wake) {
      reader.resolve(this.#shiftOut(kind));
      return;
    }
    let r: unknown;
    try {
      r = this.#poll(kind);
    } catch (error) {
      reader.reject(error);
      return;
    }
    if (r !== NOT_YET) {
      reader.resolve(r);
      return;
    }
    if (kind === ReadKind.Wake && (this.#state & S.FUSED) !== 0) this.#unfuse();
    this.#pushReader(reader);
    this.#syncKeepAlive();
    if ((this.#state & S.PARKED) !== 0) this.#unpark();
  }

  /** A read waits, after those waiting already. */
  #pushReader(reader: Reader): void {
    if (this.#reader === null) this.#reader = reader;
    else {
      if (this.#x.moreReaders === NO_QUEUE) this.#more().moreReaders = new Fifo();
      this.#x.moreReaders.push(reader);
    }
  }

  /** The first waiting read was answered: the next one is first. */
  #shiftReader(): void {
    this.#reader = this.#x.moreReaders.length > 0 ? (this.#x.moreReaders.shift() as Reader) : null;
  }

  [kWaitOutput](): Promise<unknown> {
    return this[kRead](ReadKind.Wake);
  }

  [kSettle](): Promise<void> | undefined {
    // A writer that waits for runs of outputs (one write per run) is better served by a handler running ahead:
    // a write per output costs more than the run ahead saves (docs/performance.md).
    if ((this.#state & S.FUSED) !== 0) this.#unfuse();
    // (A task stage's body is not a generator: its outputs come as calls settle, not in runs.)
    if (
      this.#x.body !== null ||
      (this.#state & S.HANDLER_DONE) !== 0 ||
      this.#resolveInput !== null ||
      this.#resumeHandler !== null
    )
      return undefined;
    if ((this.#state & S.WAKE_SCHEDULED) === 0) {
      this.#state |= S.WAKE_SCHEDULED;
      wakeLater(this as HandlerStream<unknown, unknown>);
    }
    return new Promise((resolve) => (this.#settleWaiters ??= []).push(resolve));
  }

  /** The handler stopped running (or a turn passed): whoever waits in `kSettle` goes on. */
  #settled(): void {
    const waiters = this.#settleWaiters;
    if (waiters === null) return;
    this.#settleWaiters = null;
    for (const resolve of waiters) resolve();
  }

  [kReadNow](): O | typeof NOT_NOW {
    // (A reader already waiting comes first: its turn is not taken.)
    if (this.#reader !== null) return NOT_NOW;
    if (this.#outPos >= this.#outLen) {
      if (this.#stageHead < this.#staged && (this.#state & S.OUT_PENDING) === 0 && this.#cancel === undefined)
        return this.#takeStaged();
      if (this.#takeOutput() <= 0) return NOT_NOW;
    }
    const value = this.#outBuf[this.#outPos] as O;
    this.#outBuf[this.#outPos++] = undefined;
    this.#consumed();
    // The last output of the batch, taken after the handler finished: the next take finds the end (the stream is
    // done then, and retires) or the rest, now rather than at one more read.
    if ((this.#state & S.HANDLER_DONE) !== 0 && this.#outPos === this.#outLen) this.#takeOutput();
    return value;
  }

  [kDrain](out: O[]): boolean {
    if ((this.#state & S.FUSED) !== 0) this.#unfuse();
    const before = out.length;
    while (this.#outPos < this.#outLen) {
      out.push(this.#outBuf[this.#outPos] as O);
      this.#outBuf[this.#outPos++] = undefined;
    }
    for (;;) {
      // Taken straight into `out`: nothing is lent to one-at-a-time reads.
      const n = this.#takeOutput(out);
      if (n > 0) continue;
      if (n === Take.Empty) return false;
      if (this.#failure === undefined) return true;
      // Outputs made before the failure come first: the caller delivers this
      // batch, and its next drain (the stream stays ended) throws.
      if (out.length > before) return false;
      throw this.#failure.error;
    }
  }

  #shiftOut(kind: ReadKind): unknown {
    const value = this.#outBuf[this.#outPos];
    this.#outBuf[this.#outPos++] = undefined;
    this.#consumed();
    // The last output of the batch, taken after the handler finished: the next take finds the end (the stream is
    // done then, and retires) or the rest, now rather than at one more read.
    if ((this.#state & S.HANDLER_DONE) !== 0 && this.#outPos === this.#outLen) this.#takeOutput();
    return kind === ReadKind.Recv ? value : { value, done: false };
  }

  /**
   * A one-at-a-time read took an output of the taken batch. While the handler
   * (or body) waits at a full output, the core is told what was read, and it
   * resumes the handler once half the buffer is free: the handler refills the
   * buffer while the reader drains it, as a Node stream refills below its
   * high-water mark. Otherwise nothing is said (no native call per read): the
   * next take tells the core the whole batch was read.
   */
  #consumed(): void {
    if (this.#resumeHandler === null) return;
    const n = this.#outPos - this.#outReported;
    this.#outReported = this.#outPos;
    if (this.#native.outputConsumed(n) === 0) return;
    const resume = this.#resumeHandler;
    this.#resumeHandler = null;
    resume();
  }

  /**
   * A reader waits and the handler just yielded. One-at-a-time readers (recv,
   * iteration, feed) get it now; batch readers (run, pipe links) get it when
   * the handler stops producing (it waits for input, is paused at a full
   * output, or finishes) or at the latest on the next turn of the event loop,
   * so that outputs cross the boundary in batches rather than one by one.
   */
  #outputArrived(): void {
    if (this.#reader?.kind !== ReadKind.Wake) {
      this.#serveReaders();
    } else if ((this.#state & S.WAKE_SCHEDULED) === 0) {
      this.#state |= S.WAKE_SCHEDULED;
      wakeLater(this as HandlerStream<unknown, unknown>);
    }
  }

  /** The next turn of the event loop has come (see `wakeLater`). */
  /** Whether its scheduled wake would serve anyone; if not, it is unscheduled (taken off `toWake` by the caller). */
  [kWakeNeeded](): boolean {
    if (
      (this.#state & S.WAKE_SCHEDULED) !== 0 &&
      ((this.#state & S.HANDLER_DONE) === 0 || this.#reader !== null || this.#settleWaiters !== null)
    )
      return true;
    this.#state &= ~S.WAKE_SCHEDULED;
    return false;
  }

  [kWake](): void {
    if ((this.#state & S.WAKE_SCHEDULED) === 0) return;
    this.#state &= ~S.WAKE_SCHEDULED;
    this.#serveReaders();
    this.#settled();
  }

  /** Hands the staged outputs to the core (they fit: they are within the credit). */
  #commitStage(): void {
    this.#credit = 0;
    const n = this.#staged - this.#stageHead;
    if (n > 0) {
      this.#native.yieldSlice(this.#stage, this.#stageHead, n);
      this.#state |= S.OUT_LANE_USED | S.OUT_PENDING;
    }
    this.#emptyStage();
  }

  #emptyStage(): void {
    this.#staged = this.#stageHead = 0;
    if ((this.#state & S.STAGED_VALUES) !== 0) {
      this.#state &= ~S.STAGED_VALUES;
      this.#stage.length = 0;
    }
  }

  /**
   * `kReadNow` with nothing lent and nothing in the core ahead of the stage: the first staged output, handed over
   * as the core would hand it to a read waiting for it (counted later, as `#emit`'s handoffs): the core stores
   * nothing, so a run of outputs read now costs no commit and no take. (`#stageHead` moves; the credit stays
   * spent.)
   */
  #takeStaged(): O {
    const value = this.#stage[this.#stageHead] as O;
    if ((this.#state & S.STAGED_VALUES) !== 0) this.#stage[this.#stageHead] = undefined;
    if (++this.#stageHead === this.#staged) this.#emptyStage();
    this.#outputHandedOver();
    return value;
  }

  /** An output went to a read with no native call: counted later (see `reportHandoffs`), or now without native state. */
  #outputHandedOver(): void {
    if (this.#native.handedInFirstTurn(0, 1)) return;
    this.#outHanded++;
    this.#countLater();
  }

  /** Takes the next run of outputs: into `#outBuf` (lent to reads), or appended to `into`. */
  #takeOutput(into?: unknown[]): number {
    this.#commitStage();
    if ((this.#state & S.OUT_PENDING) === 0) return Take.Empty;
    if ((this.#state & S.OUT_ENDED) !== 0) {
      // (The core would answer the same, with no native call.)
      this.#outPos = this.#outReported = this.#outLen = 0;
      return Take.Ended;
    }
    let n: number;
    if (into !== undefined) n = this.#native.takeOutput(this.#capacity, into, into.length);
    else {
      if (this.#outBuf === NO_BUFFER) this.#outBuf = [];
      n = this.#native.takeOutput(this.#capacity, this.#outBuf, 0);
    }
    this.#state = n !== Take.Empty ? this.#state | S.OUT_PENDING : this.#state & ~S.OUT_PENDING;
    if (n === Take.Ended) {
      this.#state |= S.OUT_ENDED;
      // The last output of a handler that returned has been read: the stream is done, and retires.
      if ((this.#state & S.HANDLER_DONE) !== 0 && this.#failure === undefined && this.#cancel === undefined) {
        this.#native.retire();
        this.#unlistIfDone();
      }
    }
    if (this.#resumeHandler !== null && this.#native.admitted() > 0) {
      const resume = this.#resumeHandler;
      this.#resumeHandler = null;
      resume();
    }
    this.#outPos = this.#outReported = 0;
    this.#outLen = n > 0 && into === undefined ? n : 0;
    return n;
  }

  /** The answer for a read now, or NOT_YET; throws what the read must reject with. */
  #poll(kind: ReadKind): unknown {
    if (this.#outPos >= this.#outLen) {
      const n = this.#takeOutput();
      if (n === Take.Empty) return NOT_YET;
      if (n === Take.Ended) {
        if (kind === ReadKind.Wake) return true;
        if (this.#failure !== undefined) throw this.#failure.error;
        if (kind === ReadKind.Iter) return doneResult();
        if (this.#cancel !== undefined) throw this.#closedError();
        throw new StreamClosedError(`${this.#describe()} has no more outputs`);
      }
    }
    return kind === ReadKind.Wake ? true : this.#shiftOut(kind);
  }

  #serveReaders(): void {
    for (let reader = this.#reader; reader !== null; reader = this.#reader) {
      let r: unknown;
      try {
        r = this.#poll(reader.kind);
      } catch (error) {
        this.#shiftReader();
        reader.reject(error);
        continue;
      }
      if (r === NOT_YET) break;
      this.#shiftReader();
      reader.resolve(r);
    }
    this.#syncKeepAlive();
  }

  // ----- cancel -----

  cancel(reason?: unknown): Promise<void> {
    this[kReport](false);
    // Outputs staged for the core go in first, so that `eventsOut` counts them (every output yielded) before the
    // cancel drops them with the rest of the buffer.
    if (this.#staged > this.#stageHead && this.#native.live) this.#commitStage();
    if (this.#native.cancel()) {
      this.#cancel = { reason };
      this.#state |= S.IN_PENDING | S.OUT_PENDING;
      this.#x.abort?.abort(reason);
      this.#dropLent();
      this.#outPos = this.#outLen = 0;
      this.#inBuf = this.#outBuf = this.#stage = NO_BUFFER;
      this.#staged = this.#stageHead = 0;
      this.#state &= ~S.STAGED_VALUES;
      this.#credit = 0;
      this.#rejectSenders(() => this.#closedError());
      this.#idleOff();
      this.#detachSignal?.();
      this.#detachSignal = undefined;
      // Sources still being sent, or pulled, will never be read again.
      this.#x.pull?.stop();
      if (this.#x.sources !== null) for (const stop of this.#x.sources) stop();
      this.#x.body?.cancelled();
      this.#wakeInput();
      const resume = this.#resumeHandler;
      this.#resumeHandler = null;
      resume?.();
      this.#serveReaders();
      this.#x.onCancel?.(reason);
    }
    return this[kFinished];
  }

  [kFailAtEnd](error: unknown): void {
    if (this.#failure === undefined && this.#native.live) this.#failure = { error };
  }

  /** What a generator handler's read of its input throws once it ended by a stall, or by a cancel. */
  #inputFailure(): Error {
    return this.#x.stalled ?? this.#closedError();
  }

  #describe(): string {
    return `Stream ${this.id} of "${this.#listing.name}"`;
  }

  #closedError(): StreamClosedError {
    if (this.#failure !== undefined) {
      const error = this.#failure.error;
      // (The library's own failures, a stall, a worker's crash or a closed workerFn, say what they were.)
      const code = readString(() => (error as { code?: unknown } | null)?.code);
      const why = code !== undefined && Object.hasOwn(ERROR_CODES, code) ? readString(() => (error as Error).message) : undefined;
      return new StreamClosedError(`${this.#describe()} failed: ${why ?? 'its handler threw'}`, { cause: error });
    }
    if (this.#cancel !== undefined) {
      const options = this.#cancel.reason === undefined ? undefined : { cause: this.#cancel.reason };
      return new StreamClosedError(`${this.#describe()} was cancelled`, options);
    }
    if ((this.#state & S.INPUT_RELEASED) !== 0 && (this.#state & S.HANDLER_DONE) === 0) {
      return new StreamClosedError(`${this.#describe()} no longer reads its input`);
    }
    return new StreamClosedError(`${this.#describe()} is closed: its input has ended`);
  }
}
