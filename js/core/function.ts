import { assertOptionsObject, checkKeys, readingOptions, resolveConfig, resolveOpen, type ResolvedOpen } from '../config';
import { StreamLimitError, describe, invalidType, invalidValue, isRefusal, pipeSessionCallError } from '../errors';
import { type GroupPermit, NativeFunction, type Outcome, type Totals, ops } from '../addon/addon';
import { assertSource, collectOutputs } from './drive';
import { FirstTurnGate, NativeStream, reportDone, settleFirstTurns } from './native-stream';
import { PipedStream } from './pipe';
import { type SessionHooks, kAsksInputs, kFinished, kOpen, type StreamKind } from './protocol';
import { HandlerStream, kBegin, kHoldIdle, reportHandoffs } from './stream';
import { type StreamTrace, streamTrace } from '../tracing';
import { type StreamBody } from './body';
import { Sessions, type Singleton } from './sessions';
import { type Debounce, checkDebounce } from './debounce';
import { closeUnread } from './source';
import { Listing, type StreamList, kWatch, tagStream } from './stream-list';
import { type Admission, admitAtOpen, admittedHandler } from './admit';
import { checkLimiters, refundAll } from '../limits/use';
import type { Limiter } from '../limits/types';
import type {
  EventSource,
  OpenOptions,
  Stream,
  SessionsConfig,
  StreamConfig,
  StreamFn,
  StreamFnConfig,
  StreamFnStats,
  StreamHandler,
  StreamSessions,
  WakeUpsAreEvents,
} from '../types';

/** Totals over every stream of a function, for metrics exporters. */
export const kTotals = Symbol.for('velo-stream.totals');
/** A pipe opens its stages in two steps: every slot first, then the handlers. */
const kAdmit = Symbol.for('velo-stream.admit');
const kStart = Symbol.for('velo-stream.start');
/** `NativeFunction.open`'s `share` bits: the stream's input, its outputs. */
const SHARE_INPUT = 1;
const SHARE_OUTPUT = 2;
/** A pipe's own gate counts; its stages' gates limit (see `PipedFn`). */
const NO_LIMIT = 2 ** 32 - 1;

/** `NativeFunction.totals()`: events in/out and queue-wait counts at the bounds asked for (declared by the binding). */
export type { Totals };

const SyncGeneratorFunction = (Object.getPrototypeOf(function* () {}) as { constructor: FunctionConstructor }).constructor;

abstract class FnBase<I, O> implements StreamFn<I, O> {
  abstract readonly name: string;
  abstract readonly config: Readonly<Required<StreamConfig>>;
  abstract stats(): StreamFnStats;
  /** `hooks`: a session's durable side (the Redis tier); only a single handler's stream uses them. */
  /**
   * `key`: the session's, for a stream a sessions object opens, or the one given to `open()`; `cost`: the one given
   * to `open()` (its limiters' admission item carries them).
   */
  abstract [kOpen](
    signal: AbortSignal | undefined,
    idle: boolean,
    hooks?: SessionHooks,
    key?: unknown,
    cost?: number,
  ): StreamKind<I, O>;
  abstract [kTotals](boundsUs: number[]): Totals;
  /** The single-stage functions this one runs, in order. */
  abstract readonly stages: readonly SingleFn<unknown, unknown>[];
  /** Its streams ask for each input they take (a single handler's: `SessionHooks.next`). */
  abstract get [kAsksInputs](): boolean;
  /** Its name for its streams, and its list of open streams once `kWatch` asked for them (a dashboard). */
  protected abstract readonly listing: Listing;

  /** Lists this function's streams from now on, until the list's `release()`, and returns the list. */
  [kWatch](): StreamList {
    return this.listing.watch();
  }

  open(opts?: OpenOptions): Stream<I, O> {
    const { signal, label, key, cost } = resolveOpen(opts);
    const stream = this[kOpen](signal, true, undefined, key, cost);
    if (label !== undefined) tagStream(stream, { label });
    return stream;
  }

  async run(events: EventSource<I>, opts?: OpenOptions): Promise<O[]> {
    const thrown = assertSource(events);
    let options: ResolvedOpen;
    try {
      options = resolveOpen(opts);
    } catch (error) {
      // Options refused: no stream will read the source.
      if (thrown === undefined) void closeUnread(events);
      throw error;
    }
    const { signal, label, key, cost } = options;
    // (Its iterator getter threw: the source failed before a stream was opened for it.)
    if (thrown !== undefined) throw thrown.error;
    let stream: StreamKind<I, O>;
    try {
      if (signal?.aborted) throw signal.reason;
      stream = this[kOpen](signal, true, undefined, key, cost);
    } catch (error) {
      // No stream will read the source (aborted, or refused: a full `maxConcurrent`, a limiter in 'reject' mode).
      void closeUnread(events);
      throw error;
    }
    if (label !== undefined) tagStream(stream, { label });
    const out = await collectOutputs(stream, events);
    // Every output is read, so the handlers are finishing or have finished
    // (a pipe's last stages may still run their cleanup). Wait for them:
    // stats() are then exact when run() settles.
    await stream[kFinished];
    return out;
  }

  /** The same function with some settings changed (a new admission gate). */
  abstract withConfig(config: StreamConfig): FnBase<I, O>;

  sessions<K = string>(config?: SessionsConfig): StreamSessions<K, I, O> {
    let streamConfig: StreamConfig | undefined = config;
    let traceKeys = false;
    let debounce: Debounce | undefined;
    let singleton: Singleton | undefined;
    if (config !== undefined)
      readingOptions('config', () => {
        assertOptionsObject(config, 'config', '{ idleTimeout: 60_000 }');
        checkKeys(config, ['traceKeys', 'debounce', 'singleton']);
        if ('singleton' in config) {
          const { singleton: given, ...rest } = config;
          if (given !== undefined && given !== 'skip' && given !== 'replace' && given !== 'latest') {
            throw invalidValue(`The "singleton" option must be 'skip', 'replace' or 'latest'. Received ${describe(given)}`);
          }
          singleton = given;
          config = rest;
          streamConfig = Object.keys(rest).length === 0 ? undefined : rest;
        }
        if ('debounce' in config) {
          const { debounce: given, ...rest } = config;
          if (given !== undefined) debounce = checkDebounce(given);
          config = rest;
          streamConfig = Object.keys(rest).length === 0 ? undefined : rest;
        }
        if ('traceKeys' in config) {
          const { traceKeys: given = false, ...rest } = config;
          if (typeof given !== 'boolean') {
            throw invalidType(`The "traceKeys" option must be a boolean. Received ${describe(given)}`);
          }
          traceKeys = given;
          // Only traceKeys given: the sessions run on this function, as without a config.
          streamConfig = Object.keys(rest).length === 0 ? undefined : rest;
        }
      });
    const fn = streamConfig === undefined ? this : this.withConfig(streamConfig);
    return new Sessions<K, I, O>(fn, (key) => fn[kOpen](undefined, true, undefined, key), traceKeys, debounce, singleton);
  }

  pipe<P, S = unknown, W = unknown>(next: StreamFn<O, P> | StreamHandler<O, P, S, W>): StreamFn<I, P> {
    // (A `next` that cannot be read, a Proxy whose trap throws, is refused as an unreadable argument.)
    return readingOptions('next', () => this.#piped(next));
  }

  #piped<P, S, W>(next: StreamFn<O, P> | StreamHandler<O, P, S, W>): StreamFn<I, P> {
    let tail: readonly SingleFn<unknown, unknown>[];
    // Not `instanceof`: a function of another copy of the module pipes too.
    if (typeof (next as { [kOpen]?: unknown } | null)?.[kOpen] === 'function') tail = (next as FnBase<O, P>).stages;
    else if (typeof next === 'function') {
      tail = [
        new SingleFn(next as StreamHandler<unknown, unknown>, {
          name: next.name || `${this.name}:stage${this.stages.length + 1}`,
          buffer: this.config.buffer,
          maxConcurrent: this.config.maxConcurrent,
        }),
      ];
    } else {
      throw invalidType(`The "next" argument must be a stream function or a handler. Received ${describe(next)}`);
    }
    return new PipedFn<I, P>([...this.stages, ...tail]);
  }
}

/** Makes the body of a stream that is not a handler generator (a task stage's), given its native core and `buffer`. */
export type BodyFactory<I, O> = (native: NativeStream, buffer: number) => StreamBody<I, O>;

/** A stream function of one stage: a handler, or a body made per stream (task stages). */
class SingleFn<I, O> extends FnBase<I, O> {
  readonly name: string;
  protected readonly listing: Listing;
  readonly config: Readonly<Required<StreamConfig>>;
  readonly #handler: StreamHandler<I, O> | { makeBody: BodyFactory<I, O>; name: string };
  readonly #native: NativeFunction;
  /** `#native`'s id, for opening streams through the per-stream entry points (`ops.openStream`). */
  readonly #id: number;
  /** Each stream holds a permit of each from its handler's start to its end (js/core/admit.ts). */
  readonly #limiters: readonly Limiter<unknown>[] | undefined;
  /** Admission and figures of its streams while they have no native state (their first turn: native-stream.ts). */
  readonly #gate: FirstTurnGate;

  constructor(
    handler: StreamHandler<I, O> | { makeBody: BodyFactory<I, O>; name: string },
    config: unknown,
    limiters?: readonly Limiter<unknown>[],
  ) {
    super();
    this.#limiters = limiters;
    if (typeof handler === 'object' && handler !== null && 'makeBody' in handler) {
      this.config = resolveConfig(config, handler.name);
      this.name = this.config.name;
      this.listing = new Listing(this.name);
      this.#handler = handler;
      this.#native = new NativeFunction(this.config.maxConcurrent);
      this.#id = this.#native.id;
      this.#gate = new FirstTurnGate(this.#native, this.config.maxConcurrent);
      return;
    }
    const fn: unknown = handler;
    if (typeof fn !== 'function') {
      throw invalidType(
        `The "handler" argument must be an async generator function (or a function returning an async iterable). Received ${describe(fn)}`,
      );
    }
    if (fn instanceof SyncGeneratorFunction) {
      throw invalidType(
        `The "handler" argument must be an async generator function (async function*), not a sync generator function`,
      );
    }
    // (Its name read once: a Proxy whose trap throws is refused as an unreadable argument.)
    const name = readingOptions('handler', () => handler.name);
    this.config = resolveConfig(config, (typeof name === 'string' && name) || 'anonymous');
    this.name = this.config.name;
    this.listing = new Listing(this.name);
    this.#handler = handler;
    this.#native = new NativeFunction(this.config.maxConcurrent);
    this.#id = this.#native.id;
    this.#gate = new FirstTurnGate(this.#native, this.config.maxConcurrent);
  }

  get stages(): readonly SingleFn<unknown, unknown>[] {
    return [this as SingleFn<unknown, unknown>];
  }

  get [kAsksInputs](): boolean {
    return typeof this.#handler === 'function';
  }

  [kOpen](
    signal: AbortSignal | undefined,
    idle: boolean,
    hooks?: SessionHooks,
    key?: unknown,
    cost?: number,
  ): HandlerStream<I, O> {
    // A generator handler's stream with no limiter nor session hooks starts with no native state (native-stream.ts).
    if (this.#limiters === undefined && hooks === undefined && typeof this.#handler === 'function') {
      if (!this.#gate.hasRoom()) throw this.#refused();
      this.#gate.open++;
      return this[kStart](-1, idle, signal);
    }
    // A full `maxConcurrent` refuses first, so a refused open spends no limiter's budget (a rate's tokens are not
    // given back). A limiter in 'reject' mode refuses next, before a slot is taken (counted as the function's
    // refusal too).
    if (this.#limiters !== undefined && !this.#gate.hasRoom()) throw this.#refused();
    let admission: Admission | undefined;
    try {
      admission =
        this.#limiters === undefined
          ? undefined
          : admitAtOpen(this.#limiters, `Cannot open a stream of "${this.name}"`, key, cost);
    } catch (error) {
      if (isRefusal(error)) this.#native.refuse();
      throw error;
    }
    const handle = this[kAdmit](idle);
    if (handle < 0) {
      // (Its key or cost function opened a stream meanwhile: the permits were never used.)
      if (admission !== undefined) refundAll(admission.permits);
      throw new StreamLimitError(`Cannot open a stream of "${this.name}": ${this.config.maxConcurrent} are open (maxConcurrent)`);
    }
    return this[kStart](handle, idle, signal, undefined, hooks, undefined, admission);
  }

  /** An open refused at `maxConcurrent` by the first-turn gate: counted as the native gate counts its refusals. */
  #refused(): StreamLimitError {
    this.#native.refuse();
    return new StreamLimitError(`Cannot open a stream of "${this.name}": ${this.config.maxConcurrent} are open (maxConcurrent)`);
  }

  /**
   * Takes a slot: the new stream's native handle, or -1 at the limit. With
   * `tally`, the stream's input (`share` 1) or outputs (2) count in it too.
   */
  [kAdmit](idle: boolean, tally?: NativeFunction, share?: number, over?: StageOverrides): number {
    const idleMs = idle ? (over?.idleTimeout ?? this.config.idleTimeout) : 0;
    const buffer = over?.buffer ?? this.config.buffer;
    const gate = this.#gate;
    // Streams without native state hold places the native gate does not see.
    if (gate.open > 0 && !gate.hasRoom()) {
      this.#native.refuse();
      return -1;
    }
    const handle =
      tally === undefined ? ops.openStream(this.#id, buffer, idleMs) : this.#native.open(buffer, idleMs, tally, share);
    if (handle >= 0) gate.nativeOpen++;
    return handle;
  }

  /** Starts the handler of a stream admitted by `kAdmit`. */
  [kStart](
    handle: number,
    idle: boolean,
    signal: AbortSignal | undefined,
    over?: StageOverrides,
    hooks?: SessionHooks,
    pipeTrace?: StreamTrace,
    admitted?: Admission,
  ): HandlerStream<I, O> {
    const idleMs = idle ? (over?.idleTimeout ?? this.config.idleTimeout) : 0;
    const idleOn = idleMs > 0;
    const buffer = over?.buffer ?? this.config.buffer;
    const native = handle >= 0 ? new NativeStream(handle) : new NativeStream(-1, this.#gate, buffer, idleMs);
    let handler = this.#handler;
    // A Redis session's handler may be run through its hooks (a worker's debounce), inside any admission wait.
    if (typeof handler === 'function' && hooks?.wrapHandler !== undefined) handler = hooks.wrapHandler(handler);
    // With limiters, the handler first waits for the permits not taken at open (a pipe's stage: all of them).
    let admission: Admission | undefined;
    if (this.#limiters !== undefined && typeof handler === 'function') {
      admission = admitted ?? { permits: [], stream: undefined, waiting: false, gate: undefined };
      handler = admittedHandler(handler, this.#limiters, admission, this.name);
    }
    const body = typeof handler === 'function' ? handler : handler.makeBody(native, buffer);
    const trace = streamTrace(this.name, typeof body === 'function' ? 'generator' : body.kind, pipeTrace);
    const sessionHooks = typeof handler === 'function' ? hooks : undefined;
    const stream = new HandlerStream<I, O>(native, this.listing, buffer, idleOn, signal);
    stream[kBegin](body, sessionHooks, trace);
    if (admission !== undefined) {
      admission.stream = stream as HandlerStream<unknown, unknown>;
      if (admission.waiting) stream[kHoldIdle](true);
    }
    this.listing.list?.add(stream);
    return stream;
  }

  stats(): StreamFnStats {
    const gate = this.#gate;
    if (gate.listed) reportDone();
    const stats = this.#native.stats();
    gate.nativeOpen = stats.open;
    // Streams still without native state are open, and were opened.
    stats.open += gate.open;
    stats.opened += gate.open;
    return stats;
  }

  [kTotals](boundsUs: number[]): Totals {
    settleFirstTurns();
    reportHandoffs();
    return this.#native.totals(boundsUs);
  }

  withConfig(config: StreamConfig): SingleFn<I, O> {
    return new SingleFn(this.#handler, { ...this.config, ...checkedOverrides(config) }, this.#limiters);
  }
}

/** A stage's hooks in a pipe run by `redisWorker`: nothing to restore, and no durable call. */
const PIPE_STAGE_HOOKS: SessionHooks = {
  restored: undefined,
  entry: undefined,
  checkpoint() {
    throw pipeSessionCallError('checkpoint');
  },
  wakeAt() {
    throw pipeSessionCallError('wakeAt');
  },
  cancelTimer() {
    throw pipeSessionCallError('cancelTimer');
  },
  run() {
    return Promise.reject(pipeSessionCallError('run'));
  },
  stream() {
    throw pipeSessionCallError('stream');
  },
};

/** A pipe's own settings for its first stage's streams (the stage function itself is unchanged). */
type StageOverrides = { buffer?: number; idleTimeout?: number };

/** Overrides for `withConfig`: an options object (checked fully when merged). */
function checkedOverrides(config: unknown): StreamConfig {
  return readingOptions('config', () => {
    assertOptionsObject(config, 'config', '{ buffer: 64 }');
    // (Its own options, each read once, here: the spreads after read this copy.)
    return { ...config };
  });
}

/** Stages run in sequence: `a.pipe(b).pipe(c)`. */
class PipedFn<I, O> extends FnBase<I, O> {
  readonly name: string;
  protected readonly listing: Listing;
  readonly config: Readonly<Required<StreamConfig>>;
  readonly stages: readonly SingleFn<unknown, unknown>[];
  /**
   * The pipe's own gate and counters: each stream holds one of its permits,
   * given back with the pipe's outcome (a pipe collected before that counts
   * as cancelled). Also the tally of the pipe's own events in (its first
   * stages'), outputs (its last stages') and queue waits, whatever else the
   * stage functions serve. It sets no limit of its own: the stages' limits
   * are the pipe's, checked at open. A limit here would refuse an open made
   * right after the consumer read a stream to its end, in the few promise
   * jobs between its last stage finishing and its outcome being counted.
   */
  readonly #native: NativeFunction;
  /** Permits one stream takes of each stage function (a function may be a stage twice). */
  readonly #stagePermits = new Map<SingleFn<unknown, unknown>, number>();

  /**
   * Settings given to this pipe (`withConfig`, `sessions(config)`): `buffer` and `idleTimeout` of its first
   * stage's streams, a limit of its own, and its name. The stage functions stay as they are, so their stats,
   * metrics and limits count these streams too.
   */
  readonly #settings: StreamConfig;

  get [kAsksInputs](): boolean {
    return false;
  }

  constructor(stages: readonly SingleFn<unknown, unknown>[], settings: StreamConfig = {}) {
    super();
    this.stages = stages;
    this.#settings = settings;
    const head = stages[0];
    this.name = settings.name ?? stages.map((s) => s.name).join('|');
    this.listing = new Listing(this.name);
    const limit = Math.min(...stages.map((s) => s.config.maxConcurrent));
    this.config = Object.freeze({
      buffer: settings.buffer ?? head.config.buffer,
      idleTimeout: settings.idleTimeout ?? head.config.idleTimeout,
      maxConcurrent: settings.maxConcurrent === undefined ? limit : Math.min(limit, settings.maxConcurrent),
      name: this.name,
    });
    for (const stage of stages) this.#stagePermits.set(stage, (this.#stagePermits.get(stage) ?? 0) + 1);
    this.#native = new NativeFunction(NO_LIMIT);
  }

  /**
   * `hooks`: the pipe is a session's (the Redis tier): its stages have no durable side, and their handlers'
   * `ctx.checkpoint`, `ctx.wakeAt` and `ctx.cancelTimer` throw rather than do nothing durable (`PIPE_STAGE_HOOKS`).
   */
  [kOpen](signal: AbortSignal | undefined, idle: boolean, hooks?: SessionHooks, key?: unknown, cost?: number): PipedStream<I, O> {
    // Every stage must have room before any handler starts: a refused open
    // runs nothing and leaves every stage's counters as they were. (Stage
    // functions live on this thread: nothing can take a slot in between.)
    // A limit of the pipe's own (settings): its streams open now.
    const own = this.#settings.maxConcurrent;
    if (own !== undefined && this.#native.stats().open >= own) {
      this.#native.refuse();
      throw new StreamLimitError(`Cannot open a stream of "${this.name}": ${own} are open (maxConcurrent)`);
    }
    for (const [stage, n] of this.#stagePermits) {
      const open = stage.stats().open;
      if (open + n > stage.config.maxConcurrent) {
        this.#native.refuse();
        throw new StreamLimitError(
          `Cannot open a stream of "${this.name}": its stage "${stage.name}" has ${open} of ${stage.config.maxConcurrent} open (maxConcurrent)`,
        );
      }
    }
    // Never null: the gate has no limit.
    const permit = this.#native.admitGroup() as GroupPermit;
    const last = this.stages.length - 1;
    const over = this.#settings;
    const handles = this.stages.map((stage, i) =>
      stage[kAdmit](
        idle && i === 0,
        this.#native,
        (i === 0 ? SHARE_INPUT : 0) | (i === last ? SHARE_OUTPUT : 0),
        i === 0 ? over : undefined,
      ),
    );
    // Traced, the pipe has a span of its own, the parent of its stages' spans.
    const trace = streamTrace(this.name, 'pipe');
    const opened = this.stages.map((stage, i) =>
      stage[kStart](
        handles[i],
        idle && i === 0,
        undefined,
        i === 0 ? over : undefined,
        hooks === undefined ? undefined : PIPE_STAGE_HOOKS,
        trace,
        // A session's pipe (or one opened with a key or a cost): each stage's limiters get them.
        key === undefined && cost === undefined
          ? undefined
          : { permits: [], stream: undefined, waiting: false, gate: undefined, key, cost },
      ),
    );
    // A pipe that can never end may be collected with its stages (each stage
    // then counts itself cancelled); its permit, collected with it, counts
    // the pipe the same way.
    const stream = new PipedStream<I, O>(
      opened,
      signal,
      (outcome, error) => {
        trace?.end(outcome, undefined, error);
        permit.release(outcome as Outcome);
      },
      trace,
    );
    this.listing.list?.add(stream);
    return stream;
  }

  stats(): StreamFnStats {
    return this.#native.stats();
  }

  /** This pipe's own streams: events into their first stage, outputs of their last, and the first stage's queue waits. */
  [kTotals](boundsUs: number[]): Totals {
    reportHandoffs();
    return this.#native.totals(boundsUs);
  }

  /**
   * The same stages with settings of the pipe's own: `buffer` and `idleTimeout` of its first stage's streams
   * (the pipe's input and idle clock), a `maxConcurrent` of its own (the stages' limits still apply), and its
   * `name`. The stage functions are not copied: their stats, metrics and limits count these streams.
   */
  withConfig(config: StreamConfig): PipedFn<I, O> {
    const given = checkedOverrides(config);
    // Checked as a whole config would be; only the settings given are kept.
    const resolved = resolveConfig({ ...this.config, ...given }, this.name);
    const settings: StreamConfig = { ...this.#settings };
    for (const key of Object.keys(given) as (keyof StreamConfig)[]) (settings as Record<string, unknown>)[key] = resolved[key];
    return new PipedFn<I, O>(this.stages, settings);
  }
}

/**
 * Makes a stream function: `handler` runs once per stream, over that stream's
 * events, and what it yields are the stream's outputs.
 */
export function streamFn<I, O, S = unknown, W = unknown>(
  handler: StreamHandler<I, O, S, W> & WakeUpsAreEvents<I, W>,
  config?: StreamFnConfig,
): StreamFn<I, O> {
  // (S and W type the handler's own context only; the function runs it with whatever state and payloads it made.)
  let limiters: readonly Limiter<unknown>[] | undefined;
  if (config !== undefined) {
    config = readingOptions('config', () => {
      const given = config as StreamFnConfig;
      assertOptionsObject(given, 'config', '{ buffer: 64 }');
      checkKeys(given, ['limiter']);
      if (!Object.hasOwn(given, 'limiter')) return given;
      const { limiter, ...rest } = given;
      limiters = checkLimiters(limiter, 'streamFn()');
      return rest;
    });
  }
  // (A handler that cannot be read, a Proxy whose trap throws, is refused as an unreadable argument.)
  return readingOptions('handler', () => new SingleFn(handler as StreamHandler<I, O>, config, limiters));
}

/** A one-stage stream function whose streams run a body made per stream (see `BodyFactory`). */
export function singleStage<I, O>(makeBody: BodyFactory<I, O>, config: StreamConfig, name: string): StreamFn<I, O> {
  return new SingleFn<I, O>({ makeBody, name }, config);
}
