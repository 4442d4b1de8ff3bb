// One live session of a partition: a key's run of events through one instance of the function.
import { type SessionHooks, type StreamKind } from '../core/protocol';
import { cutText, readString, textOf } from '../text';
import { idTime } from './log-ids';
import type { InputEntry } from './transport';
import type { SessionScope } from './trace-context';
import type { ClockTimer } from './clock';

/** A handler's failure as stored with an output: `{ name, message, code }` as JSON. */
export function serializeError(error: unknown, maxBytes: number): string {
  // The handler's value, maybe hostile (a revoked Proxy, getters that throw): what cannot be read is left out.
  const e = error as { name?: unknown; message?: unknown; code?: unknown };
  const name = (error !== null && typeof error === 'object' && readString(() => e.name)) || 'Error';
  const message = (error !== null && typeof error === 'object' ? readString(() => e.message) : undefined) ?? textOf(error);
  const code = error !== null && typeof error === 'object' ? readString(() => e.code) : undefined;
  const make = (max: number, short: number) =>
    JSON.stringify({
      name: cutText(name, short),
      message: cutText(message, max),
      ...(code === undefined ? {} : { code: cutText(code, short) }),
    });
  // Within maxEventBytes, as every entry: the message is cut (halved until the entry fits), then the name and
  // code. (Under 35 bytes, an entry with all three empty, the failure is still written.)
  let max = MAX_ERROR_MESSAGE;
  let short = 256;
  let out = make(max, short);
  while (Buffer.byteLength(out) > maxBytes && max > 0) out = make((max = Math.floor(max / 2)), short);
  while (Buffer.byteLength(out) > maxBytes && short > 0) out = make(max, (short = Math.floor(short / 2)));
  return out;
}

/** Most UTF-16 units of an error's message kept in its output entry. */
const MAX_ERROR_MESSAGE = 16_384;

/** A timer of `ctx.wakeAt`: its id in the session (1, 2, ...), its time (Redis' clock, ms), its payload encoded. */
export interface Timer {
  readonly id: number;
  readonly time: number;
  readonly payload: Buffer | string;
}

/** A `ctx.checkpoint()` call, kept until the outputs yielded before it are queued: its state encoded, or why it could not be. */
export interface CheckpointCall {
  /** Timers the session had made at the call, and those of them not known to have fired. */
  readonly timers: number;
  readonly pending: Timer[];
  /** Events the instance had taken. */
  readonly taken: number;
  /** Outputs the instance had yielded. */
  readonly yielded: number;
  readonly state?: Buffer | string;
  readonly error?: Error;
}

/**
 * A session's `SessionHooks`: the state it was restored from, and its checkpoint calls, encoded at the call (a
 * failure throws there, and is kept too: the session fails at that point of its outputs, also if the handler
 * catches the error). `onCall` (set once the session exists) takes them in order.
 */
export class Checkpoints implements SessionHooks {
  readonly calls: CheckpointCall[] = [];
  onCall: (() => void) | null = null;
  /** Timers made so far (restored ones included): the next one's id is this plus one. */
  timerCount = 0;
  /** Timers not known to have fired (their wake-up not read back yet). */
  readonly timers = new Map<number, Timer>();
  /** The error `wakeAt` throws when the session has all the timers it may have, else null (set once the session exists). */
  tooMany: (() => Error | null) | null = null;
  /** Arms a new timer (set once the session exists). */
  onTimer: ((timer: Timer) => void) | null = null;
  /** The stream uses these hooks: its handler's timers are known once it waits for input (`waiting`). */
  attached = false;
  /** The handler waits for input having handled all it took (set once the session exists). */
  onWaiting: (() => void) | null = null;
  constructor(
    readonly restored: unknown,
    readonly encode: (state: unknown, pending: readonly Timer[]) => Buffer | string,
    readonly encodePayload: (payload: unknown) => Buffer | string,
  ) {}
  /**
   * Timers already fired into the session's input but not taken by its handler when it had taken `taken` events
   * (set once the session exists): a checkpoint records them as pending too, since a restore replays only the log's
   * entries after it, and a fired timer is in no entry of the log.
   */
  untaken: ((taken: number) => Timer[]) | null = null;
  checkpoint(state: unknown, taken: number, yielded: number): void {
    const timers = this.timerCount;
    const pending = [...this.timers.values(), ...(this.untaken?.(taken) ?? [])];
    let encoded: Buffer | string;
    try {
      encoded = this.encode(state, pending);
    } catch (error) {
      this.calls.push({ taken, yielded, timers, pending, error: error as Error });
      this.onCall?.();
      throw error;
    }
    this.calls.push({ taken, yielded, timers, pending, state: encoded });
    this.onCall?.();
  }
  attach(): void {
    this.attached = true;
  }
  /**
   * Asked as its handler takes its next event: a timer's payload to give it first, if one is due, or `'end'` if
   * the session ends at a cap there (set once the session exists).
   */
  onNext: (() => { value: unknown } | 'end' | undefined) | null = null;
  next(): { value: unknown } | 'end' | undefined {
    return this.onNext?.();
  }
  /** Times its handler waited for input (`waiting`). */
  waits = 0;
  waiting(): void {
    this.waits++;
    this.onWaiting?.();
  }
  wakeAt(time: number, payload: unknown): void {
    const tooMany = this.tooMany?.();
    if (tooMany) throw tooMany;
    const timer = { id: this.timerCount + 1, time: Math.ceil(time), payload: this.encodePayload(payload) };
    this.timerCount++;
    this.timers.set(timer.id, timer);
    this.onTimer?.(timer);
  }
}

export class Session<I, O> {
  /** Its entries (events, markers read for it): acked when it ends, less those given to the key's next session. */
  readonly ids: string[] = [];
  seq = 0;
  /** Its handler threw, or an output could not be encoded: its error was its last output, nothing comes after. */
  failed = false;
  /** Redis' time of its last event's entry, ms: its idle deadline is `idleTimeout` after (`PartitionRun.#endIdleByLog`). */
  lastTime = 0;
  /** A send into its stream waits for room: its input must not end before that event is in. */
  sending = false;
  forwarded: Promise<void> = Promise.resolve();
  /** Events of the log that belong to it (those dropped after its handler stopped included): for `maxSessionEvents`. */
  events = 0;
  /** Redis' time of its first entry, ms: for `maxSessionAge`. */
  readonly start: number;
  /**
   * Why the worker ended its input, if it did: a cap, or an entry the codec could not decode (`entry`: that
   * entry is the last of `sent`). The error is its last output if the session keeps that end (see `#ended`).
   */
  stop: { error: Error; entry: boolean } | undefined;
  /** Its outputs are all forwarded (the handler has finished). */
  forwardDone = false;
  ageTimer: ClockTimer | null = null;
  ageMarked = false;
  /**
   * Entries sent to its stream, in log order, that its handler may not have taken yet (counted in the
   * partition's `buffered`). Those it never takes go to the key's next session when it ends.
   */
  sent: InputEntry[] = [];
  /** Entries sent before `sent[0]`: all taken. */
  sentBase = 0;
  /** Started from a checkpoint: its handler need not take any event (the session's first was taken long ago). */
  restored = false;
  /** Its checkpoint calls, and the state it was restored from. */
  checkpoints: Checkpoints | null = null;
  /** Outputs of its handler handed to `#output` so far: a checkpoint call waits for those yielded before it. */
  yieldsQueued = 0;
  /** Events of this instance acked by its checkpoints (the first `ackedEvents` it took). */
  ackedEvents = 0;
  /** Events of the session before this instance (from its snapshot): with those taken, a checkpoint's `events`. */
  baseEvents = 0;
  /** Redis' time of the last event covered by its last checkpoint, ms. */
  checkpointTime = 0;
  /** Ids in `ids` that are close markers (an age marker that came too early stays among its events). */
  markers: Set<string> | null = null;
  /** Its trace (a tracer provider is registered): its span, its events' spans and links. */
  scope: SessionScope | undefined = undefined;
  /**
   * Events its handler had taken when it last waited for input with none to take (-1: not yet): once that is
   * every event sent to it, its timers are all known (`PartitionRun.#quiet`).
   */
  waitTaken = -1;
  /** Its handler has finished. */
  handlerDone = false;
  /** Resolved when its handler next waits for input having taken all sent (or finishes). */
  quietWaiters: (() => void)[] = [];
  /** Its armed timers' Node timeouts, by timer id. */
  readonly wakeTimeouts = new Map<number, ClockTimer>();
  constructor(
    readonly key: string,
    readonly sid: string,
    readonly stream: StreamKind<I, O>,
  ) {
    this.start = idTime(sid.slice(sid.lastIndexOf('@') + 1));
  }
}
