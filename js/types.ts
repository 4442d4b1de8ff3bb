import type { Duplex } from 'node:stream';
import type { Limiter } from './limits/types';

/** What a stream function's limiters' `key`/`cost` get at a stream's admission. */
export interface AdmissionItem {
  /** The stream's id (`''` when asked at `open()`, before the stream exists). */
  id: string;
  /**
   * The session's key, for a stream opened by `fn.sessions()` (for each stage of a pipe's session too), or the
   * `key` given to `open()`/`run()` (a string); absent otherwise. With it, a limiter can keep a limit per key
   * (`key: ({ key }) => String(key)`) or share its grants fairly across tenants
   * (`fairness: { by: ({ key }) => tenantOf(key) }`).
   */
  key?: unknown;
  /**
   * The `cost` given to `open()`/`run()` (a whole number), for a limiter's `cost` function
   * (`cost: ({ cost = 1 }) => cost`); absent otherwise (sessions, task stages).
   */
  cost?: number;
}

/** Settings of `fn.sessions(config)`: a stream function's settings for the sessions' streams, and `traceKeys`. */
export interface SessionsConfig extends StreamConfig {
  /**
   * Traced (OpenTelemetry, docs/tracing.md): each session's span carries its key as `velo.session.key`.
   * Default false: keys (a user id, an email) may be personal data, and are kept out of traces unless allowed.
   */
  traceKeys?: boolean | undefined;
  /**
   * Debounce per key (docs/sessions.md#debounce): events for a key within `wait` ms of the previous one collapse
   * to one: the last, after `wait` ms of quiet (`edge: 'trailing'`, the default; at most `maxDelay` ms after the
   * first it holds), or the first, at once (`edge: 'leading'`; the rest of the quiet period dropped).
   */
  debounce?: DebounceConfig | undefined;
  /**
   * One session per key at a time, and what a send to a key whose session is live does (docs/sessions.md#singleton):
   * 'skip' drops it (counted in `dropped`); 'replace' cancels the live session and opens the next with it;
   * 'latest' keeps it as the one pending event that opens the key's next session (a later send replaces it).
   * Every send while a session is live counts: a session gets one event (for handlers that take one job).
   */
  singleton?: 'skip' | 'replace' | 'latest' | undefined;
}

/** `SessionsConfig.debounce`. */
export interface DebounceConfig {
  /** Quiet period, ms (1 to 2^31 - 1). */
  wait: number;
  /** 'trailing' (default): the last event, after `wait` ms of quiet. 'leading': the first, at once. */
  edge?: 'trailing' | 'leading' | undefined;
  /**
   * Trailing: a held event is delivered at most this many ms after the first event it collapses, however often
   * events come. Leading: an event this many ms after the last delivered one is delivered. From `wait`; default none.
   */
  maxDelay?: number | undefined;
}

/** Settings of a stream function. Every field is optional; `streamFn` checks them at the call. */
export interface StreamConfig {
  /** Events held per direction (input buffer and output buffer). Default 256. */
  buffer?: number | undefined;
  /** Milliseconds without a send after which the input ends as by `end()`. 0 = never. Default 30 000. */
  idleTimeout?: number | undefined;
  /** Streams of this function open at once; `open()` beyond it throws `StreamLimitError`. Default 10 000. */
  maxConcurrent?: number | undefined;
  /** A name for stats and errors. Default: the handler's name. */
  name?: string | undefined;
}

/** `streamFn`'s settings: a stream function's, and the limiters its streams are admitted by. */
export interface StreamFnConfig extends StreamConfig {
  /**
   * Each stream holds a permit of this limiter (or of each, in order) from its handler's start to its end
   * (docs/flow-control.md). Throttling: `open()` returns at once, the stream takes sends into its buffer, and its
   * handler starts once admitted (its idle clock held meanwhile). 'reject' mode: `open()` throws
   * ERR_VELO_RATE_LIMITED when there is no permit now. `key`/`cost` get `{ id }` (the stream's id; empty at open).
   */
  limiter?: Limiter<AdmissionItem> | readonly Limiter<AdmissionItem>[] | undefined;
}

/**
 * What a handler gets besides its events. `S` is the state its checkpoints record (`ctx.checkpoint(state)`,
 * `ctx.restored`), `W` the payload of its timers' wake-ups (`ctx.wakeAt(time, payload)`), which arrive among its
 * events: annotate the context (`ctx: StreamContext<Cart, Timeout>`) and `streamFn` checks that the events' type
 * includes `W`. Both default to `unknown`, as before they existed.
 *
 * `checkpoint` and `wakeAt` are methods, so a handler whose context is annotated `StreamContext` (unknown state and
 * payload) still fits any function; the calls themselves are checked against `S` and `W`.
 */
export interface StreamContext<S = unknown, W = unknown> {
  /** The stream's id (the same as `stream.id`). */
  readonly id: string;
  /** Aborts with the cancel reason when the stream is cancelled. */
  readonly signal: AbortSignal;
  /**
   * The state this session's last committed checkpoint recorded (decoded by the function's codec), or undefined
   * when there is none. Only a `redisWorker` session restored after a takeover has one; in-process streams and
   * sessions always see undefined. Read it before the first event: the events that follow are those after the
   * checkpoint.
   */
  readonly restored: S | undefined;
  /**
   * Records `state` as this session's checkpoint. On `redisWorker` it is committed to Redis in the same fenced
   * commit as the outputs yielded before the call, and the events taken before it are then acked (and may be
   * trimmed): a new owner starts a fresh instance with `ctx.restored` set to it and replays only later events.
   * It is encoded at the call by the function's codec: a state the codec cannot encode throws `ERR_VELO_ENCODE`,
   * one over `maxCheckpointBytes` throws `ERR_VELO_CHECKPOINT_TOO_LARGE`, and the session fails (its error is its
   * last output, after those yielded before the call), nothing of it written. In-process streams and sessions
   * have nothing to restore from: there it is a no-op. A stage of a pipe run by `redisWorker` has none either:
   * there it throws `ERR_VELO_PIPE_SESSION_CALL` (a lost checkpoint would go unnoticed).
   */
  checkpoint(state: S): void;
  /**
   * Asks for `payload` to be delivered into this stream's input as an event once the clock reaches `time` (ms
   * since the Unix epoch), unless the input has ended by then. On `redisWorker` the clock is Redis' (the time in
   * entry ids): the owner writes the wake-up into the partition's input when due, so a replay finds it at the same
   * place, once per timer of the session, also across a takeover. Compute `time` from `ctx.entry.time` (the log's
   * time of the input being handled), not from `Date.now()` or a producer's timestamp, so that a replay makes the
   * same timer and producers' clocks do not matter. A pending timer keeps the session open (no idle end) until it
   * fires; a `time` after the session's age end (`maxSessionAge`) throws `ERR_VELO_TIMER_PAST_AGE`, and one timer
   * too many `ERR_VELO_TOO_MANY_TIMERS`, each making no timer.
   *
   * With `options.key`, the timer replaces the pending timer of that key, which then never fires (and no longer
   * counts toward `maxSessionTimers`); `cancelTimer(key)` removes it. In-process it is a timer of this process
   * (cleared when the handler finishes; keys work the same). Throws `ERR_INVALID_ARG_TYPE` for a `time` that is
   * not a finite number or a key that is not a string, `ERR_INVALID_STATE` in a `workerFn` handler (timers run on
   * the main thread only), and `ERR_VELO_PIPE_SESSION_CALL` in a stage of a pipe run by `redisWorker`.
   */
  wakeAt(time: number, payload: W, options?: WakeAtOptions): void;
  /**
   * Cancels the pending timer made with `wakeAt(..., { key })`: it never fires. True if one was pending, false if
   * none was (never made, fired already, or cancelled). Same errors as `wakeAt` for the context it is called in.
   */
  cancelTimer(key: string): boolean;
  /**
   * A journaled call: runs `body` and returns its result; on a distributed worker the result (or the error it threw)
   * is recorded in the commit that carries the session's next outputs, and a replay of the session (after a takeover,
   * a crash, a migration) gets the recorded result back at this place instead of calling again. Use it for every call
   * whose answer may differ from one run to the next: a model, a price, an id, the clock. The body runs at least
   * once: a crash between the call and the commit of its result runs it again, with the same `key` (`<sid>/<n>`, the
   * session and the call's place), to pass to the service as an idempotency key. `name` says what the call is: a
   * replay that asks another name at a recorded place throws `JournalDivergedError` (`ERR_VELO_JOURNAL_DIVERGED`).
   * The result is encoded by the function's codec (within `maxEventBytes`). In-process (no log) it calls `body`.
   */
  run<T>(name: string, body: (call: JournalCall) => T | PromiseLike<T>): Promise<T>;
  /**
   * A journaled stream (a model's streamed answer): iterates what `factory` returns, recording each chunk as it is
   * taken and the stream's end. A replay gets the recorded chunks back, then, if the stream had not ended, calls
   * `factory` with them (`chunks`): it continues the same answer after them (a model continues from a prefix),
   * instead of starting another. A factory that cannot continue can yield a chunk of its own that says the answer
   * restarts. Names and keys as `run`. In-process it iterates `factory({ chunks: [] })`.
   */
  stream<C>(name: string, factory: (call: JournalStreamCall<C>) => AsyncIterable<C> | Iterable<C>): AsyncIterable<C>;
  /**
   * The input the handler took last, as the log has it: on `redisWorker`, for an event its entry id and the time
   * in it (Redis' clock, ms); for a timer's wake-up `{ id: 't<n>', time }`, `n` the timer's number in the session
   * (1, 2, ... in the order made) and `time` its due time. The same on every replay and after a takeover. It is
   * undefined before the handler takes its first input (in a session restored from a checkpoint too: until it takes
   * one after the checkpoint), and always in-process (streams, sessions, workerFn and stages of a pipe: there is
   * no log).
   */
  readonly entry: EntryInfo | undefined;
}

/** What the body of a journaled call (`ctx.run`) gets. */
export interface JournalCall {
  /** `<sid>/<n>`: the session and the call's place in it, the same when a replay runs the body again. */
  readonly key: string;
  /** The handler's `ctx.signal`. */
  readonly signal: AbortSignal;
}

/** What the factory of a journaled stream (`ctx.stream`) gets. */
export interface JournalStreamCall<C = unknown> extends JournalCall {
  /** The chunks recorded before (a replay's): continue after them. Empty on the first call. */
  readonly chunks: readonly C[];
}

/** `ctx.wakeAt`'s options. */
export interface WakeAtOptions {
  /** The timer's key in its session: a new timer of the same key replaces it, `ctx.cancelTimer(key)` cancels it. */
  key?: string | undefined;
}

/** `ctx.entry`: where the input the handler took last is in the log. */
export interface EntryInfo {
  /** The entry's id (`<ms>-<seq>`), or `t<n>` for a timer's wake-up (the session's `n`-th timer). */
  readonly id: string;
  /** Redis' time of the entry (the ms of its id), or the timer's due time. */
  readonly time: number;
}

/** The handler: one instance per stream, an async generator over that stream's events (`S`, `W`: see `StreamContext`). */
export type StreamHandler<I, O, S = unknown, W = unknown> = (
  events: AsyncIterable<I>,
  ctx: StreamContext<S, W>,
) => AsyncIterable<O>;

/**
 * A handler's wake-up payloads `W` come back as its events, so they must be of its event type `I`: `unknown` when
 * they are (or when `W` was not given), else an object type no handler has, whose one property names the mistake
 * in the compiler's message.
 */
// (W is written `[W][W extends unknown ? 0 : never]`, which is W in a form the compiler does not infer W from:
// otherwise a handler without a context would be taken for W itself. NoInfer does the same from TypeScript 5.4 on.)
export type WakeUpsAreEvents<I, W> = unknown extends [W][W extends unknown ? 0 : never]
  ? unknown
  : [[W][W extends unknown ? 0 : never]] extends [I]
    ? unknown
    : {
        /** No handler has it: the compiler's message names the mistake. */
        'wake-up payloads (W of StreamContext<S, W>) arrive as events: the events type must include them': never;
      };

/** The lifecycle state of a stream. */
export type StreamState = 'open' | 'ending' | 'done' | 'failed' | 'cancelled';

/** A live snapshot of one stream's counters. */
export interface StreamMetrics {
  /** Events accepted into the input buffer. */
  eventsIn: number;
  /** Outputs the handler yielded. */
  eventsOut: number;
  /** Events in the input buffer now (never more than `buffer`; waiting sends are not counted). */
  bufferedIn: number;
  /** Outputs in the output buffer now (never more than `buffer`). */
  bufferedOut: number;
  /** Sends that found the input buffer full and had to wait. */
  backpressureWaits: number;
  /** When the stream opened, ms since the Unix epoch. */
  openedAt: number;
  /** Lifetime so far, or until the handler finished, in ms. */
  durationMs: number;
  /** Median time an event waited, from its send until the handler took it (a run of code's takes spread evenly over it: see docs/semantics.md), µs. */
  queueWaitP50Us: number;
  /** 99th percentile of the same, µs. */
  queueWaitP99Us: number;
  /** Task and batch stages: calls in flight now (running, or waiting for a retry). */
  inFlight?: number;
  /** Task and batch stages: retries scheduled so far. */
  retries?: number;
  /** Task and batch stages: items (or batches) dropped by `onError: 'skip'`. */
  skipped?: number;
  /** Task and batch stages: median duration of a call (one attempt), µs. */
  taskP50Us?: number;
  /** Task and batch stages: 99th percentile of the same, µs. */
  taskP99Us?: number;
}

/** Counters of one stream function. */
export interface StreamFnStats {
  /** Streams of the function open now. */
  open: number;
  /** Streams opened so far. */
  opened: number;
  /**
   * Streams whose handler returned. Counted when it returns: a stream cancelled later, before its reader took every
   * output, counts here too (its `state` is `'cancelled'`).
   */
  completed: number;
  /** Streams whose handler threw (a stream fed by a source that stalled included). */
  failed: number;
  /** Streams cancelled before their handler finished (`cancel()`, `break`, an aborted signal, collected while open). */
  cancelled: number;
  /** Opens refused: at `maxConcurrent`, or by a `limiter` in `'reject'` mode. */
  rejected: number;
}

/** Options of `open()` and `run()`. */
export interface OpenOptions {
  /** Aborting it cancels the stream with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /**
   * A name of your choosing for this stream (an order id, a connection), shown next to its id by
   * `velo-stream/dashboard` (as text, its first 200 characters). Not used otherwise. A non-string is
   * `ERR_INVALID_ARG_TYPE`.
   */
  label?: string | undefined;
  /**
   * What the function's limiters key this stream by (a tenant id, say): its admission item's `key`
   * (`AdmissionItem`), for a limiter's `key`, `fairness.by` and `cost` functions. A non-empty string:
   * another type is `ERR_INVALID_ARG_TYPE`, `''` is `ERR_INVALID_ARG_VALUE`. Not used otherwise.
   */
  key?: string | undefined;
  /**
   * What this stream costs the function's limiters (an LLM call's estimated tokens, say): its admission item's
   * `cost`, for a limiter's `cost` function (`cost: ({ cost = 1 }) => cost`). A whole number from 0 to
   * 2^32 - 1: anything else (negative, fractional, NaN, Infinity, not a number) is `ERR_OUT_OF_RANGE`. Not used
   * otherwise.
   */
  cost?: number | undefined;
}

/**
 * Events a stream accepts in bulk: any sync or async iterable (arrays, generators, Node `Readable`s). Not a string,
 * though it iterates its characters: `run('abc')` is refused (`ERR_INVALID_ARG_TYPE`), and the type says so.
 */
export type EventSource<I> = (Iterable<I> | AsyncIterable<I>) & {
  /** Never set: what keeps a string (which has `charAt`) from being an `EventSource`. */
  readonly charAt?: never;
};

/**
 * A function `feed()` calls once, at the call, with a signal of the feed's own, to make its source: the signal
 * aborts when the stream stops taking events from the source before its end (the source stalled past
 * `idleTimeout`, the stream was cancelled, the client left, the handler returned), never after the source ended.
 * Pass it to the upstream call the source reads (`fetch(url, { signal })`): an async generator parked on an
 * `await` runs its `return()` only when that await settles.
 */
export type SourceFactory<I> = (signal: AbortSignal) => EventSource<I>;

/** What `feed()` returns: the outputs, and `cancel()` to stop the stream early (HTTP helpers call it when the client leaves). */
export interface FeedOutputs<O> extends AsyncIterable<O> {
  /**
   * Cancels the stream and ends this iteration at once; resolves when the handler has returned. A feed refused (or
   * not started) while another feed reads the stream only ends itself: the stream and both sources go on.
   */
  cancel(reason?: unknown): Promise<void>;
}

/**
 * One running instance of a stream function. Iterating it (`for await`)
 * reads its outputs; leaving the loop early (`break`, a throw) cancels it.
 * `await using` cancels it when the scope exits.
 */
export interface Stream<I, O> extends AsyncIterable<O>, AsyncDisposable {
  /** Unique in the process (`s1`, `s2`, ...); the handler sees it as `ctx.id`. */
  readonly id: string;
  /** `open`, `ending` (after `end()`, until every output is read), `done`, `failed` or `cancelled`. */
  readonly state: StreamState;
  /** Live figures of this stream (events in and out, buffers, waits, queue-wait percentiles). */
  readonly metrics: StreamMetrics;
  /**
   * Sends one event. Resolves once the event is in the input buffer; while
   * the buffer is full it waits (backpressure), and waiting sends go in in
   * the order they were made.
   * @throws {StreamClosedError} (rejects, `ERR_VELO_STREAM_CLOSED`) once the input is closed: after `end()`, an idle
   * timeout or `cancel()`, or when the handler stopped reading; `cause` is the handler's error if it threw, or the
   * cancel reason. A send waiting when the stream closes rejects the same way.
   */
  readonly send: (event: I) => Promise<void>;
  /** Ends the input (sync, idempotent). The handler finishes after the buffered events; the outputs stay readable. */
  end(): void;
  /**
   * The next output.
   * @throws {StreamClosedError} (rejects) when no output is left, or the stream was cancelled.
   * @throws the handler's own error (rejects), once the outputs it yielded before it threw are read.
   */
  recv(): Promise<O>;
  /**
   * Sends every event of `events` with backpressure, then `end()`, yielding outputs as they come. A source error
   * or an abort of the open signal cancels the stream, and the iteration rejects with it. A source that gives no
   * event for `idleTimeout` while the stream waits on it is closed, and the stream fails with
   * `SourceStalledError` (`ERR_VELO_SOURCE_STALLED`) after the outputs so far; a source that ends is a clean end.
   * `cancel()` on the result, or leaving its loop early, cancels the stream and closes the source. Given a
   * function (`SourceFactory`), calls it at once with a signal that aborts when the source is closed before its end.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` at the call when `events` is not an iterable (strings are refused),
   * or is a function that returns none.
   */
  readonly feed: (events: EventSource<I> | SourceFactory<I>) => FeedOutputs<O>;
  /**
   * Stops the stream now: buffered events and outputs are dropped, waiting sends and reads reject with
   * `StreamClosedError` (`cause`: `reason`), the handler's `ctx.signal` aborts and its loop ends (its `finally`
   * runs). Resolves when the handler has returned. Idempotent; a no-op on a stream that has finished.
   */
  cancel(reason?: unknown): Promise<void>;
  /** The stream as an object-mode Node `Duplex` (for `stream.pipeline`), backpressure and errors both ways. */
  duplex(): Duplex;
}

/** One item of the merged output of `sessions()`: a session's output, or the error its handler threw (tell them apart with `'error' in item`). */
export type SessionItem<K, O> =
  | {
      /** The session's key. */
      key: K;
      /** An output of the key's session. */
      value: O;
    }
  | {
      /** The session's key. */
      key: K;
      /** Why the key's session failed (its handler's error, or a limit): its last item. */
      error: unknown;
    };

/**
 * One stream per key, opened on first use; see `StreamFn.sessions`. Its
 * merged output (`for await`) has one reader at a time: another iterator
 * while the first still reads throws `TypeError` `ERR_INVALID_STATE`.
 */
export interface StreamSessions<K, I, O> extends AsyncIterable<SessionItem<K, O>> {
  /** The function the sessions' streams belong to (with the sessions' config): its `stats()`, or for metrics. */
  readonly fn: StreamFn<I, O>;
  /** Keys with a live session now. */
  readonly size: number;
  /**
   * Sends to the key's session, opening it on first use. A key never has two
   * live sessions: after its session ended (`end(key)`, idle timeout, a
   * failure), a send waits until that session's handler has finished, then
   * opens the next one; its outputs follow all of the previous session's.
   */
  readonly send: (key: K, event: I) => Promise<void>;
  /** The key's live session, or undefined. */
  readonly get: (key: K) => Stream<I, O> | undefined;
  /** Events `debounce` or `singleton` dropped since creation: collapsed into a later one (trailing), or sent in a quiet period (leading). */
  readonly dropped: number;
  /** Trailing debounced events held now, each delivered after its key's quiet period (or at `end(key)`, `close()`). */
  readonly held: number;
  /** Ends the key's session; while a send waits for the key's next session, ends that one once the waiting sends are in. */
  readonly end: (key: K) => void;
  /**
   * Ends every session and refuses new sends (they reject with `StreamClosedError`). Resolves once every session
   * has finished and its outputs went into the merged output, so keep reading it (or leave it, which cancels the
   * rest); the merged iteration then ends.
   */
  close(): Promise<void>;
}

/** A stream function: the handler plus its config, limits and counters. */
export interface StreamFn<I, O> {
  /** `config.name`, or the handler's name (`anonymous` without one): the label of its metrics. */
  readonly name: string;
  /** Its settings, defaults filled in (none undefined). */
  readonly config: { readonly [K in keyof StreamConfig]-?: Exclude<StreamConfig[K], undefined> };
  /**
   * Opens a stream, sends all of `events` with backpressure, ends it, and collects every output. Resolves once
   * the handler (every stage's, for a pipe) has finished, so `stats()` count the stream by then.
   * @throws {StreamLimitError} (rejects, `ERR_VELO_STREAM_LIMIT`) when `maxConcurrent` streams are open.
   * @throws the handler's error, the source's error, or the abort reason of `opts.signal` (rejects); the stream
   * is cancelled then.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a non-iterable source or bad options.
   */
  readonly run: (events: EventSource<I>, opts?: OpenOptions) => Promise<O[]>;
  /**
   * Opens a live stream; its handler starts at once. Aborting `opts.signal` cancels it with the signal's reason.
   * @throws {StreamLimitError} `ERR_VELO_STREAM_LIMIT` when `maxConcurrent` streams of this function are open.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for bad options.
   */
  open(opts?: OpenOptions): Stream<I, O>;
  /**
   * This function's outputs feed `next`: one instance per stage per stream, linked with backpressure both ways.
   * The pipe is a stream function of its own (its own name, stats and metrics); its streams open only when every
   * stage has room, and a stage's error reaches the consumer after the outputs made before it.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `next` is neither a stream function nor a handler.
   */
  readonly pipe: <P, S = unknown, W = unknown>(
    next: StreamFn<O, P> | (StreamHandler<O, P, S, W> & WakeUpsAreEvents<O, W>),
  ) => StreamFn<I, P>;
  /** One stream per key (a user, a device), opened on first send, ended by its idle timeout; `config` overrides this function's. */
  sessions<K = string>(config?: SessionsConfig): StreamSessions<K, I, O>;
  /** Counters of this function's streams (a pipe's: of the pipe's own streams, whatever else its stages serve). */
  stats(): StreamFnStats;
}

/** How a task or batch stage retries a call that threw or rejected. */
export interface RetryConfig {
  /** Attempts per item in all, from 1 (the default: no retry). */
  attempts?: number | undefined;
  /** Wait before the first retry, ms (default 100). */
  delay?: number | undefined;
  /** Each further wait is this many times the one before (default 2). */
  factor?: number | undefined;
  /** No wait is longer than this, ms (default 30,000). */
  maxDelay?: number | undefined;
}

/** Settings of a `task()` stage. */
export interface TaskConfig<I = unknown, O = unknown> extends StreamConfig {
  /** Calls in flight per stream at most (default 16). */
  concurrency?: number | undefined;
  /** Outputs in input order (the default), or as calls complete (`false`). */
  ordered?: boolean | undefined;
  /** Retries of a failed call: `attempts` (default 1: none), then `delay` ms (100) growing by `factor` (2) up to `maxDelay` (30 s). */
  retry?: RetryConfig | undefined;
  /**
   * After the last attempt failed: `'fail'` (the default) fails the stream with the error, `'skip'` drops the item,
   * and a function's result replaces the output (`undefined` drops it; a throw fails the stream).
   */
  onError?: 'fail' | 'skip' | ((error: unknown, item: I, ctx: TaskContext) => O | undefined | Promise<O | undefined>) | undefined;
  /**
   * Each call (each retry attempt) waits for a permit of this limiter, or of each of these in order, before it
   * starts, and gives them back when it settles (docs/flow-control.md). Its `key`/`cost` get the call's item (a
   * batch stage's: the batch's array). A refusal (`mode: 'reject'`, a full line) fails the attempt.
   */
  limiter?: Limiter<I> | readonly Limiter<I>[] | undefined;
}

/** Settings of a `batch()` stage. */
export interface BatchConfig<I = unknown, O = unknown> extends TaskConfig<I[], O> {
  /** A batch is called when it holds this many items. */
  maxSize: number;
  /** ... or this many (default 1), once `maxWait` has passed since its first item. */
  minSize?: number | undefined;
  /** ms; 0 (the default): only when full, or at the end of the input. */
  maxWait?: number | undefined;
}

/** What a task or batch call gets besides its item. */
export interface TaskContext extends Pick<StreamContext, 'id' | 'signal'> {
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number;
  /** The item's (or batch's) position in the stream's input, from 0. */
  readonly index: number;
}

/** `workerFn`'s settings: a stream function's, and where its handler runs. */
export interface WorkerFnConfig extends StreamConfig {
  /** Most worker threads the function starts (lazily, as streams open). Default: `os.availableParallelism()`. */
  threads?: number | undefined;
  /** The module's export that is the handler. Default `'default'`. */
  export?: string | undefined;
  /**
   * Move large byte arrays instead of copying them: an event's or output's
   * typed array or Buffer of 64 KiB or more that spans its whole ArrayBuffer
   * is transferred, and the sender's ArrayBuffer is detached (length 0) once
   * its batch leaves, at any time after `send()`. Default false (one copy).
   */
  transfer?: boolean | undefined;
  /**
   * Each thread's limits, as `new Worker()` takes them; a thread that exceeds them fails the streams it hosts.
   * On Bun, whose `Worker` ignores them, `workerFn()` refuses this option (`ERR_VELO_RUNTIME_UNSUPPORTED`).
   */
  resourceLimits?: import('node:worker_threads').ResourceLimits | undefined;
  /**
   * Ms a thread may take to load the module (a top-level await included);
   * past it, the thread is stopped and its streams fail with
   * `ERR_VELO_WORKER_MODULE`. Default 30000.
   */
  loadTimeout?: number | undefined;
  /** Ms a thread that hosts no stream stays up before it stops (0: at once); the next stream starts a new one. Default 10000. */
  threadIdleTimeout?: number | undefined;
}
