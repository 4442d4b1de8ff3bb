// `workerFn`: a stream function whose handler runs on worker threads. Each
// stream lives on one thread for its whole life; events and outputs cross
// in batches through native lanes (crates/velo-node/src/cross.rs), and a
// thread is woken only when a lane it waits on goes from empty to non-empty
// or gets room.
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertOptionsObject } from '../config';
import { describe, invalidType, invalidValue, outOfRange } from '../errors';
import { singleStage } from '../core/function';
import type { StreamFn, WorkerFnConfig } from '../types';
import { CallerBody } from './caller';
import { ThreadPool } from './pool';
import { workerModuleError } from './protocol';

const MAX_THREADS = 256;

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

/**
 * A stream function whose handler is the export `config.export` (default:
 * `default`) of `module`, run on up to `config.threads` worker threads
 * (default: the machine's available parallelism).
 */
export function workerFn<I, O>(module: string | URL, config?: WorkerFnConfig): StreamFn<I, O> {
  const path = modulePath(module);
  if (config !== undefined) assertOptionsObject(config, 'config', '{ threads: 2 }');
  const {
    threads = availableParallelism(),
    export: exportName = 'default',
    transfer = false,
    resourceLimits,
    ...streamConfig
  } = config ?? {};
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw outOfRange(`The "threads" option must be an integer from 1 to ${MAX_THREADS}. Received ${describe(threads)}`);
  }
  if (typeof exportName !== 'string' || exportName === '') {
    throw invalidType(`The "export" option must be a non-empty string. Received ${describe(exportName)}`);
  }
  if (typeof transfer !== 'boolean') throw invalidType(`The "transfer" option must be a boolean. Received ${describe(transfer)}`);
  if (resourceLimits !== undefined && (typeof resourceLimits !== 'object' || resourceLimits === null)) {
    throw invalidType(
      `The "resourceLimits" option must be an object (as new Worker() takes it). Received ${describe(resourceLimits)}`,
    );
  }
  const pool = new ThreadPool(path, exportName, threads, transfer, resourceLimits);
  const name = streamConfig.name ?? `${basename(path)}${exportName === 'default' ? '' : `#${exportName}`}`;
  return singleStage<I, O>((_native, buffer) => new CallerBody<I, O>(pool.pick(), buffer, transfer), streamConfig, name);
}
