// The entry point of a worker thread that runs `workerFn` streams. The
// caller's thread (js/worker/pool.ts) starts it with the module to run and
// the thread's wake inbox, then posts one `open` message per stream placed
// here; events and outputs then cross only through the stream's two native
// lanes (crates/velo-node/src/cross.rs), a batch at a time.
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { CrossPushStatus, CrossTakeStatus, addon } from '../addon/addon';
import {
  type Arrived,
  type Encoded,
  decodeBatch,
  encodeBatch,
  encodePrefix,
  encodeThrown,
  isThrown,
  needsTransfer,
  rebuildThrown,
  type ThrownRecord,
} from './codec';
import {
  type CancelMessage,
  INPUT,
  type LeftMessage,
  type LoadedMessage,
  type OpenMessage,
  OUTPUT,
  PARKED_AT,
  type PingMessage,
  type PongMessage,
  type StopMessage,
  TAKEN_END,
  type ThreadData,
  type TransferMessage,
  WORKER_SIDE,
  takenView,
} from './protocol';
import { StreamClosedError, wakeAtOnWorkerError, workerModuleError } from '../errors';
import { withRemoteParent } from '../tracing';
import type { JournalCall, JournalStreamCall, StreamContext } from '../types';
import { runCall, streamCall } from '../core/journal-calls';

type Handler = (events: AsyncIterable<unknown>, ctx: StreamContext) => AsyncIterable<unknown>;

const data = workerData as ThreadData;
/** This thread's streams, by pair id. */
const streams = new Map<number, ThreadStream>();

// `import()` as Node runs it: TypeScript's CommonJS output would turn it into
// `require()`, which cannot load an ES module on Node 20.
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const importModule = new Function('specifier', 'return import(specifier)') as (
  specifier: string,
) => Promise<Record<string, unknown>>;

let handler: Promise<Handler> | undefined;

/** The module's handler, loaded once per thread; rejects with `ERR_VELO_WORKER_MODULE` when it is not one. */
function loadHandler(): Promise<Handler> {
  return (handler ??= importModule(pathToFileURL(data.module).href).then(
    (ns) => {
      // (A CommonJS module's exports are its `default`: TypeScript's `export default` is `exports.default` there.)
      const own = ns[data.exportName];
      const fn =
        typeof own === 'function' ? own : ((ns.default as Record<string, unknown> | undefined)?.[data.exportName] ?? own);
      if (typeof fn !== 'function') {
        throw workerModuleError(
          `The module ${data.module} has no export "${data.exportName}" that is a function (found ${fn === undefined ? 'none' : typeof fn})`,
        );
      }
      return fn as Handler;
    },
    (cause: unknown) => {
      throw workerModuleError(
        `The module ${data.module} could not be loaded on a worker thread: ${String((cause as Error)?.message ?? cause)}`,
        cause,
      );
    },
  ));
}

// The module loads as the thread starts; the caller's load deadline (pool.ts) stops when it settles.
void loadHandler().then(
  () => parentPort?.postMessage({ type: 'loaded' } satisfies LoadedMessage),
  () => parentPort?.postMessage({ type: 'loaded' } satisfies LoadedMessage),
);

function send(pair: number, encoded: Encoded): CrossPushStatus {
  // The ArrayBuffers go first, by the port: the batch that refers to them may be taken before they arrive, never after.
  if (encoded.byPort !== null) {
    const message: TransferMessage = { type: 'transfer', pair, ...encoded.byPort };
    parentPort?.postMessage(message, encoded.byPort.buffers);
  }
  return addon.crossPush(pair, OUTPUT, encoded.bytes, encoded.attached);
}

/** One stream's handler on this thread, between its input and output lanes. */
class ThreadStream implements AsyncIterableIterator<unknown> {
  readonly #pair: number;
  readonly #id: string;
  readonly #maxBatch: number;
  #abort: AbortController | undefined;
  // Input: the batch being read, and the handler's `next()` waiting for one.
  #inVals: unknown[] = [];
  #inPos = 0;
  #inputEnded = false;
  /** ArrayBuffers the caller transferred, one list per input batch that refers to them, in order. */
  readonly #arrived: Arrived[] = [];
  /** An input batch taken whose transferred ArrayBuffers have not arrived yet. */
  #waitingBatch: Buffer[] | null = null;
  /** The handler's `next()` calls waiting for input, oldest first (a handler may call it again before the first settles). */
  #waiters: ((r: IteratorResult<unknown>) => void)[] = [];
  // Output: values not yet sent, whether the lane holds a batch back, and the handler waiting for room.
  #out: unknown[] = [];
  #outParked = false;
  #resumeHandler: (() => void) | null = null;
  /** The flush of outputs made in this turn of the event loop, if one is due. */
  #flushTimer: NodeJS.Immediate | null = null;
  #cancelled = false;
  /**
   * What the handler's reads throw once the caller cancelled (as in-process): its code after the loop, which would
   * take a cut input for whole, does not run.
   */
  #cancelError: StreamClosedError | undefined;
  /**
   * The caller's cancel closed the lanes; its reason is on its way by the
   * port (`cancelledWith`), and the handler is stopped only then, so that
   * `ctx.signal` has aborted with it before the handler's `finally` runs.
   */
  #refused = false;
  #onCancelMessage: (() => void) | null = null;
  /** The caller's cancel message came: the caller is told when the handler has finished (`LeftMessage`). */
  #cancelMessaged = false;
  /** An output the clone format refused: the stream fails with it. */
  #outputError: { error: unknown } | undefined;

  /** Shared with the caller (`PARKED_AT`). */
  readonly #state: Int32Array;
  /** Input batches taken. */
  #taken = 0;
  /** Events the handler has taken (`takenView`, shared with the caller). */
  readonly #takenCount: Float64Array;
  #eventsTaken = 0;

  constructor(message: OpenMessage) {
    this.#pair = message.pair;
    this.#id = message.id;
    this.#maxBatch = message.maxBatch;
    this.#state = message.state;
    this.#takenCount = takenView(message.state);
  }

  get signal(): AbortSignal {
    return (this.#abort ??= new AbortController()).signal;
  }

  async run(): Promise<void> {
    let failed: { error: unknown } | undefined;
    let it: AsyncIterator<unknown> | undefined;
    try {
      const fn = await loadHandler();
      // A worker thread's stream lives in this process only: nothing to restore, a checkpoint is a no-op, and a
      // journaled call is a call.
      let calls = 0;
      const signal = this.signal;
      const site = {
        id: this.#id,
        signal,
        get aborted() {
          return signal.aborted;
        },
        nextCall: () => ++calls,
      };
      const ctx: StreamContext = {
        id: this.#id,
        signal: this.signal,
        run: <T>(name: string, body: (call: JournalCall) => T | PromiseLike<T>) =>
          runCall(undefined, site, name, body) as Promise<T>,
        stream: <C>(name: string, factory: (call: JournalStreamCall<C>) => AsyncIterable<C> | Iterable<C>) =>
          streamCall(undefined, site, name, factory as (call: JournalStreamCall) => AsyncIterable<unknown>) as AsyncIterable<C>,
        restored: undefined,
        checkpoint: () => {},
        wakeAt: () => {
          // Its input is the main thread's lane: an event made here would not be counted there.
          throw wakeAtOnWorkerError();
        },
        cancelTimer: () => {
          throw wakeAtOnWorkerError('cancelTimer');
        },
        entry: undefined,
      };
      const iterable = fn(this, ctx) as unknown;
      if (iterable === null || typeof (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') {
        if (typeof (iterable as PromiseLike<unknown> | null)?.then === 'function') Promise.resolve(iterable).catch(() => {});
        throw workerModuleError(
          `The export "${data.exportName}" of ${data.module} must be an async generator function (async function*): it returned ${iterable === null ? 'null' : typeof iterable}`,
        );
      }
      it = (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        if (this.#cancelled || this.#refused || this.#outputError !== undefined) break;
        this.#out.push(r.value);
        if (this.#outParked) {
          // The lane is full and holds a batch back: wait for room at the
          // yield, as an in-process handler waits for a reader.
          await this.#room();
        } else if (this.#out.length >= this.#maxBatch) {
          this.#flushCatching();
        } else {
          // Outputs made in one turn of the event loop leave together.
          this.#flushTimer ??= setImmediate(this.#flushSoon);
        }
        if (this.#refused || this.#outputError !== undefined) break;
      }
    } catch (error) {
      failed = { error };
    }
    // Stopped by us (a cancel, an output that cannot cross): the handler's finally runs.
    if (it !== undefined && failed === undefined && (this.#cancelled || this.#refused || this.#outputError !== undefined)) {
      if (this.#refused && !this.#cancelled) await new Promise<void>((resolve) => (this.#onCancelMessage = resolve));
      try {
        await it.return?.();
      } catch {
        // Nobody is left to see it, or the output error is the one to report.
      }
    }
    failed ??= this.#outputError;
    await this.#finish(failed);
  }

  /** Sends what is left, then the error if the handler failed, then the end; all in order, waiting for room as needed. */
  async #finish(failed: { error: unknown } | undefined): Promise<void> {
    if (this.#flushTimer !== null) {
      clearImmediate(this.#flushTimer);
      this.#flushTimer = null;
    }
    let ending = failed;
    // Outputs made before a failure arrive before it.
    try {
      await this.#sendAll();
    } catch (error) {
      ending ??= { error };
    }
    if (ending !== undefined && !this.#cancelled && !this.#refused) {
      this.#out = [];
      await this.#room();
      if (!this.#cancelled) this.#afterPush(send(this.#pair, encodeThrown(ending.error)));
    }
    // The end goes after the last batch, held back or not.
    await this.#room();
    if (!this.#cancelled && !this.#refused) {
      addon.crossEnd(this.#pair, OUTPUT);
      // Input the handler did not read is dropped, and a sender waiting is released.
      addon.crossCancel(this.#pair, INPUT);
    }
    streams.delete(this.#pair);
    if (this.#cancelMessaged) parentPort?.postMessage({ type: 'left', pair: this.#pair } satisfies LeftMessage);
    exitIfStopped();
    addon.crossRelease(this.#pair, WORKER_SIDE);
  }

  /** Sends every output made, waiting for room between batches. */
  async #sendAll(): Promise<void> {
    for (;;) {
      await this.#room();
      if (this.#cancelled || this.#out.length === 0) return;
      this.#flush();
    }
  }

  /** Resolves once the output lane holds nothing back (or the stream is cancelled). */
  #room(): Promise<void> | void {
    if (!this.#outParked || this.#cancelled) return;
    return new Promise<void>((resolve) => (this.#resumeHandler = resolve)).then(() => this.#room());
  }

  readonly #flushSoon = (): void => {
    this.#flushTimer = null;
    this.#flushCatching();
  };

  /** Flushes; an output the clone format refuses stops the handler at its next step and fails the stream. */
  #flushCatching(): void {
    try {
      this.#flush();
    } catch (error) {
      this.#out = [];
      this.#outputError ??= { error };
      this.#endInput();
    }
  }

  /**
   * Sends the outputs made so far, unless the lane still holds a batch back
   * (then they go after it, on its wake). Throws what the clone format
   * refused, after sending the outputs made before the refused one.
   */
  #flush(): void {
    if (this.#refused) this.#out = [];
    if (this.#outParked || this.#out.length === 0 || this.#cancelled) return;
    const out = this.#out;
    let encoded: Encoded;
    try {
      encoded = encodeBatch(out, data.transfer);
    } catch (error) {
      this.#out = [];
      const before = encodePrefix(out, data.transfer);
      if (before !== null) this.#afterPush(send(this.#pair, before));
      throw error;
    }
    this.#out = [];
    this.#afterPush(send(this.#pair, encoded));
  }

  #afterPush(status: CrossPushStatus): void {
    if (status === CrossPushStatus.Parked) this.#outParked = true;
    else if (status !== CrossPushStatus.Accepted) this.#refusedByCaller();
  }

  transferArrived(arrived: Arrived): void {
    this.#arrived.push(arrived);
    if (this.#waitingBatch !== null && this.#waiters.length > 0) this.wake(INPUT);
  }

  /** The caller cancelled with `reason` (it comes by the port, after the lanes' cancel may have stopped the handler already). */
  cancelledWith(reason: unknown): void {
    this.#cancelMessaged = true;
    // (As in-process: the signal aborts, then the handler's reads fail.)
    (this.#abort ??= new AbortController()).abort(reason);
    this.#cancelError ??= new StreamClosedError(
      `Stream ${this.#id} was cancelled`,
      reason === undefined ? undefined : { cause: reason },
    );
    this.#stop();
    const go = this.#onCancelMessage;
    this.#onCancelMessage = null;
    go?.();
  }

  /** A lane refused: the caller cancelled, and its message follows. Outputs made meanwhile go nowhere. */
  #refusedByCaller(): void {
    this.#refused = true;
    this.#out = [];
  }

  /** A wake on `lane`: input came (or ended), or the output lane has room, or the stream was cancelled. */
  wake(lane: number): void {
    if (lane === OUTPUT) {
      if (!this.#outParked) return;
      const status = addon.crossPush(this.#pair, OUTPUT, null);
      if (status === CrossPushStatus.Parked) return;
      this.#outParked = false;
      this.#afterPush(status);
      if (!this.#outParked) this.#flushCatching();
      // A handler waiting for input whose last outputs were held back: parked only now (see `#park`).
      if (this.#resumeHandler === null) this.#park();
      this.#resume();
      return;
    }
    if (this.#waiters.length > 0) {
      while (this.#waiters.length > 0) {
        const r = this.#inPos < this.#inVals.length ? this.#shiftIn() : this.#read();
        if (r === null) break;
        // (None left when the read found the stream cancelled: that answered them all.)
        this.#waiters.shift()?.(r);
      }
      // Still waiting: parked again, with what it took.
      this.#park();
    }
    // (A cancel with nobody reading is handled when its message comes.)
  }

  /** The caller cancelled (or left): end the handler's input, release a paused yield. */
  #stop(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#out = [];
    this.#endInput();
    this.#resume();
  }

  /** The handler's input ends now (waiting `next()` calls get done). */
  #endInput(): void {
    this.#inputEnded = true;
    this.#inVals = [];
    this.#inPos = 0;
    const waiters = this.#waiters;
    this.#waiters = [];
    const cancelled = this.#cancelError;
    for (const resolve of waiters) {
      if (cancelled === undefined) resolve(this.#ended());
      else (resolve as unknown as (r: Promise<never>) => void)(Promise.reject(cancelled));
    }
  }

  #resume(): void {
    const resume = this.#resumeHandler;
    this.#resumeHandler = null;
    resume?.();
  }

  // ----- the handler's events -----

  next(): Promise<IteratorResult<unknown>> {
    if (this.#cancelError !== undefined) return Promise.reject(this.#cancelError);
    // Earlier calls still waiting are served first, in order.
    if (this.#waiters.length > 0) return new Promise((resolve) => this.#waiters.push(resolve));
    if (this.#inPos < this.#inVals.length) return Promise.resolve(this.#shiftIn());
    const r = this.#read();
    if (r !== null) return Promise.resolve(r);
    // Waiting for input: what the handler made so far is all there is for now.
    if (this.#flushTimer !== null) {
      clearImmediate(this.#flushTimer);
      this.#flushTimer = null;
    }
    this.#flushCatching();
    if (this.#inputEnded) return Promise.resolve(this.#ended());
    const waiting = new Promise<IteratorResult<unknown>>((resolve) => this.#waiters.push(resolve));
    // (After the flush: the caller that sees this finds those outputs in the lane.)
    this.#park();
    return waiting;
  }

  /**
   * Tells the caller (`PARKED_AT`) that the handler waits for input with every batch taken, once nothing else is
   * left to do here: no output batch held back by a full lane (the lane's wake sends it, and the outputs after it),
   * no taken batch waiting for its transferred buffers. Until then a read of the caller's has a next step on this
   * thread, which may be late (the thread busy with another stream's handler, or not scheduled under load): were
   * the caller told, it would let the read go, and the process could exit before those outputs came.
   */
  #park(): void {
    if (this.#waiters.length > 0 && !this.#outParked && this.#waitingBatch === null) {
      Atomics.store(this.#state, PARKED_AT, this.#taken);
    }
  }

  #shiftIn(): IteratorResult<unknown> {
    const value = this.#inVals[this.#inPos];
    this.#inVals[this.#inPos++] = undefined;
    this.#takenCount[0] = ++this.#eventsTaken;
    return { value, done: false };
  }

  /** The handler is told that its input ended (the caller's `kTakenEnd`). */
  #ended(): IteratorResult<unknown> {
    Atomics.store(this.#state, TAKEN_END, 1);
    return { value: undefined, done: true };
  }

  /** The next event from the input lane, its end, or null (parked: the lane wakes this thread). */
  #read(): IteratorResult<unknown> | null {
    if (this.#inputEnded) return this.#ended();
    const taken = this.#waitingBatch === null;
    const got = this.#waitingBatch ?? addon.crossTake(this.#pair, INPUT);
    this.#waitingBatch = null;
    if (typeof got === 'number') {
      if (got === CrossTakeStatus.Empty) return null;
      if (got === CrossTakeStatus.Cancelled) {
        // Until the cancel's message ends the input (see `#refused`).
        this.#refusedByCaller();
        return null;
      }
      this.#inputEnded = true;
      return this.#ended();
    }
    if (taken) {
      this.#taken++;
      Atomics.store(this.#state, PARKED_AT, -1);
    }
    let arrived: Arrived | undefined;
    if (needsTransfer(got)) {
      arrived = this.#arrived.shift();
      if (arrived === undefined) {
        // `transferArrived` resumes the handler's read.
        this.#waitingBatch = got;
        return null;
      }
    }
    const decoded = decodeBatch(got, arrived);
    // (The caller sends values only; a thrown record never comes this way.)
    const vals = isThrown(decoded) ? [] : decoded;
    if (vals.length === 0) return this.#read();
    this.#inVals = vals;
    this.#inPos = 0;
    return this.#shiftIn();
  }

  /** The handler left its `for await`: it reads no more input. */
  return(): Promise<IteratorResult<unknown>> {
    this.#inputEnded = true;
    this.#inVals = [];
    this.#inPos = 0;
    addon.crossCancel(this.#pair, INPUT);
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

addon.crossListen(data.inbox, (tokens) => {
  for (const token of tokens) streams.get(Math.floor(token / 2))?.wake(token % 2);
});

/** Asked to stop (`StopMessage`): exits once no handler runs here. */
let stopping = false;
function exitIfStopped(): void {
  if (stopping && streams.size === 0) process.exit(0);
}

parentPort?.on('message', (message: OpenMessage | TransferMessage | CancelMessage | StopMessage | PingMessage) => {
  if (message.type === 'ping') {
    parentPort?.postMessage({ type: 'pong' } satisfies PongMessage);
    return;
  }
  if (message.type === 'stop') {
    stopping = true;
    exitIfStopped();
    return;
  }
  if (message.type === 'transfer') {
    streams.get(message.pair)?.transferArrived(message);
    return;
  }
  if (message.type === 'cancel') {
    const reason = message.record ? rebuildThrown(message.reason as ThrownRecord) : message.reason;
    const stream = streams.get(message.pair);
    // (A handler that finished already: the caller is told at once.)
    if (stream === undefined) parentPort?.postMessage({ type: 'left', pair: message.pair } satisfies LeftMessage);
    else stream.cancelledWith(reason);
    return;
  }
  const stream = new ThreadStream(message);
  streams.set(message.pair, stream);
  // Traced: the handler runs, for its whole life, as a child of the caller's stream span. In the context
  // manager the module registers, so once it has loaded (a load failure is the stream's, as untraced).
  const parent = message.trace;
  if (parent === undefined) void stream.run();
  else
    loadHandler().then(
      () => withRemoteParent(parent, () => void stream.run()),
      () => void stream.run(),
    );
});
