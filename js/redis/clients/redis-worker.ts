// `redisWorker`: the engine's worker (engine/worker.ts) on a Redis/Valkey client.
import type { StreamFn } from '../../types';
import type { WorkerBackend } from '../../durable/common/backend';
import { readsText } from '../../durable/common/codec';
import { ClosedClientReports, isClientClosed, reportable } from '../../durable/common/reportable';
import { RedisConnectionError } from '../../errors';
import { type RedisOptions, resolveOptions } from '../log/options';
import { RedisLog } from '../log/redis-log';
import { WORKER_KEYS, checkWorkerFn, startWorker } from '../../durable/engine/worker';
import type { Migrate, SyncMigrate, Worker, WorkerOptions, WorkerStats } from '../../durable/engine/worker-types';
import type { RedisName } from '../log/name';

/** Options of `redisWorker`: the worker's own (`WorkerOptions`) and those of the function's log on Redis. */
export interface RedisWorkerOptions<O = unknown, I = unknown> extends WorkerOptions<O, I>, RedisOptions {
  /** The function's name in Redis; a `RedisName<I, O>` (`redisName(fn, name)`) must name a function of `fn`'s types. */
  name: RedisName<I, O>;
}

/** A worker on Redis: the same handle as a worker on any backend. */
export type RedisWorker = Worker;
/** A Redis worker's figures: those of a worker on any backend. */
export type RedisWorkerStats = WorkerStats;

/**
 * Runs `fn` as a distributed stream function: this process joins the workers of `options.name`, takes a fair
 * share of its partitions, and runs one instance of `fn` per live key (see docs/durable/README.md for the semantics).
 * Outputs go to the partitions' output streams; read them with `redisOutputs`.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or an option is invalid.
 */
export function redisWorker<I = unknown, O = unknown, M extends Migrate = Migrate>(
  fn: StreamFn<I, O>,
  options: RedisWorkerOptions<O, I> & { migrate?: M & SyncMigrate<M> },
): RedisWorker {
  return startRedisWorker(fn, options, 'redisWorker()', 'redisOutputs');
}

/** `redisWorker` for the entry point `what` (named in its errors, as `outputsReader` is in reports). */
export function startRedisWorker<I, O>(
  fn: StreamFn<I, O>,
  options: RedisWorkerOptions<O, I>,
  what: string,
  outputsReader: string,
): Worker {
  checkWorkerFn(fn, what);
  const o = resolveOptions(options as RedisOptions<unknown>, what, WORKER_KEYS);
  const reports = new ClosedClientReports(o.client);
  const backend: WorkerBackend = {
    name: o.keys.name,
    server: 'Redis',
    outputsReader,
    partitions: o.partitions,
    codec: o.codec,
    maxEventBytes: o.maxEventBytes,
    openLog: (report) => new RedisLog(o.client, o.keys, o.partitions, report, readsText(o.codec)),
    reportable: (error) => reports.filter(error),
    // (A client the user closed is no outage: `reports` tells it once, with what to do.)
    unreachable: (error) => !isClientClosed(error) && reportable(error) instanceof RedisConnectionError,
    check: () => reports.check(),
  };
  return startWorker(fn, backend, options, what);
}
