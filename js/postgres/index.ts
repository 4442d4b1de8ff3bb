// velo-stream/postgres: stream functions scaled out on Postgres, on your pg.Pool (docs/postgres.md). The worker
// is the one `velo-stream/redis` runs (the same sessions, leases, replay, checkpoints, timers and key state);
// `effects` commits a handler's effects on your own tables in the transaction that commits its outputs.
export { postgresWorker, type PostgresWorkerOptions } from './clients/worker';
export { postgresProducer, type PostgresProducer, type PostgresProducerOptions } from './clients/producer';
export { postgresOutputs, type PostgresOutputs, type PostgresOutputsOptions } from './clients/outputs';
export {
  postgresKeyOutputs,
  postgresCursor,
  type PostgresKeyOutputs,
  type PostgresKeyOutputsOptions,
  type PostgresCursorOptions,
  type KeyOutput,
  type SessionEndInfo,
} from './clients/key-outputs';
export { postgresSse, postgresNdjson, type PostgresSseOptions, type PostgresNdjsonOptions } from './clients/key-http';
export { postgresVersions, type PostgresVersions, type PostgresVersionsOptions } from './clients/versions';
export type { DrainedOptions } from '../durable/common/drained';
export type { VersionStatus, VersionedWorker } from '../durable/rules/versions';
export type { PostgresClient, PostgresOptions } from './clients/options';
export type { PgPoolLike as PostgresPool, PgClientLike as PostgresPoolClient, PgResult as PostgresResult } from './log/sql';
export type { OutputItem, HandlerFailure } from '../durable/common/outputs';
export type { Worker, WorkerStats } from '../durable/engine/worker-types';
export { jsonCodec, bufferCodec, type Codec } from '../durable/common/codec';
export { fnv1a } from '../durable/common/keys';
export {
  ResumeCursorError,
  type ResumeCursorErrorJSON,
  type ResumeCursorReason,
  ResumeTrimmedError,
  type ResumeTrimmedErrorJSON,
} from '../errors';
// Recordings: a function's sessions read from the tables in the format of `exportRecording` (velo-stream/redis), for
// the testing kit's `replayRecording` and `velo-replay run --recording`.
export { postgresRecording, type PostgresRecordingOptions } from './clients/recording';
export type {
  Recording,
  RecordingChoice,
  RecordedPartition,
  RecordedEntry,
  RecordedEvent,
  RecordedMarker,
  RecordedWake,
  RecordedOutput,
  RecordedEnd,
} from '../durable/common/recording';
// The fleet limiter on Postgres (the same Limiter contract as redisLimiter's; docs/postgres.md#fleet-limiter-options).
export {
  postgresLimiter,
  type PostgresLimiter,
  type PostgresLimiterOptions,
  type PostgresLimiterStats,
  type PostgresPermit,
  type WhenPostgresFails,
} from './clients/limiter';
