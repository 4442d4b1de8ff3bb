// The worker threads of one `workerFn`, on the caller's thread: started
// lazily, reused, each stream placed on the least loaded one for its whole
// life. A thread that stops fails exactly the streams it hosted, and the
// next open starts a replacement.
import { join } from 'node:path';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import { addon } from '../addon/addon';
import { WorkerCrashedError, loadTimeoutError } from '../errors';
import { isError, readString } from '../text';
import { type Arrived, thrownRecord } from './codec';
import {
  type CancelMessage,
  type LeftMessage,
  type LoadedMessage,
  type OpenMessage,
  type PingMessage,
  type PongMessage,
  type StopMessage,
  type ThreadData,
  type TransferMessage,
} from './protocol';

const THREAD_SCRIPT = join(__dirname, 'thread.js');
/**
 * Ms a stopping thread has to let its cancelled handlers finish before it is terminated; and, twice, the time a
 * thread with a cancelled handler not finished has before it is asked whether its event loop runs, then to answer.
 */
const STOP_GRACE_MS = 5_000;
/** Added to the busy count of a thread with a cancelled handler not finished: ranks it after any other thread. */
const STUCK_RANK = 2 ** 30;

/** A stream placed on a thread, as its host sees it. */
export interface Hosted {
  /** The thread stopped: fail with `error`. */
  crashed(error: Error): void;
  /** What the thread sent by its port for the next batch that refers to it. */
  transferArrived(arrived: Arrived): void;
  /** The function was closed: cancel the stream with `reason`. */
  closedBy(reason: Error): void;
}

/** This thread's own wake inbox, and who each pair's wakes are for (one per copy of the module: each copy binds its own). */
let callerInbox: number | undefined;
const callers = new Map<number, WeakRef<{ wake(lane: number): void }>>();

/** The caller-side inbox, bound on first use. */
export function ownInbox(): number {
  if (callerInbox === undefined) {
    callerInbox = addon.crossInbox();
    addon.crossListen(callerInbox, (tokens) => {
      for (const token of tokens)
        callers
          .get(Math.floor(token / 2))
          ?.deref()
          ?.wake(token % 2);
    });
  }
  return callerInbox;
}

/** Routes the wakes of `pair` to `target` (held weakly: a stream nobody holds may be collected). */
export function listen(pair: number, target: { wake(lane: number): void }): void {
  callers.set(pair, new WeakRef(target));
}

export function unlisten(pair: number): void {
  callers.delete(pair);
}

/** How a pool's threads are run (`WorkerFnConfig`). */
export interface PoolOptions {
  module: string;
  exportName: string;
  max: number;
  transfer: boolean;
  resourceLimits: ResourceLimits | undefined;
  /** Ms a thread may take to load the module before its streams fail. */
  loadTimeout: number;
  /** Ms a thread that hosts no stream stays up (0: it stops at once). */
  idleTimeout: number;
}

export class ThreadHost {
  readonly inbox: number;
  readonly #worker: Worker;
  readonly #hosted = new Map<number, WeakRef<Hosted>>();
  /** Pairs cancelled whose handler has not finished on the thread yet (`LeftMessage`): it still runs there. */
  readonly #cancelled = new Set<number>();
  #error: unknown;
  /** Why this host stopped its thread itself (a load past its deadline, idle, closed): its streams fail with it, if any. */
  #stopping: { error: Error | null } | undefined;
  readonly #pool: ThreadPool;
  /** The load deadline, then the idle deadline. */
  #timer: NodeJS.Timeout | undefined;
  #loaded = false;
  /** The watch on a cancelled handler that has not finished (`#watchStuck`), while one is armed. */
  #stuckWatch: NodeJS.Timeout | undefined;
  /** A ping is unanswered (`#watchStuck`): the thread's event loop may be held; no new stream goes there. */
  #pinged = false;
  #terminating = false;
  #gone = false;
  readonly exited: Promise<void>;

  constructor(pool: ThreadPool, options: PoolOptions) {
    this.inbox = addon.crossInbox();
    this.#pool = pool;
    const { module, exportName, transfer, resourceLimits, loadTimeout } = options;
    const data: ThreadData = { module, exportName, inbox: this.inbox, transfer };
    try {
      this.#worker = new Worker(THREAD_SCRIPT, { workerData: data, ...(resourceLimits ? { resourceLimits } : {}) });
    } catch (error) {
      addon.crossCloseInbox(this.inbox);
      throw error;
    }
    this.#worker.on('error', (error) => (this.#error ??= error));
    this.#worker.on('message', (message: TransferMessage | LoadedMessage | LeftMessage | PongMessage) => {
      if (message.type === 'loaded') this.#onLoaded();
      else if (message.type === 'left') this.#cancelled.delete(message.pair);
      else if (message.type === 'pong') this.#answered();
      else this.#hosted.get(message.pair)?.deref()?.transferArrived(message);
    });
    // An idle thread never keeps the process alive; a caller waiting for
    // a stream's outputs does (see caller.ts). (After the 'message'
    // listener: adding one refs the worker's port again.)
    this.#worker.unref();
    this.exited = new Promise((resolve) =>
      this.#worker.on('exit', (code) => {
        this.#exited(code);
        resolve();
      }),
    );
    // (A load that never ends, even a synchronous loop, is bounded here, on the caller's thread.)
    this.#timer = setTimeout(() => void this.stop(loadTimeoutError(module, loadTimeout)), loadTimeout).unref();
  }

  /** Streams it hosts (the thread idles, and stops after its idle time, once it hosts none). */
  get load(): number {
    return this.#hosted.size;
  }

  /** Handlers running on the thread: the streams it hosts, and those cancelled whose handler has not finished. */
  get busy(): number {
    let busy = this.#hosted.size;
    for (const pair of this.#cancelled) if (!this.#hosted.has(pair)) busy++;
    return busy;
  }

  /** Whether a cancelled handler has not finished (it may hold the thread in a loop: every stream there waits). */
  get stuck(): boolean {
    for (const pair of this.#cancelled) if (!this.#hosted.has(pair)) return true;
    return false;
  }

  /** Whether a ping is unanswered: a cancelled handler may hold the thread in a loop without an await. */
  get unanswered(): boolean {
    return this.#pinged;
  }

  /**
   * A cancelled handler has not finished (`#cancelled`): after `STOP_GRACE_MS` the thread is pinged, and one that
   * does not answer within as long again is held by a loop that never ends, as far as anyone can tell: it is
   * terminated, its streams fail with `WorkerCrashedError`, and the next stream gets a new thread. A thread that
   * answers (its handler awaits something in its `finally`) is watched again.
   */
  #watchStuck(): void {
    if (this.#stuckWatch !== undefined || this.#terminating || this.#gone) return;
    this.#stuckWatch = setTimeout(() => {
      this.#stuckWatch = undefined;
      if (!this.stuck || this.#terminating || this.#gone) return;
      this.#pinged = true;
      this.#worker.postMessage({ type: 'ping' } satisfies PingMessage);
      this.#stuckWatch = setTimeout(() => {
        this.#stuckWatch = undefined;
        if (this.#pinged && !this.#gone)
          void this.stop(
            new WorkerCrashedError(
              `A cancelled handler on the worker thread running this stream did not finish, and the thread did not answer for ${(2 * STOP_GRACE_MS) / 1000} s (a loop without an await): the thread was stopped`,
            ),
          );
      }, STOP_GRACE_MS).unref();
    }, STOP_GRACE_MS).unref();
  }

  /** The thread answered a ping: its event loop runs. */
  #answered(): void {
    this.#pinged = false;
    if (this.#stuckWatch !== undefined) clearTimeout(this.#stuckWatch);
    this.#stuckWatch = undefined;
    if (this.stuck) this.#watchStuck();
  }

  place(pair: number, stream: Hosted, message: OpenMessage): void {
    this.#hosted.set(pair, new WeakRef(stream));
    if (this.#loaded) this.#clearTimer();
    this.#worker.postMessage(message);
  }

  /** Moves (or shares) what a batch of `pair` refers to, ahead of it. */
  transfer(pair: number, arrived: Arrived): void {
    const message: TransferMessage = { type: 'transfer', pair, ...arrived };
    this.#worker.postMessage(message, arrived.buffers);
  }

  /** Cancels the stream of `pair`: its handler's `ctx.signal` aborts with `reason` (as near as the clone format allows), its lanes close. */
  cancel(pair: number, reason: unknown): void {
    if (!this.#terminating && !this.#gone) {
      let message: CancelMessage | undefined;
      if (!isError(reason)) {
        try {
          message = { type: 'cancel', pair, reason, record: false };
          this.#worker.postMessage(message);
        } catch {
          message = undefined;
          reason = new Error(
            `The stream was cancelled with a reason the structured clone algorithm refuses (${readString(() => Object.prototype.toString.call(reason)) ?? 'a revoked Proxy'})`,
          );
        }
      }
      if (message === undefined) {
        this.#worker.postMessage({ type: 'cancel', pair, reason: thrownRecord(reason), record: true } satisfies CancelMessage);
      }
      this.#cancelled.add(pair);
      this.#watchStuck();
    }
    addon.crossCancel(pair, null);
  }

  /** Cancels every stream hosted here with `reason`. */
  closedBy(reason: Error): void {
    for (const ref of [...this.#hosted.values()]) ref.deref()?.closedBy(reason);
  }

  /** The stream of `pair` finished: the thread no longer hosts it. */
  leave(pair: number): void {
    this.#hosted.delete(pair);
    if (this.#hosted.size === 0 && this.#loaded) this.#idle();
  }

  /** Stops the thread: its streams fail with `error` (null: it hosts none, or they were cancelled). */
  /**
   * Stops the thread. With an `error` (a load past its deadline) at once,
   * failing its streams with it. Without, it hosts no stream of the caller's
   * any more: the thread exits once its cancelled handlers have finished
   * (their `finally` blocks), or after `STOP_GRACE_MS`. `wait`: the process
   * stays up until it has (someone awaits it: `close()`).
   */
  stop(error: Error | null, wait = false): Promise<void> {
    if (this.#stopping === undefined) {
      // (The idle or load timer. Once stopping, the timer is the one that terminates the thread: a second call,
      // close() after the thread stopped as idle, must leave it armed.)
      this.#clearTimer();
      this.#stopping = { error };
      this.#pool.forget(this);
      if (error !== null) this.#terminate();
      else {
        this.#worker.postMessage({ type: 'stop' } satisfies StopMessage);
        this.#timer = setTimeout(() => this.#terminate(), STOP_GRACE_MS).unref();
      }
    }
    if (wait && !this.#gone) this.#worker.ref();
    return this.exited;
  }

  #terminate(): void {
    this.#terminating = true;
    void this.#worker.terminate();
  }

  #onLoaded(): void {
    this.#loaded = true;
    if (this.#stopping !== undefined) return;
    this.#clearTimer();
    if (this.#hosted.size === 0) this.#idle();
  }

  /** Hosts nothing: stop after the pool's idle time (or now, once the function is closed or collected). */
  #idle(): void {
    if (this.#stopping !== undefined) return;
    const ms = this.#pool.idleTimeout;
    if (ms === 0) {
      void this.stop(null);
      return;
    }
    this.#clearTimer();
    this.#timer = setTimeout(() => {
      if (this.#hosted.size === 0) void this.stop(null);
    }, ms).unref();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #exited(code: number): void {
    this.#gone = true;
    this.#clearTimer();
    if (this.#stuckWatch !== undefined) clearTimeout(this.#stuckWatch);
    this.#stuckWatch = undefined;
    this.#pool.forget(this);
    const stopped = this.#stopping?.error;
    const error =
      stopped != null
        ? stopped
        : this.#error !== undefined
          ? new WorkerCrashedError(
              `The worker thread running this stream failed: ${String((this.#error as Error)?.message ?? this.#error)}`,
              { cause: this.#error },
            )
          : new WorkerCrashedError(`The worker thread running this stream exited with code ${code}`);
    for (const [pair, ref] of this.#hosted) {
      // Nothing on the dead thread will release its side.
      addon.crossRelease(pair, 1);
      ref.deref()?.crashed(error);
    }
    // (Nor those of its cancelled handlers that had not finished: a thread stopped while held by one.)
    for (const pair of this.#cancelled) if (!this.#hosted.has(pair)) addon.crossRelease(pair, 1);
    this.#cancelled.clear();
    this.#hosted.clear();
    addon.crossCloseInbox(this.inbox);
  }
}

/** A `workerFn`'s threads. */
export class ThreadPool {
  readonly #options: PoolOptions;
  readonly #hosts: ThreadHost[] = [];
  /** Threads stopping (as idle, or their function collected) that have not exited yet: `close()` waits for them too. */
  readonly #exiting = new Set<ThreadHost>();
  /** Closed by `close()`, or its function was collected: threads stop as soon as they host nothing. */
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: PoolOptions) {
    this.#options = options;
  }

  /** Handlers each running thread runs now (`busy`), one number per thread (for a dashboard). */
  get loads(): number[] {
    return this.#hosts.map((host) => host.busy);
  }

  /** The most threads it starts (`threads`). */
  get maxThreads(): number {
    return this.#options.max;
  }

  get idleTimeout(): number {
    return this.#closing ? 0 : this.#options.idleTimeout;
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * The thread for a new stream: the least busy of those without a cancelled handler that has not finished (one
   * stuck in a loop holds its whole thread), else the least busy of all; or a new one while some are not started
   * and every started one is busy. A thread that has not answered a ping (`#watchStuck`) is left out.
   */
  pick(): ThreadHost {
    let best: ThreadHost | undefined;
    let least = Infinity;
    // (A thread that has not answered a ping is neither chosen nor counted: it is being stopped.)
    let counted = 0;
    for (const host of this.#hosts) {
      if (host.unanswered) continue;
      counted++;
      const busy = host.busy;
      // (A stuck thread ranks after every other: its busy count plus more than any thread hosts.)
      const rank = host.stuck ? busy + STUCK_RANK : busy;
      if (rank < least) [best, least] = [host, rank];
    }
    if (best === undefined || (least > 0 && counted < this.#options.max)) {
      best = new ThreadHost(this, this.#options);
      this.#hosts.push(best);
    }
    return best;
  }

  forget(host: ThreadHost): void {
    const i = this.#hosts.indexOf(host);
    if (i >= 0) this.#hosts.splice(i, 1);
    if (!this.#exiting.has(host)) {
      this.#exiting.add(host);
      void host.exited.then(() => this.#exiting.delete(host));
    }
  }

  /** Nobody can open a stream any more (the function was collected): each thread stops once it hosts nothing. */
  release(): void {
    this.#closing = true;
    for (const host of [...this.#hosts]) if (host.load === 0) void host.stop(null);
  }

  /**
   * Refuses new streams, cancels the open ones with `reason`, and resolves
   * once every thread has exited.
   */
  close(reason: Error): Promise<void> {
    if (this.#closed === undefined) {
      this.#closing = true;
      const hosts = [...this.#hosts];
      const exiting = [...this.#exiting];
      for (const host of hosts) host.closedBy(reason);
      this.#closed = Promise.all([...hosts, ...exiting].map((host) => host.stop(null, true))).then(() => undefined);
    }
    return this.#closed;
  }
}
