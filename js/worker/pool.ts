// The worker threads of one `workerFn`, on the caller's thread: started
// lazily, reused, each stream placed on the least loaded one for its whole
// life. A thread that stops fails exactly the streams it hosted, and the
// next open starts a replacement.
import { join } from 'node:path';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import { addon } from '../core/addon';
import { WorkerCrashedError } from '../errors';
import type { OpenMessage, ThreadData, TransferMessage } from './protocol';

const THREAD_SCRIPT = join(__dirname, 'thread.js');

/** A stream placed on a thread, as its host sees it. */
export interface Hosted {
  /** The thread stopped: fail with `error`. */
  crashed(error: Error): void;
  /** ArrayBuffers the thread transferred for the next batch that refers to them. */
  transferArrived(buffers: ArrayBuffer[]): void;
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

export class ThreadHost {
  readonly inbox: number;
  readonly #worker: Worker;
  readonly #hosted = new Map<number, WeakRef<Hosted>>();
  #error: unknown;
  #onGone: (host: ThreadHost) => void;

  constructor(
    module: string,
    exportName: string,
    transfer: boolean,
    resourceLimits: ResourceLimits | undefined,
    onGone: (host: ThreadHost) => void,
  ) {
    this.inbox = addon.crossInbox();
    this.#onGone = onGone;
    const data: ThreadData = { module, exportName, inbox: this.inbox, transfer };
    this.#worker = new Worker(THREAD_SCRIPT, { workerData: data, ...(resourceLimits ? { resourceLimits } : {}) });
    this.#worker.on('error', (error) => (this.#error ??= error));
    this.#worker.on('message', (message: TransferMessage) =>
      this.#hosted.get(message.pair)?.deref()?.transferArrived(message.buffers),
    );
    // An idle thread never keeps the process alive; a caller waiting for
    // a stream's outputs does (see caller.ts). (After the 'message'
    // listener: adding one refs the worker's port again.)
    this.#worker.unref();
    this.#worker.on('exit', (code) => this.#exited(code));
  }

  get load(): number {
    return this.#hosted.size;
  }

  place(pair: number, stream: Hosted, message: OpenMessage): void {
    this.#hosted.set(pair, new WeakRef(stream));
    this.#worker.postMessage(message);
  }

  /** Moves `buffers` to the thread, ahead of the batch of `pair` that refers to them. */
  transfer(pair: number, buffers: ArrayBuffer[]): void {
    const message: TransferMessage = { type: 'transfer', pair, buffers };
    this.#worker.postMessage(message, buffers);
  }

  /** The stream of `pair` finished: the thread no longer hosts it. */
  leave(pair: number): void {
    this.#hosted.delete(pair);
  }

  #exited(code: number): void {
    this.#onGone(this);
    const error =
      this.#error !== undefined
        ? new WorkerCrashedError(
            `The worker thread running this stream failed: ${String((this.#error as Error)?.message ?? this.#error)}`,
            {
              cause: this.#error,
            },
          )
        : new WorkerCrashedError(`The worker thread running this stream exited with code ${code}`);
    for (const [pair, ref] of this.#hosted) {
      // Nothing on the dead thread will release its side.
      addon.crossRelease(pair, 1);
      ref.deref()?.crashed(error);
    }
    this.#hosted.clear();
    addon.crossCloseInbox(this.inbox);
  }
}

/** A `workerFn`'s threads. */
export class ThreadPool {
  readonly #module: string;
  readonly #exportName: string;
  readonly #max: number;
  readonly #transfer: boolean;
  readonly #resourceLimits: ResourceLimits | undefined;
  readonly #hosts: ThreadHost[] = [];

  constructor(module: string, exportName: string, max: number, transfer: boolean, resourceLimits: ResourceLimits | undefined) {
    this.#module = module;
    this.#exportName = exportName;
    this.#max = max;
    this.#transfer = transfer;
    this.#resourceLimits = resourceLimits;
  }

  /** The thread for a new stream: the least loaded, or a new one while some are not started and every started one is busy. */
  pick(): ThreadHost {
    let best: ThreadHost | undefined;
    for (const host of this.#hosts) if (best === undefined || host.load < best.load) best = host;
    if (best === undefined || (best.load > 0 && this.#hosts.length < this.#max)) {
      best = new ThreadHost(this.#module, this.#exportName, this.#transfer, this.#resourceLimits, (gone) => {
        const i = this.#hosts.indexOf(gone);
        if (i >= 0) this.#hosts.splice(i, 1);
      });
      this.#hosts.push(best);
    }
    return best;
  }
}
