// `postgresWorker`: the engine's worker (engine/worker.ts) on the user's pg.Pool, and the effects a handler's outputs
// make in the user's own tables, in the transaction that commits them.
import type { StreamFn } from '../../types';
import { describe, invalidType, invalidValue } from '../../errors';
import { callTimeoutOption, integerOption } from '../../validate';
import type { WorkerBackend } from '../../durable/common/backend';
import type { OutputItem, HandlerFailure } from '../../durable/common/outputs';
import type { Codec } from '../../durable/common/codec';
import type { PartitionLog } from '../../durable/common/transport';
import { type WorkerOptions, WORKER_KEYS, checkWorkerFn, startWorker } from '../../durable/engine/worker';
import type { Migrate, Worker, SyncMigrate } from '../../durable/engine/worker-types';
import type { CommitEffects, WrittenOutput } from '../log/commit';
import { CALL_TIMEOUT_MS } from '../log/gate';
import { PgLog } from '../log/pg-log';
import { isConnectionError, reportableError } from './retry';
import { checkPoolSize, idOf, str } from '../log/sql';
import { type PoolKey, type PostgresClient, type PostgresOptions, resolvePgOptions } from './options';

/** Options of `postgresWorker`: those of `redisWorker` but the Redis ones, and these. */
export interface PostgresWorkerOptions<O = unknown, I = unknown>
  extends WorkerOptions<O, I>, PostgresOptions, PostgresWorkerOnly<O> {}

/** A worker's options on Postgres only. */
export interface PostgresWorkerOnly<O = unknown> {
  /**
   * Default true: the worker waits for input with LISTEN on one connection of the pool, held while it runs (the pool
   * needs one more connection than the worker's calls), and polls too. false: it only polls (behind PgBouncer in
   * transaction mode, where LISTEN does not work).
   */
  listen?: boolean;
  /** How often an idle partition looks for input besides notifications, ms. Default 200. */
  pollInterval?: number;
  /**
   * Effects in your transaction: called in the transaction that commits a batch of outputs (with the sessions'
   * acks and checkpoints), with the outputs it writes (decoded, as `postgresOutputs` yields them) and that
   * transaction's client. Write to your own tables with `tx.query(...)`: your writes commit if and only if the
   * outputs do, and an output is written once per `(sid, seq)` across replays, crashes and takeovers, so each
   * effect happens exactly once. Do not commit or roll back yourself. Called once per transaction, which may carry
   * the commits of a few partitions (each output names its partition; a key's outputs come in order). A throw (or a
   * failed statement) rolls the whole transaction back: it goes to `onError` and each partition's commit is retried
   * alone, called with its own outputs (the partition waits meanwhile). Different transactions run concurrently.
   */
  effects?: (tx: PostgresClient, outputs: readonly OutputItem<O>[]) => Promise<void>;
  /**
   * The longest one of the worker's own statements waits for Postgres' answer, ms (Infinity: no bound). Past it,
   * its connection is destroyed and the call fails with `ERR_VELO_POSTGRES_TIMEOUT`: to `onError`, and retried as
   * while Postgres is away. Your `effects` statements are not bounded by it. Default 10000.
   */
  callTimeout?: number;
}

const PG_WORKER_KEYS = [...WORKER_KEYS, 'listen', 'pollInterval', 'effects', 'callTimeout'];

/** A written output as a reader gets it. */
export function writtenItem<O>(codec: Codec<O>, w: WrittenOutput): OutputItem<O> {
  const base = { id: w.id, partition: w.partition, key: w.key, sid: w.sid, seq: w.seq };
  const traced = w.traceparent === null ? base : { ...base, traceparent: w.traceparent };
  if (w.field === 'e') return { ...traced, error: JSON.parse(w.data.toString()) as HandlerFailure };
  return { ...traced, value: codec.decode(w.data) };
}

/** A row of the `outputs` table (`ms, seq, sid, oseq, key, field, data, tp`) as a reader gets it. */
export function rowItem<O>(codec: Codec<O>, partition: number, r: Record<string, unknown>): OutputItem<O> {
  return writtenItem(codec, {
    partition,
    id: idOf(r.ms, r.seq),
    sid: str(r.sid),
    seq: Number(r.oseq),
    key: str(r.key),
    field: str(r.field) === 'e' ? 'e' : 'v',
    data: r.data as Buffer,
    traceparent: r.tp === null ? null : str(r.tp),
  });
}

/** A log whose every call waits for the tables first (made at the first call: the worker starts synchronously). */
class PreparedLog implements PartitionLog {
  readonly partitions: number;
  readonly #log: PgLog;
  readonly #ready: () => Promise<void>;
  constructor(log: PgLog, ready: () => Promise<void>) {
    this.#log = log;
    this.#ready = ready;
    this.partitions = log.partitions;
  }
  async #call<T>(call: () => Promise<T>): Promise<T> {
    await this.#ready();
    return call();
  }
  heartbeat: PartitionLog['heartbeat'] = (...a) => this.#call(() => this.#log.heartbeat(...a));
  leave: PartitionLog['leave'] = (...a) => this.#call(() => this.#log.leave(...a));
  acquire: PartitionLog['acquire'] = (...a) => this.#call(() => this.#log.acquire(...a));
  renew: PartitionLog['renew'] = (...a) => this.#call(() => this.#log.renew(...a));
  release: PartitionLog['release'] = (...a) => this.#call(() => this.#log.release(...a));
  read: PartitionLog['read'] = (...a) => this.#call(() => this.#log.read(...a));
  entries: PartitionLog['entries'] = (...a) => this.#call(() => this.#log.entries(...a));
  markClose: PartitionLog['markClose'] = (...a) => this.#call(() => this.#log.markClose(...a));
  trim: PartitionLog['trim'] = (...a) => this.#call(() => this.#log.trim(...a));
  trimOutputs: PartitionLog['trimOutputs'] = (...a) => this.#call(() => this.#log.trimOutputs(...a));
  wake: PartitionLog['wake'] = (...a) => this.#call(() => this.#log.wake(...a));
  keyState: PartitionLog['keyState'] = (...a) => this.#call(() => this.#log.keyState(...a));
  snapshots: PartitionLog['snapshots'] = (...a) => this.#call(() => this.#log.snapshots(...a));
  journal: PartitionLog['journal'] = (...a) => this.#call(() => this.#log.journal(...a));
  openings: PartitionLog['openings'] = (...a) => this.#call(() => this.#log.openings(...a));
  marks: PartitionLog['marks'] = (...a) => this.#call(() => this.#log.marks(...a));
  commit: PartitionLog['commit'] = (...a) => this.#call(() => this.#log.commit(...a));
  pinned: PartitionLog['pinned'] = (...a) => this.#call(() => this.#log.pinned(...a));
  lag: PartitionLog['lag'] = (...a) => this.#call(() => this.#log.lag(...a));
  wait: PartitionLog['wait'] = (...a) => this.#call(() => this.#log.wait(...a));
  interrupt: PartitionLog['interrupt'] = () => this.#log.interrupt();
  close: PartitionLog['close'] = (wait) => this.#log.close(wait);
}

/**
 * Runs `fn` as a distributed stream function on Postgres: as `redisWorker` on Redis (the same sessions, leases,
 * replay, checkpoints, timers and key state), its log in tables of `options.schema` on your pool. Outputs go to the
 * partitions' output tables (read them with `postgresOutputs`); with `effects`, also into your own tables, in the
 * same transaction.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or an option is invalid.
 */
export function postgresWorker<I = unknown, O = unknown, M extends Migrate = Migrate>(
  fn: StreamFn<I, O>,
  options: PostgresWorkerOptions<O, I> & { migrate?: M & SyncMigrate<M> },
): Worker {
  return startPgWorker(fn, options, 'postgresWorker()', 'postgresOutputs', 'pool');
}

/**
 * `postgresWorker` for the entry point `what` (named in its errors, as `outputsReader` is in reports), its pool in
 * the option `poolKey`.
 */
export function startPgWorker<I, O>(
  fn: StreamFn<I, O>,
  options: PostgresWorkerOptions<O, I>,
  what: string,
  outputsReader: string,
  poolKey: PoolKey,
): Worker {
  checkWorkerFn(fn, what);
  const o = resolvePgOptions(options as PostgresOptions<unknown>, what, PG_WORKER_KEYS, poolKey);
  const { listen = true, pollInterval = 200, effects } = options;
  const callTimeout = callTimeoutOption(what, options.callTimeout === undefined ? CALL_TIMEOUT_MS : options.callTimeout);
  if (typeof listen !== 'boolean') throw invalidType(`${what}: options.listen must be a boolean, not ${describe(listen)}`);
  checkPoolSize(what, o.pool, listen);
  integerOption(what, 'pollInterval', pollInterval, 1, 60_000, 'from 1 to 60000 (ms)');
  if (effects !== undefined && typeof effects !== 'function')
    throw invalidType(`${what}: options.effects must be a function, not ${describe(effects)}`);
  // (Trimming to what consumer groups acked is Redis': Postgres has no groups, and would keep everything.)
  if ((options as { outputRetention?: unknown }).outputRetention === 'acked')
    throw invalidValue(
      `${what}: options.outputRetention 'acked' is an option on Redis, not on Postgres (it has no consumer groups): bound outputs with outputMaxLen`,
    );
  const codec = o.codec as Codec<O>;
  const onCommit: CommitEffects | undefined =
    effects === undefined
      ? undefined
      : (client, written) =>
          effects(
            client,
            written.map((w) => writtenItem(codec, w)),
          );
  const backend: WorkerBackend = {
    name: o.space.fn,
    server: 'Postgres',
    outputsReader,
    partitions: o.partitions,
    codec: o.codec,
    maxEventBytes: o.maxEventBytes,
    openLog: (report) => {
      const log = new PgLog(o.pool, o.space, o.partitions, {
        onError: report,
        listen,
        pollInterval,
        effects: onCommit,
        // A paused owner's transaction ends before its lease could run out: it never holds a takeover back.
        idleInTransaction: Math.max(1, Math.floor((options.leaseTtl ?? 10_000) / 2)),
        callTimeout,
      });
      // (The tables made through the log's gate: bounded, and close() waits for them.)
      return new PreparedLog(log, () => o.prepare(log.gated));
    },
    reportable: reportableError,
    unreachable: isConnectionError,
    check: () => {},
  };
  return startWorker(fn, backend, options, what);
}
