// The entry point of a worker thread that runs `workerFn` streams. The
// caller's thread (js/worker/pool.ts) starts it with the module to run and
// the thread's wake inbox, then posts one `open` message per stream placed
// here; events and outputs then cross only through the stream's two native
// lanes (crates/velo-node/src/cross.rs), a batch at a time.
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { CrossStatus, addon } from '../core/addon';
import { decodeBatch, encodeBatch, encodeThrown, isThrown } from './codec';
import { INPUT, MAX_TAKE, type OpenMessage, OUTPUT, type ThreadData, WORKER_SIDE, workerModuleError } from './protocol';
import type { StreamContext } from '../types';

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
      const fn = ns[data.exportName] ?? (ns.default as Record<string, unknown> | undefined)?.[data.exportName];
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
  #resolveInput: ((r: IteratorResult<unknown>) => void) | null = null;
  // Output: values not yet sent, whether the lane holds a batch back, and the handler waiting for room.
  #out: unknown[] = [];
  #outParked = false;
  #resumeHandler: (() => void) | null = null;
  /** The flush of outputs made in this turn of the event loop, if one is due. */
  #flushTimer: NodeJS.Immediate | null = null;
  #cancelled = false;

  constructor(message: OpenMessage) {
    this.#pair = message.pair;
    this.#id = message.id;
    this.#maxBatch = message.maxBatch;
  }

  get signal(): AbortSignal {
    return (this.#abort ??= new AbortController()).signal;
  }

  async run(): Promise<void> {
    let failed: { error: unknown } | undefined;
    try {
      const fn = await loadHandler();
      const ctx: StreamContext = { id: this.#id, signal: this.signal };
      const iterable = fn(this, ctx) as unknown;
      if (iterable === null || typeof (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') {
        if (typeof (iterable as PromiseLike<unknown> | null)?.then === 'function') Promise.resolve(iterable).catch(() => {});
        throw workerModuleError(
          `The export "${data.exportName}" of ${data.module} must be an async generator function (async function*): it returned ${iterable === null ? 'null' : typeof iterable}`,
        );
      }
      const it = (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        if (this.#cancelled) {
          await it.return?.();
          break;
        }
        this.#out.push(r.value);
        if (this.#out.length >= this.#maxBatch) {
          this.#flush();
          // The lane is full and a batch waits here too: wait for room, as a
          // handler waits at its yield.
          while (this.#outParked && this.#out.length >= this.#maxBatch && !this.#cancelled) {
            await new Promise<void>((resolve) => (this.#resumeHandler = resolve));
          }
        } else {
          // Outputs made in one turn of the event loop leave together.
          this.#flushTimer ??= setImmediate(this.#flushSoon);
        }
      }
    } catch (error) {
      failed = { error };
    }
    this.#finish(failed);
  }

  #finish(failed: { error: unknown } | undefined): void {
    if (!this.#cancelled) {
      let ending = failed;
      try {
        this.#flush();
      } catch (error) {
        // An output the clone format refuses fails the stream.
        ending ??= { error };
      }
      if (ending !== undefined) {
        this.#out = [];
        addon.crossPush(this.#pair, OUTPUT, encodeThrown(ending.error));
      }
      // Sent after anything held back: the lane keeps order.
      addon.crossEnd(this.#pair, OUTPUT);
      // Input the handler did not read is dropped, and a sender waiting is released.
      addon.crossCancel(this.#pair, INPUT);
    }
    streams.delete(this.#pair);
    addon.crossRelease(this.#pair, WORKER_SIDE);
  }

  readonly #flushSoon = (): void => {
    this.#flushTimer = null;
    try {
      this.#flush();
    } catch (error) {
      this.#failOutput(error);
    }
  };

  /** Sends the outputs made so far, unless the lane still holds a batch back (then they go after it, on its wake). */
  #flush(): void {
    if (this.#outParked || this.#out.length === 0 || this.#cancelled) return;
    const bytes = encodeBatch(this.#out);
    this.#out = [];
    this.#afterPush(addon.crossPush(this.#pair, OUTPUT, bytes));
  }

  #afterPush(status: CrossStatus): void {
    if (status === CrossStatus.Parked) this.#outParked = true;
    else if (status !== CrossStatus.Queued) this.#stop();
  }

  /** An output could not be cloned: the handler is stopped at its next step and the stream fails with the clone error. */
  #failOutput(error: unknown): void {
    this.#out = [];
    addon.crossPush(this.#pair, OUTPUT, encodeThrown(error));
    addon.crossEnd(this.#pair, OUTPUT);
    addon.crossCancel(this.#pair, INPUT);
    this.#stop();
  }

  /** A wake on `lane`: input came (or ended), or the output lane has room, or the stream was cancelled. */
  wake(lane: number): void {
    if (lane === OUTPUT) {
      if (!this.#outParked) return;
      const status = addon.crossPush(this.#pair, OUTPUT, null);
      if (status === CrossStatus.Queued) {
        this.#outParked = false;
        try {
          this.#flush();
        } catch (error) {
          this.#failOutput(error);
        }
      } else this.#afterPush(status);
      if (!this.#outParked) this.#resume();
      return;
    }
    if (this.#resolveInput !== null) {
      const resolve = this.#resolveInput;
      const r = this.#read();
      if (r !== null) {
        this.#resolveInput = null;
        resolve(r);
      }
    } else if (addon.crossCancelled(this.#pair, INPUT)) this.#stop();
  }

  /** The caller cancelled (or left): abort `ctx.signal`, end the handler's input, release a paused yield. */
  #stop(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#inputEnded = true;
    this.#out = [];
    this.#abort?.abort(new Error('The stream was cancelled'));
    const resolve = this.#resolveInput;
    this.#resolveInput = null;
    resolve?.({ value: undefined, done: true });
    this.#resume();
  }

  #resume(): void {
    const resume = this.#resumeHandler;
    this.#resumeHandler = null;
    resume?.();
  }

  // ----- the handler's events -----

  next(): Promise<IteratorResult<unknown>> {
    if (this.#inPos < this.#inVals.length) {
      const value = this.#inVals[this.#inPos];
      this.#inVals[this.#inPos++] = undefined;
      return Promise.resolve({ value, done: false });
    }
    const r = this.#read();
    if (r !== null) return Promise.resolve(r);
    // Waiting for input: what the handler made so far is all there is for now.
    if (this.#flushTimer !== null) {
      clearImmediate(this.#flushTimer);
      this.#flushTimer = null;
    }
    try {
      this.#flush();
    } catch (error) {
      this.#failOutput(error);
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve) => (this.#resolveInput = resolve));
  }

  /** The next event from the input lane, its end, or null (parked: the lane wakes this thread). */
  #read(): IteratorResult<unknown> | null {
    if (this.#inputEnded) return { value: undefined, done: true };
    const got = addon.crossTake(this.#pair, INPUT, MAX_TAKE);
    if (typeof got === 'number') {
      if (got === CrossStatus.Parked) return null;
      if (got === CrossStatus.Cancelled) this.#stop();
      this.#inputEnded = true;
      return { value: undefined, done: true };
    }
    const vals: unknown[] = [];
    for (const bytes of got) {
      const decoded = decodeBatch(bytes);
      if (!isThrown(decoded)) for (const v of decoded) vals.push(v);
    }
    this.#inVals = vals;
    this.#inPos = 1;
    const value = vals[0];
    vals[0] = undefined;
    return { value, done: false };
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

parentPort?.on('message', (message: OpenMessage) => {
  const stream = new ThreadStream(message);
  streams.set(message.pair, stream);
  void stream.run();
});
