// One live session of a partition: a key's run of events through one instance of the function.
import type { Journal, JournalCall, JournalStreamCall } from './journal';
import { type CallSignal, type SessionHooks, type StreamKind, kTaken, kTakenEnd } from '../../core/protocol';
import { tagStream } from '../../core/stream-list';
import { cutText, readString, textOf } from '../../text';
import { type Codec, encodeChecked } from '../common/codec';
import {
  CheckpointTooLargeError,
  type SessionLimitError,
  TimerPastAgeError,
  TooManyTimersError,
  reservedTimerKeyError,
  sessionAgeError,
  sessionEventsError,
} from '../../errors';
import { idTime } from '../common/log-ids';
import {
  type EndReason,
  type SessionLimits,
  type SessionState,
  type SessionTimer,
  addTimer,
  cancelTimer,
} from '../rules/session-rules';
import type { InputEntry, OutputRecord, SessionEnd, SessionOpening, Snapshot, WrittenMark } from '../common/transport';
import type { SessionScope } from '../common/trace-context';
import type { ClockTimer } from '../common/clock';
import { EntryIds } from './entry-ids';
import { Inbox } from './inbox';
import { OutputPlaces, type PlacedRecord } from './output-places';
import type { Grant } from './session-permits';
import { DEBOUNCE_TIMER_KEY } from './debounce-input';
import type { StreamHandler } from '../../types';

/** A handler's failure as stored with an output: `{ name, message, code }` as JSON. */
export function serializeError(error: unknown, maxBytes: number): string {
  // The handler's value, maybe hostile (a revoked Proxy, getters that throw): what cannot be read is left out.
  const e = error as { name?: unknown; message?: unknown; code?: unknown };
  const name = (error !== null && typeof error === 'object' && readString(() => e.name)) || 'Error';
  const message = (error !== null && typeof error === 'object' ? readString(() => e.message) : undefined) ?? textOf(error);
  const code = error !== null && typeof error === 'object' ? readString(() => e.code) : undefined;
  const make = (max: number, named: number, coded: number) =>
    JSON.stringify({
      name: cutText(name, named),
      message: cutText(message, max),
      ...(code === undefined ? {} : { code: cutText(code, coded) }),
    });
  // Within maxEventBytes, as every entry: the message is cut (halved until the entry fits), then the name, then the
  // code, which readers match on, last. (Under 35 bytes, an entry with all three empty, the failure is still written.)
  let max = MAX_ERROR_MESSAGE;
  let named = 256;
  let coded = 256;
  let out = make(max, named, coded);
  while (Buffer.byteLength(out) > maxBytes && max > 0) out = make((max = Math.floor(max / 2)), named, coded);
  while (Buffer.byteLength(out) > maxBytes && named > 0) out = make(max, (named = Math.floor(named / 2)), coded);
  while (Buffer.byteLength(out) > maxBytes && coded > 0) out = make(max, named, (coded = Math.floor(coded / 2)));
  return out;
}

/** Most UTF-16 units of an error's message kept in its output entry. */
const MAX_ERROR_MESSAGE = 16_384;

/** A timer of `ctx.wakeAt`: its id in the session (1, 2, ...), its time (Redis' clock, ms), its payload encoded. */
export type Timer = SessionTimer;

/**
 * A `ctx.checkpoint()` call, kept until the outputs yielded before it are queued: the session's state then,
 * encoded, or why it could not be. One that succeeded stands for the end of the handler's step (it is made when
 * the handler takes its next input), so that a restore does what the step did after the call.
 */
export interface CheckpointCall {
  /** Entries of the log its handler had taken (its timers not counted). */
  readonly entries: number;
  /** The rule's state at the step's end: the latest time taken, inputs taken, timers made, and those not taken. */
  readonly last: number;
  readonly events: number;
  readonly timers: number;
  readonly pending: Timer[];
  /** Journaled calls made (`Journal.calls`) by the step's end. */
  readonly calls: number;
  /** The last input taken (`Checkpoints.lastInput`). */
  readonly input: string | undefined;
  /** Outputs the instance had yielded (by the step's end; for a failed call, by the call). */
  readonly yielded: number;
  /** Inputs the instance had taken (entries and timers). */
  readonly inputs: number;
  readonly state?: Buffer | string;
  readonly error?: Error;
}

/** A session's takes after the oldest not yet behind a forwarded output (`Checkpoints`), from `from` on. */
interface LaterTakes {
  readonly entries: (InputEntry | null)[];
  readonly before: (string | undefined)[];
  readonly yielded: number[];
  from: number;
}

/** What a session's hooks need of the worker: one object for all its sessions (the worker itself). */
export interface CheckpointsHost {
  readonly codec: Codec<unknown>;
  readonly maxCheckpointBytes: number;
  readonly maxEventBytes: number;
}

/**
 * What a session's hooks tell its partition's run once the session exists (`Session`): its handler waits for input,
 * asks for it, made a checkpoint call, made or dropped a timer.
 */
export interface CheckpointsOwner {
  waits(): void;
  ask(): { value: unknown } | 'end' | undefined;
  /** Its handler asks past an input, having yielded `yielded` outputs. */
  answered(yielded: number): void;
  checkpointDue(): void;
  armTimer(timer: Timer): void;
  dropTimer(timer: Timer): void;
}

/**
 * A session's `SessionHooks`: the state it was restored from, its rule's state (`rule`: timers are made here, with
 * the `maxSessionTimers` check), and its checkpoint calls, encoded at the call (a failure throws there, and is kept
 * too: the session fails at that point of its outputs, also if the handler catches the error). The partition's
 * run answers `next()` and learns of `waiting()` through `owner` (the session, set once it exists). Its state is in
 * fields and its behaviour in methods, with no closure per session: a worker opens thousands.
 */
export class Checkpoints implements SessionHooks {
  readonly calls: CheckpointCall[] = [];
  /** Its journal (`ctx.run`, `ctx.stream`): set by `sessionHooks` as the session opens. */
  journal: Journal | null = null;
  /** The session, once it exists (`PartitionRun.#open`); until then waits are counted in `waits`. */
  owner: CheckpointsOwner | null = null;
  /** Entries of the log its handler has taken (the run counts them as it gives them). */
  entries = 0;
  /**
   * The last input its handler took, as `SessionEnd.last` names it (an entry id, `t<id>` for a timer; the run
   * sets it as it gives them, a restore from its checkpoint), for `checkReplay`'s record of where it ended.
   */
  lastInput: string | undefined = undefined;
  // `ctx.entry`'s parts, kept apart: an object per input taken was most of what giving one allocated, and few
  // handlers read it. Undefined before the first input taken (also after a restore).
  #entryId: string | undefined = undefined;
  #entryTime = 0;
  #entry: { readonly id: string; readonly time: number } | undefined = undefined;
  /** Outputs its handler had yielded when it asked for the input it takes now (`next`). */
  #yieldedAtAsk = 0;
  /** Inputs its handler has taken (entries and timers). */
  #inputs = 0;
  /** Inputs its handler has taken (entries and timers). */
  get inputsTaken(): number {
    return this.#inputs;
  }
  /** Where its outputs come among its inputs. */
  readonly places = new OutputPlaces();
  // The takes not yet behind a forwarded output, oldest first: the entry taken (null for a timer), the last input
  // before it, the outputs yielded before it. A handler runs ahead of the forwarding of its outputs; an output that
  // cannot be encoded ends the session at its yield, so what was taken after that yield is not the session's
  // (`failAt`). The oldest is kept in fields (most often the only one: its outputs are forwarded before the handler
  // takes its next input), the rest in arrays made while a handler runs ahead: nothing is made per input, and nothing
  // of an input is kept once an output after it is forwarded.
  #takes = 0;
  #firstEntry: InputEntry | null = null;
  #firstBefore: string | undefined = undefined;
  #firstYielded = 0;
  #later: LaterTakes | null = null;
  #endPlaced = false;
  /** The handler takes this input (an entry id, `t<id>` for a timer) of this time: `lastInput` and `ctx.entry`. */
  took(id: string, time: number, entry: InputEntry | null): void {
    if (this.#takes++ === 0) {
      this.#firstEntry = entry;
      this.#firstBefore = this.lastInput;
      this.#firstYielded = this.#yieldedAtAsk;
    } else {
      const later = (this.#later ??= { entries: [], before: [], yielded: [], from: 0 });
      later.entries.push(entry);
      later.before.push(this.lastInput);
      later.yielded.push(this.#yieldedAtAsk);
    }
    this.places.took(this.#yieldedAtAsk);
    this.#inputs++;
    this.lastInput = id;
    this.#entryId = id;
    this.#entryTime = time;
    this.#entry = undefined;
  }
  /** The oldest take is behind a forwarded output: the next is the oldest. */
  #shiftTake(): void {
    this.#takes--;
    const later = this.#later;
    if (later === null || this.#takes === 0) {
      this.#firstEntry = null;
      this.#firstBefore = undefined;
      this.#later = null;
      return;
    }
    const i = later.from++;
    this.#firstEntry = later.entries[i];
    this.#firstBefore = later.before[i];
    this.#firstYielded = later.yielded[i];
    later.entries[i] = null;
    if (later.from === later.yielded.length) this.#later = null;
  }
  /** The first `queued` outputs are forwarded: the takes made before the last of them are the session's for good. */
  forwarded(queued: number): void {
    while (this.#takes > 0 && this.#firstYielded < queued) this.#shiftTake();
  }
  /**
   * The session fails at its `output`-th output (from 1; it could not be encoded): the entries its handler took
   * after yielding it, in the order taken (log order), which open the key's next session, as entries it never
   * took do; its last input is then the one before them.
   */
  failAt(output: number): InputEntry[] {
    while (this.#takes > 0 && this.#firstYielded < output) this.#shiftTake();
    const back: InputEntry[] = [];
    if (this.#takes === 0) return back;
    this.lastInput = this.#firstBefore;
    if (this.#firstEntry !== null) back.push(this.#firstEntry);
    const later = this.#later;
    if (later !== null)
      for (let i = later.from; i < later.entries.length; i++) {
        const entry = later.entries[i];
        if (entry !== null) back.push(entry);
      }
    this.#takes = 0;
    this.#firstEntry = null;
    this.#firstBefore = undefined;
    this.#later = null;
    return back;
  }
  /**
   * `ctx.entry` shows `id` (`t<id>`) of `time` without it being taken: a debounce timer whose held event goes when the
   * input ends first, as its wake-up would have given it (so that a restored session shows the same).
   */
  showEntry(id: string, time: number): void {
    this.#entryId = id;
    this.#entryTime = time;
    this.#entry = undefined;
  }
  /** `ctx.entry`: the input its handler took last (undefined before the first); one object per input, made when read. */
  get entry(): { readonly id: string; readonly time: number } | undefined {
    if (this.#entry === undefined && this.#entryId !== undefined) this.#entry = { id: this.#entryId, time: this.#entryTime };
    return this.#entry;
  }
  /** The stream uses these hooks: its handler asks for each input (`next`). */
  attached = false;
  /** The handler the session's stream runs instead of the function's (`debounce`; set before the stream opens). */
  wrapHandler?: <I, O>(handler: StreamHandler<I, O>) => StreamHandler<I, O>;
  /** Times its handler waited for input before the session existed (it runs up to its first await at the open). */
  waits = 0;
  /**
   * A call could not be encoded: the session fails there, so its input ends there too (the handler, if it caught
   * the error, takes nothing more); the entries it had not taken by then open the key's next session.
   */
  broken = false;
  constructor(
    readonly restored: unknown,
    readonly rule: SessionState,
    readonly limits: SessionLimits,
    readonly sid: string,
    readonly host: CheckpointsHost,
  ) {}
  /** A checkpoint's state with the timers pending, encoded (`encodeCheckpoint`), or its coded error thrown. */
  encode(state: unknown, pending: readonly Timer[]): Buffer | string {
    return encodeCheckpoint(this.host.codec, this.host.maxCheckpointBytes, this.sid, state, pending);
  }
  /** A wake-up's payload, encoded within `maxEventBytes`, or its coded error thrown. */
  encodePayload(payload: unknown): Buffer | string {
    return encodeChecked(this.host.codec, payload, this.host.maxEventBytes, 'wake-up payload of session', this.sid);
  }
  /**
   * The latest checkpoint of the handler's current step, encoded: a call until the step ends (the handler takes its
   * next input). What the step does after the call (outputs, timers, a return or a throw) is not in the handler's
   * state: a snapshot committed before it would restore a session that never does it. A step that ends the session
   * (a return, a throw) needs none: the session's end removes its snapshot.
   */
  #step: Buffer | string | null = null;
  /** The checkpoint of the handler's current step (its latest call since it took its last input), or null. */
  get stepState(): Buffer | string | null {
    return this.#step;
  }
  checkpoint(state: unknown, _taken: number, yielded: number): void {
    let encoded: Buffer | string;
    try {
      encoded = this.encode(state, this.rule.timers);
    } catch (error) {
      // The session fails at this point of its outputs (also if the handler catches the error).
      this.calls.push({ ...this.#at(yielded), error: error as Error });
      this.broken = true;
      this.#step = null;
      this.owner?.checkpointDue();
      throw error;
    }
    if (!this.broken) this.#step = encoded;
  }
  /** Where the session is, for a checkpoint call: the rule's state, its last input, and the outputs yielded. */
  #at(yielded: number): Omit<CheckpointCall, 'state' | 'error'> {
    const rule = this.rule;
    return {
      entries: this.entries,
      last: rule.last,
      events: rule.events,
      timers: rule.timerCount,
      pending: [...rule.timers],
      // (The journal's open entry is cut here: the checkpoint's commit forgets exactly the entries of calls before it.)
      calls: this.journal?.cut() ?? 0,
      input: this.lastInput,
      yielded,
      inputs: this.#inputs,
    };
  }
  /**
   * Its input ended (the rule's end, a cap, an input it could not decode): the end is placed as an input, so that
   * outputs after it (a debounced event delivered at the end) are not taken for more outputs of the last input, which
   * its handler answered when it asked past it. Once.
   */
  inputEnded(): void {
    if (this.#endPlaced) return;
    this.#endPlaced = true;
    this.places.took(this.#yieldedAtAsk);
  }
  attach(yielded: () => number): void {
    this.attached = true;
    this.#yieldedNow = yielded;
  }
  /** Outputs its handler has yielded so far (its stream's count, from `attach`). */
  #yieldedNow: () => number = () => 0;
  /** Outputs its handler has yielded since it asked for the input it took last (of that input, so far). */
  yieldedForInput(): number {
    return this.#yieldedNow() - this.#yieldedAtAsk;
  }
  next(yielded: number): { value: unknown } | 'end' | undefined {
    this.#yieldedAtAsk = yielded;
    this.places.asked(yielded);
    this.owner?.answered(yielded);
    if (this.#step !== null) {
      this.calls.push({ ...this.#at(yielded), state: this.#step });
      this.#step = null;
      this.owner?.checkpointDue();
    }
    return this.owner?.ask();
  }
  waiting(): void {
    if (this.owner === null) this.waits++;
    else this.owner.waits();
  }
  wakeAt(time: number, payload: unknown, key: string | undefined): void {
    if (key === DEBOUNCE_TIMER_KEY) throw reservedTimerKeyError('ctx.wakeAt()');
    // A pending debounce timer has a slot of its own: the handler keeps all of maxSessionTimers.
    const limits = this.#debouncePending() ? this.#limitsPlusOne() : this.limits;
    this.#add(time, this.encodePayload(payload), limits, key);
  }
  cancelTimer(key: string): boolean {
    if (key === DEBOUNCE_TIMER_KEY) throw reservedTimerKeyError('ctx.cancelTimer()');
    return this.#cancel(key);
  }
  run(name: string, body: (call: JournalCall) => unknown, signal: CallSignal): Promise<unknown> {
    return (this.journal as Journal).run(name, body, signal);
  }
  stream(
    name: string,
    factory: (call: JournalStreamCall) => AsyncIterable<unknown> | Iterable<unknown>,
    signal: CallSignal,
  ): AsyncIterable<unknown> {
    return (this.journal as Journal).stream(name, factory, signal);
  }
  /**
   * Encodes a debounce timer's payload (set with `debounce`): its bound is `maxEventBytes` plus what the wrapper
   * adds, so an event the worker accepts always fits.
   */
  encodeDebounce: ((payload: unknown) => Buffer | string) | null = null;
  /** The debounce timer (`debounce-input.ts`), made or replaced: one slot past `maxSessionTimers`, its own. */
  wakeDebounce(time: number, payload: unknown): number {
    const bytes = this.encodeDebounce === null ? this.encodePayload(payload) : this.encodeDebounce(payload);
    return this.#add(time, bytes, this.#limitsPlusOne(), DEBOUNCE_TIMER_KEY);
  }
  cancelDebounce(): void {
    this.#cancel(DEBOUNCE_TIMER_KEY);
  }
  #debouncePending(): boolean {
    return this.encodeDebounce !== null && this.rule.timers.some((t) => t.key === DEBOUNCE_TIMER_KEY);
  }
  #limitsPlusOne(): SessionLimits {
    return { ...this.limits, maxSessionTimers: this.limits.maxSessionTimers + 1 };
  }
  /** Makes a timer (or replaces the pending one of `key`): its id. */
  #add(time: number, payload: Buffer | string, limits: SessionLimits, key: string | undefined): number {
    const replaced = key === undefined ? undefined : this.rule.timers.find((t) => t.key === key);
    const timer = addTimer(this.rule, time, payload, limits, key);
    if (timer === 'late') throw new TimerPastAgeError(this.sid, sidTime(this.sid), this.limits.maxSessionAge, Math.ceil(time));
    if (timer === 'full') throw new TooManyTimersError(this.sid, this.limits.maxSessionTimers);
    if (replaced !== undefined) this.owner?.dropTimer(replaced);
    this.owner?.armTimer(timer);
    return timer.id;
  }
  #cancel(key: string): boolean {
    const timer = cancelTimer(this.rule, key);
    if (timer === undefined) return false;
    this.owner?.dropTimer(timer);
    return true;
  }
}

/** Why the worker ended a session's input, when it did: a cap (its error), or an input its codec could not decode. */
export interface Stop {
  readonly error: Error;
  readonly kind: 'cap' | 'decode';
}

/** How a session starts, as its opening decided (`PartitionRun.#open`): its fields' first values. */
export interface SessionStart<I, O> {
  /** Its checkpoint calls, and the state it was restored from. */
  readonly checkpoints: Checkpoints;
  /** Started from a checkpoint taken after an input (one before its first input stands for the start). */
  readonly restored: boolean;
  /** The seq of its last output so far: its checkpoint's, else 0. */
  readonly seq: number;
  readonly keep: Buffer | string | undefined;
  readonly keepVersion: string;
  readonly writtenBefore: WrittenMark | null;
  /** The last of those is its own version's answer (`OpeningPlan.writtenOwn`). */
  readonly writtenOwn?: boolean;
  /** Its partition's run, which its hooks tell (through it). */
  readonly run: SessionRun<I, O>;
  readonly scope?: SessionScope;
  readonly permit: Grant | null;
  readonly stepped: boolean;
}

/** What a session tells its partition's run for its hooks (`CheckpointsOwner`): one object per run. */
export interface SessionRun<I, O> {
  waits(s: Session<I, O>): void;
  ask(s: Session<I, O>): { value: unknown } | 'end' | undefined;
  answered(s: Session<I, O>, yielded: number): void;
  checkpointsDue(s: Session<I, O>): void;
  armTimer(s: Session<I, O>, timer: Timer): void;
  clearTimer(s: Session<I, O>, id: number): void;
}

/**
 * A session of the partition's run. Its fields are grouped by the one module that writes them after the opening
 * sets their first values (`SessionStart`); the rest only read them. It is its hooks' owner (`CheckpointsOwner`),
 * passing on to its run.
 */
export class Session<I, O> implements CheckpointsOwner {
  /** Its rule's state (`session-rules.ts`): shared with its `Checkpoints`. */
  readonly rule: SessionState;
  /** Its checkpoint calls, and the state it was restored from. */
  readonly checkpoints: Checkpoints;
  /** Started from a checkpoint: its handler need not take any event (the session's first was taken long ago). */
  readonly restored: boolean;
  /** Entries delivered to it that its handler has not taken (its inbox owns them). */
  readonly inbox = new Inbox();
  /** Its trace (a tracer provider is registered): its span, its events' spans and links. */
  readonly scope: SessionScope | undefined;
  /** Its permits of the worker's `limiter.session` limiters (held from before it opened to its end), if any. */
  readonly permit: Grant | null;
  /** Each input its handler takes needs a permit of `limiter.step`: nothing is sent into its stream ahead of it. */
  readonly stepped: boolean;
  /** The seq of its last output when it opened (its checkpoint's, else 0). */
  readonly startSeq: number;
  // Written by session-writes.ts (`SessionWrites`: its outputs, failure and checkpoints).
  /** The seq of its last output queued. */
  seq: number;
  /** Its handler threw, or an output could not be encoded: its error was its last output, nothing comes after. */
  failed = false;
  /**
   * `keyState`: the state its end keeps for its key, encoded: its latest checkpoint queued, else the state it started
   * from (its snapshot's, or the key's); undefined: none.
   */
  keep: Buffer | string | undefined;
  /** The version whose shape `keep` has (a key's state taken as it is keeps the version that kept it). */
  keepVersion: string;
  /** Entries its handler took after yielding an output that could not be encoded: the key's next session's (`Checkpoints.failAt`). */
  takenPast: InputEntry[] | null = null;
  /**
   * A migrated session's outputs an earlier owner wrote after the checkpoint it started from: its outputs placed at
   * or before `at` are not written again, and the first after it continues past `written` (null once passed).
   */
  writtenBefore: WrittenMark | null;
  /**
   * The last of those is an answer of its own version, to an input past the one its old version was answering at the
   * adoption: its replay's outputs for that input are held as a continued answer's, and dropped if they are the same
   * up to the last written (its digest), else written whole after them.
   */
  readonly writtenOwn: boolean;
  /**
   * A migrated session's outputs for the input its old version was answering, not written while they may be the old
   * ones again, and the output at which its handler asked past that input (-1: not yet); null: none (session-writes.ts).
   */
  held: { outputs: (OutputRecord & PlacedRecord)[]; answeredAt: number; left: number } | null = null;
  /**
   * The digest of its outputs for the input it answers now (`outputsDigest` over each in turn), and that input's
   * place (-1: none yet); 0: none, the input's first output made while its handler had not journaled.
   */
  digest = 0;
  digestInput = -1;
  /**
   * A migrated session's: the place of the input of its old version's last output (`writtenBefore`'s: an answer in
   * flight, unless the old version had asked past it), when that is an input its handler takes again (-1: none, or outputs placed before any input, of an input its restore does not
   * answer again). While set, its handler's asks go to `SessionWrites.answered`.
   */
  readonly inFlightInput: number;

  // Written by session-inputs.ts (`SessionInputs`: what it is given, and when its input ends).
  /** Why the worker ended its input, if it did; its error is its last output if its handler read to that end. */
  stop: Stop | undefined;
  /** The rule's end of its input, when the rule ended it (for `checkReplay`'s record of where it ended). */
  endedBy: EndReason | undefined = undefined;
  /**
   * Its handler waits for its next input, none given: the rule is applied again when something new is known (an
   * entry of its key, the log's clock moving). Always set for a stream without hooks (its entries are decided
   * as they come: it has no timers).
   */
  waiting = false;
  /**
   * Its handler's step's permits of `limiter.step` (`stepped`): waiting, or held from before the input was given to
   * the handler's next ask.
   */
  step: Grant | null = null;

  // Written by owner-writes.ts (`OwnerWrites`: its timers' wake-ups, its age end's timer and mark).
  /** Its age end's timer (null: none armed). */
  ageTimer: ClockTimer | null = null;
  /** Its age marker is written. */
  ageMarked = false;
  // (The three below are made with the first timer that needs them: most sessions have none, and an empty Map or
  // Set is about 100 B.)
  /** Its armed timers' timeouts, by timer id (null: none armed yet). */
  wakeTimeouts: Map<number, ClockTimer> | null = null;
  /** Timers whose wake-up an earlier owner wrote: the partition's tick moves the log's clock to them instead. */
  wokenBefore: Set<number> | null = null;
  /**
   * Its wake-up writes in flight, each settled once its call answered (null: none yet). Its end is committed only
   * after them: a log that applies concurrent calls in any order (a Postgres pool) would otherwise write a wake-up
   * after the end, and the ended session would count as live.
   */
  wakeWrites: Set<Promise<void>> | null = null;

  // Written by session-forward.ts (`SessionForward`: its handler's outputs handed on, its slot).
  /** Its outputs are all forwarded (the handler has finished). */
  forwardDone = false;
  /** Its slot (one of `maxConcurrent`) is free: its handler has finished. */
  slotFreed = false;
  /** Outputs of its handler handed to `#output` so far: a checkpoint call waits for those yielded before it. */
  yieldsQueued = 0;

  // Written by partition-run.ts (`PartitionRun`: its life in the run).
  /** Its input has ended (decided by the rule, or its handler finished). */
  ended = false;

  // Written by session.ts (its own methods: `marker`, `acked`, `trimTaken`, `forwarded`).
  /** Its run is through with it (`PartitionRun.#forwarded`): its outputs forwarded, its end queued. */
  #over = false;
  /** `forwarded`, once asked for (most sessions are never waited for: no promise each). */
  #forwarded: Promise<void> | null = null;
  #resolveForwarded: (() => void) | null = null;

  /** Its entries (events, markers read for it), in log order: acked when it ends, less those given to the key's next session. */
  readonly ids = new EntryIds();
  /** Entries of this instance acked by its checkpoints (the first `ackedEntries` it took). */
  ackedEntries = 0;
  /** Ids in `ids` that are markers (close markers, wake-ups): not events. */
  markers: Set<string> | null = null;

  readonly #run: SessionRun<I, O>;

  constructor(
    readonly key: string,
    readonly sid: string,
    readonly stream: StreamKind<I, O>,
    rule: SessionState,
    /** What it opened with (its version, and the caps the rule applies to it), kept with it in Redis. */
    readonly opening: SessionOpening,
    start: SessionStart<I, O>,
  ) {
    this.#run = start.run;
    this.rule = rule;
    this.checkpoints = start.checkpoints;
    this.restored = start.restored;
    this.seq = start.seq;
    this.startSeq = start.seq;
    this.keep = start.keep;
    this.keepVersion = start.keepVersion;
    this.writtenBefore = start.writtenBefore;
    this.writtenOwn = start.writtenOwn === true;
    // (Outputs placed before any input since its checkpoint were of an input its restore does not answer again.)
    this.inFlightInput = (start.writtenBefore?.at[0] ?? 0) > 0 ? (start.writtenBefore as WrittenMark).at[0] : -1;
    // (An input the old version answered, its handler past it, is no answer in flight: its outputs stand whole.)
    if (this.inFlightInput >= 0 && start.writtenBefore?.at[2] !== true && !this.writtenOwn)
      this.checkpoints.journal?.answerInFlight(
        this.inFlightInput + this.checkpoints.places.fromInputs,
        (start.writtenBefore as WrittenMark).at[1],
      );
    this.scope = start.scope;
    this.permit = start.permit;
    this.stepped = start.stepped;
    // For dashboards: which session a listed stream of the function is (its sid and key, shown as allowed).
    tagStream(stream, { session: { key, sid } });
  }

  /** Settles once its run is through with it: its outputs forwarded to the outbox, its end queued. */
  get forwarded(): Promise<void> {
    if (this.#forwarded === null)
      this.#forwarded = this.#over ? Promise.resolve() : new Promise((resolve) => (this.#resolveForwarded = resolve));
    return this.#forwarded;
  }

  /** Its run is through with it (`forwarded` settles). */
  over(): void {
    this.#over = true;
    this.#resolveForwarded?.();
    this.#resolveForwarded = null;
  }

  waits(): void {
    this.#run.waits(this);
  }

  ask(): { value: unknown } | 'end' | undefined {
    return this.#run.ask(this);
  }

  checkpointDue(): void {
    this.#run.checkpointsDue(this);
  }

  answered(yielded: number): void {
    if (this.inFlightInput >= 0 || (this.checkpoints.journal?.divergedInput ?? -1) >= 0) this.#run.answered(this, yielded);
  }

  armTimer(timer: Timer): void {
    this.#run.armTimer(this, timer);
  }

  dropTimer(timer: Timer): void {
    this.#run.clearTimer(this, timer.id);
  }

  /** Time of its first entry (in its sid). */
  get start(): number {
    return this.rule.start;
  }

  /** The caps the rule applies to it: those it opened with, whichever worker runs it now. */
  get limits(): SessionLimits {
    return this.opening.limits;
  }

  /** Records a marker read for it (acked with its entries, never an event of it). */
  marker(id: string): void {
    this.ids.push(id);
    (this.markers ??= new Set()).add(id);
  }

  /** Without hooks: drops from its inbox the entries its handler has taken since; how many (they leave the budget). */
  trimTaken(): number {
    return this.inbox.trimTaken(this.stream[kTaken]());
  }
}

/**
 * Where the session ended, for `checkReplay` to compare with another run's end of its sid: why its input ended
 * (the rule's end, an input it could not decode, else its handler's throw or return), and the last input it
 * took; with hooks as the rule gave them (restored with its checkpoint), without (a pipe: no timers) the last
 * entry it keeps (`acks`, markers aside), which is also a new session's first entry when its handler took none.
 */
export function sessionEnd(s: Session<never, unknown>, acks: readonly string[]): SessionEnd {
  let reason: SessionEnd['reason'] = s.endedBy ?? (s.stop?.kind === 'decode' ? 'decode' : s.failed ? 'throw' : 'return');
  // A stream without hooks (a pipe's) is given its entries as they come, so the rule may end its input (idle, or a
  // cap) before its handler took the last of them (a replay past that end): an end its handler made itself, a throw
  // or a return before it was told of the input's end, is the session's then, as in a run that gave it the entries
  // in time.
  if (s.endedBy !== undefined && s.checkpoints?.attached !== true) {
    if (s.failed) reason = 'throw';
    else if (!s.stream[kTakenEnd]()) reason = 'return';
  }
  let last = s.checkpoints?.lastInput;
  for (let i = acks.length - 1; last === undefined && i >= 0; i--) if (s.markers?.has(acks[i]) !== true) last = acks[i];
  return { reason, last: last ?? '' };
}

/** The time of a session's first entry, from its sid (`<key>@<entry id>`). */
export function sidTime(sid: string): number {
  return idTime(sid.slice(sid.lastIndexOf('@') + 1));
}

/**
 * A cap's error, a function of the session's rule only (its sid, its first entry's time, the cap): never of the
 * input or the clock reading that ended it, which differ between a live run, a backlog and a takeover, while a
 * reader of the error must see the same text whichever ran.
 */
export function capError(sid: string, start: number, reason: 'age' | 'events', limits: SessionLimits): SessionLimitError {
  if (reason === 'age') {
    const max = limits.maxSessionAge;
    return sessionAgeError(
      max,
      `Session ${JSON.stringify(sid)} reached maxSessionAge (${max} ms): it began at ${start} and ended at ${start + max + 1}, before any input from then on (an entry opens the key's next session, a timer never fires)`,
    );
  }
  const max = limits.maxSessionEvents;
  return sessionEventsError(
    max,
    `Session ${JSON.stringify(sid)} reached maxSessionEvents (${max}): it ended after its ${max} inputs, before the next (an entry opens the key's next session, a timer never fires)`,
  );
}

/**
 * A checkpoint's state, encoded by the function's codec, or the coded error `ctx.checkpoint` throws. Its size
 * counts the pending timers the checkpoint records with it (their payloads as stored, base64, and their numbers),
 * but not the worker's own debounce timer: the event it holds was accepted (bounded by `maxEventBytes`), and the
 * handler can neither see nor shrink it, so it must not fail the handler's checkpoint (nor lose the event).
 */
export function encodeCheckpoint(
  codec: Codec<unknown>,
  limit: number,
  sid: string,
  state: unknown,
  pending: readonly Timer[],
): Buffer | string {
  const data = encodeChecked(codec, state, Number.MAX_SAFE_INTEGER, 'checkpoint of session', sid);
  let timers = 0;
  for (const t of pending) {
    if (t.key === DEBOUNCE_TIMER_KEY) continue;
    const bytes = typeof t.payload === 'string' ? Buffer.byteLength(t.payload) : t.payload.length;
    timers += Math.ceil(bytes / 3) * 4 + String(t.id).length + String(t.time).length + 8;
    if (t.key !== undefined) timers += Buffer.byteLength(JSON.stringify(t.key)) + 1;
  }
  const size =
    timers + (typeof data === 'string' ? (data.length * 3 + timers <= limit ? 0 : Buffer.byteLength(data)) : data.length);
  if (size > limit) throw new CheckpointTooLargeError(sid, size, limit);
  return data;
}

/**
 * A checkpoint call of the session, due (the outputs yielded before it are queued), as what its commit carries:
 * the snapshot (the rule's state at the call: a restore continues the same walk) and the acks of the entries taken
 * since the last one (with the markers among them), which leave the session.
 */
export function checkpointOf(s: Session<never, unknown>, call: CheckpointCall): { acks: string[]; checkpoint: Snapshot } {
  let entries = call.entries - s.ackedEntries;
  let cut = 0;
  const markers = s.markers;
  if (markers === null) cut = Math.max(0, Math.min(entries, s.ids.length));
  else while (entries > 0 && cut < s.ids.length) if (!markers.has(s.ids.at(cut++))) entries--;
  const acks = s.ids.shift(cut);
  s.ackedEntries = call.entries;
  const checkpoint: Snapshot = {
    sid: s.sid,
    key: s.key,
    seq: s.seq,
    lastTime: call.last,
    events: call.events,
    state: call.state as Buffer | string,
    timers: call.timers,
    calls: call.calls,
    pending: call.pending.map((t) =>
      t.key === undefined ? ([t.id, t.time, t.payload] as const) : ([t.id, t.time, t.payload, t.key] as const),
    ),
    lastInput: call.input,
  };
  return { acks, checkpoint };
}
