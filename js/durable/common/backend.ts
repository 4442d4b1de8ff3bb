// The seam between the engine and a backend. The engine (engine/) runs on a `PartitionLog` (transport.ts) and
// imports no backend: an entry point (`redisWorker`, `postgresWorker`) resolves its options into a `WorkerBackend`
// and hands it to the engine's `startWorker`. Redis/Valkey (log/redis-log.ts), Postgres (js/postgres/) and the
// in-memory log of the simulator implement `PartitionLog`; __test__/layers.test.mjs holds the engine to it.
import type { Codec } from './codec';
import type { PartitionLog } from './transport';

/** What a worker runs on: one function's log on a backend, and the shape every process of the function agrees on. */
export interface WorkerBackend {
  /** The function's name. */
  readonly name: string;
  /** The server, as messages name it ('Redis', 'Postgres'), and the reader of its outputs ('redisOutputs'). */
  readonly server: string;
  readonly outputsReader: string;
  /** Partitions (K), fixed for the life of the data. */
  readonly partitions: number;
  readonly codec: Codec<unknown>;
  /** Largest encoded event or output, bytes. */
  readonly maxEventBytes: number;
  /** Opens the function's log for one worker; `report` takes errors of the log's own connections. */
  openLog(report: (error: unknown) => void): PartitionLog;
  /**
   * The error as the worker reports it to `onError` (a lost connection wrapped as the backend names it), or null:
   * not reported (an error already reported while the client stays closed).
   */
  reportable(error: unknown): unknown;
  /** Whether `error` says the server could not be reached (a refused or lost connection), not that a call failed. */
  unreachable(error: unknown): boolean;
  /** Called after each balance: a backend that holds back repeated reports may reset them here. */
  check(): void;
}
