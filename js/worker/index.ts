// `workerFn`: a stream function whose handler runs on worker threads. Each
// stream lives on one thread for its whole life; events and outputs cross
// in batches through native lanes (crates/velo-node/src/cross.rs), and a
// thread is woken only when a lane it waits on goes from empty to non-empty
// or gets room.
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResourceLimits } from 'node:worker_threads';
import { assertOptionsObject, checkKeys, readingOptions } from '../config';
import {
  StreamClosedError,
  WorkerCrashedError,
  describe,
  invalidType,
  invalidValue,
  resourceLimitsUnsupportedError,
  workerModuleError,
} from '../errors';
import { integerOption, numberOption } from '../validate';
import { singleStage } from '../core/function';
import { type HandlerStream } from '../core/stream';
import { type StreamBody, kBodyThrew, kStartBody } from '../core/body';
import type { StreamFn, WorkerFnConfig } from '../types';
import { CallerBody } from './caller';
import { type ThreadHost, ThreadPool } from './pool';

const MAX_THREADS = 256;
/** `fn[kThreads]()`: a workerFn's threads, for a dashboard (a registered symbol: any copy of the package finds it). */
export const kThreads = Symbol.for('velo-stream.threads');

/** What `kThreads` answers: streams hosted by each running thread, and the most threads the function starts. */
export interface ThreadLoads {
  /** Streams each running thread hosts now, one number per thread. */
  loads: number[];
  /** The most threads the function starts (`threads`). */
  max: number;
}

/** The absolute path of `module`: a file URL, an absolute path, or a path relative to the working directory (as `new Worker()` takes it). */
function modulePath(module: unknown): string {
  let path: string;
  if (module instanceof URL || (typeof module === 'string' && module.startsWith('file:'))) {
    try {
      path = fileURLToPath(module);
    } catch (cause) {
      throw invalidValue(
        `The "module" argument must be a file: URL or a path. Received ${String(module)} (${(cause as Error).message})`,
      );
    }
  } else if (typeof module === 'string' && module !== '') {
    path = isAbsolute(module) ? module : resolve(module);
  } else {
    throw invalidType(`The "module" argument must be a path or a file: URL. Received ${describe(module)}`);
  }
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    // Reported below, with the path.
  }
  if (!isFile) throw workerModuleError(`The module of a workerFn must be a file: ${path} is not`);
  return path;
}

/** Ms a thread that hosts no stream stays up, unless configured (`threadIdleTimeout`). */
const THREAD_IDLE_MS = 10_000;
/** Ms a thread may take to load the module, unless configured (`loadTimeout`). */
const LOAD_MS = 30_000;
/** The ceiling of Node's timers. */
const MAX_MS = 2 ** 31 - 1;

function milliseconds(field: string, value: unknown, min: number): number {
  return numberOption(undefined, field, value, min, MAX_MS, `a finite number of milliseconds from ${min} to ${MAX_MS}`);
}

/** An unreferenced workerFn (and every function derived from it by `withConfig`) lets its threads go once they host nothing. */
const unreferenced = new FinalizationRegistry<ThreadPool>((pool) => pool.release());

/** The body of a stream opened after `close()`: it fails at once. */
class RefusedBody<I, O> implements StreamBody<I, O> {
  readonly kind = 'worker';
  readonly signalListeners = 10;
  readonly #error: Error;
  constructor(error: Error) {
    this.#error = error;
  }
  [kStartBody](stream: HandlerStream<I, O>): void {
    stream[kBodyThrew](this.#error);
  }
  cancelled(): void {}
}

/** A `workerFn`: a stream function that also owns threads, released by `close()`. */
export type WorkerStreamFn<I, O> = StreamFn<I, O> & {
  /** Stops its threads once their streams have finished; later opens fail. Idempotent. */
  close(): Promise<void>;
  /** `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
};

/** A workerFn's own options, besides the stream options. */
const WORKER_KEYS = ['threads', 'export', 'transfer', 'resourceLimits', 'loadTimeout', 'threadIdleTimeout'];

/** The runtime whose `Worker` ignores `resourceLimits` (Bun), or null (Node). */
const IGNORES_RESOURCE_LIMITS: string | null = typeof process.versions.bun === 'string' ? `Bun ${process.versions.bun}` : null;

/** The fields of `resourceLimits`, as `new Worker()` takes them. */
const RESOURCE_LIMITS = new Set(['maxYoungGenerationSizeMb', 'maxOldGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb']);

/**
 * `resourceLimits` checked at the call: Node ignores unknown fields and values that are not numbers, and a
 * negative size starts a thread that fails at once, so a typo would fail every stream later, or not at all.
 */
function checkResourceLimits(limits: unknown): ResourceLimits {
  assertOptionsObject(limits, 'resourceLimits', '{ maxOldGenerationSizeMb: 64 }');
  // Inherited fields too (for...in): new Worker() reads them. The thread gets a copy of what was checked.
  const checked: Record<string, number> = {};
  for (const key in limits) {
    if (!RESOURCE_LIMITS.has(key)) {
      throw invalidValue(`Unknown resourceLimits field "${key}". Known fields: ${[...RESOURCE_LIMITS].join(', ')}`);
    }
    const value = (limits as Record<string, unknown>)[key];
    if (value !== undefined) {
      checked[key] = numberOption(
        undefined,
        `resourceLimits.${key}`,
        value,
        Number.MIN_VALUE,
        Number.MAX_VALUE,
        'a positive number of MB',
      );
    }
  }
  return checked;
}

/**
 * A stream function whose handler is the export `config.export` (default:
 * `default`) of `module`, run on up to `config.threads` worker threads
 * (default: the machine's available parallelism).
 */
export function workerFn<I, O>(module: string | URL, config?: WorkerFnConfig): WorkerStreamFn<I, O> {
  const path = readingOptions('module', () => modulePath(module));
  const {
    threads = availableParallelism(),
    export: exportName = 'default',
    transfer = false,
    resourceLimits,
    loadTimeout = LOAD_MS,
    threadIdleTimeout = THREAD_IDLE_MS,
    ...streamConfig
  } = readingOptions('config', () => {
    if (config === undefined) return {};
    assertOptionsObject(config, 'config', '{ threads: 2 }');
    checkKeys(config, WORKER_KEYS);
    // (Each option read once, here.)
    return { ...config };
  });
  integerOption(undefined, 'threads', threads, 1, MAX_THREADS);
  if (typeof exportName !== 'string' || exportName === '') {
    throw invalidType(`The "export" option must be a non-empty string. Received ${describe(exportName)}`);
  }
  if (typeof transfer !== 'boolean') throw invalidType(`The "transfer" option must be a boolean. Received ${describe(transfer)}`);
  const limits = resourceLimits === undefined ? undefined : checkResourceLimits(resourceLimits);
  if (limits !== undefined && IGNORES_RESOURCE_LIMITS !== null) throw resourceLimitsUnsupportedError(IGNORES_RESOURCE_LIMITS);
  const pool = new ThreadPool({
    module: path,
    exportName,
    max: threads,
    transfer,
    resourceLimits: limits,
    loadTimeout: milliseconds('loadTimeout', loadTimeout, 1),
    idleTimeout: milliseconds('threadIdleTimeout', threadIdleTimeout, 0),
  });
  const name = streamConfig.name ?? `${basename(path)}${exportName === 'default' ? '' : `#${exportName}`}`;
  const closedError = () => new StreamClosedError(`The workerFn "${name}" was closed: it opens no more streams`);
  const makeBody = (_native: unknown, buffer: number): StreamBody<I, O> => {
    if (pool.closed) return new RefusedBody<I, O>(closedError());
    let host: ThreadHost;
    try {
      host = pool.pick();
    } catch (cause) {
      // A thread that cannot start (new Worker() refused: EAGAIN, out of memory, a stack size the system
      // refuses) fails this stream as a crash would, after its slot was taken: the slot is freed with it.
      return new RefusedBody<I, O>(
        new WorkerCrashedError(
          `The worker thread for this stream could not start: ${(cause as Error)?.message ?? String(cause)}`,
          {
            cause,
          },
        ),
      );
    }
    return new CallerBody<I, O>(host, buffer, transfer);
  };
  const fn = singleStage<I, O>(makeBody, streamConfig, name) as WorkerStreamFn<I, O>;
  unreferenced.register(makeBody, pool);
  const close = () => pool.close(closedError());
  Object.defineProperties(fn, {
    close: { value: close, configurable: true, writable: true },
    [Symbol.asyncDispose]: { value: close, configurable: true, writable: true },
    [kThreads]: { value: (): ThreadLoads => ({ loads: pool.loads, max: pool.maxThreads }) },
  });
  return fn;
}
