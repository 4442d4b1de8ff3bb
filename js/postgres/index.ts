// velo-stream/postgres: stream functions scaled out on Postgres, on your pg.Pool (docs/postgres.md). The worker
// is the one `velo-stream/redis` runs (the same sessions, leases, replay, checkpoints, timers and key state);
// `effects` commits a handler's effects on your own tables in the transaction that commits its outputs.
export {
  /** @deprecated Use sessionWorker from 'velo-stream/durable'. */
  postgresWorker,
  /** @deprecated Use WorkerOptions from 'velo-stream/durable'. */
  type PostgresWorkerOptions,
} from './clients/worker';
export {
  /** @deprecated Use sessionProducer from 'velo-stream/durable'. */
  postgresProducer,
  /** @deprecated Use Producer from 'velo-stream/durable'. */
  type PostgresProducer,
  /** @deprecated Use ProducerOptions from 'velo-stream/durable'. */
  type PostgresProducerOptions,
} from './clients/producer';
export {
  /** @deprecated Use sessionOutputs from 'velo-stream/durable'. */
  postgresOutputs,
  /** @deprecated Use Outputs from 'velo-stream/durable'. */
  type PostgresOutputs,
  /** @deprecated Use OutputsOptions from 'velo-stream/durable'. */
  type PostgresOutputsOptions,
} from './clients/outputs';
export {
  /** @deprecated Use keyOutputs from 'velo-stream/durable'. */
  postgresKeyOutputs,
  /** @deprecated Use keyCursor from 'velo-stream/durable'. */
  postgresCursor,
  /** @deprecated Use KeyOutputs from 'velo-stream/durable'. */
  type PostgresKeyOutputs,
  /** @deprecated Use KeyOutputsOptions from 'velo-stream/durable'. */
  type PostgresKeyOutputsOptions,
  /** @deprecated Use CursorOptions from 'velo-stream/durable'. */
  type PostgresCursorOptions,
  /** @deprecated Use KeyOutput from 'velo-stream/durable'. */
  type KeyOutput,
  /** @deprecated Use SessionEndInfo from 'velo-stream/durable'. */
  type SessionEndInfo,
} from './clients/key-outputs';
export {
  /** @deprecated Use keySse from 'velo-stream/durable'. */
  postgresSse,
  /** @deprecated Use keyNdjson from 'velo-stream/durable'. */
  postgresNdjson,
  /** @deprecated Use SseOptions from 'velo-stream/durable'. */
  type PostgresSseOptions,
  /** @deprecated Use NdjsonOptions from 'velo-stream/durable'. */
  type PostgresNdjsonOptions,
} from './clients/key-http';
export {
  /** @deprecated Use sessionVersions from 'velo-stream/durable'. */
  postgresVersions,
  /** @deprecated Use Versions from 'velo-stream/durable'. */
  type PostgresVersions,
  /** @deprecated Use VersionsOptions from 'velo-stream/durable'. */
  type PostgresVersionsOptions,
} from './clients/versions';
export type {
  /** @deprecated Use DrainedOptions from 'velo-stream/durable'. */
  DrainedOptions,
} from '../durable/common/drained';
export type {
  /** @deprecated Use VersionStatus from 'velo-stream/durable'. */
  VersionStatus,
  /** @deprecated Use VersionedWorker from 'velo-stream/durable'. */
  VersionedWorker,
} from '../durable/rules/versions';
export type {
  PostgresClient,
  /** @deprecated Use ShapeOptions and PostgresClientOption from 'velo-stream/durable'. */
  PostgresOptions,
} from './clients/options';
export type { PgPoolLike as PostgresPool, PgClientLike as PostgresPoolClient, PgResult as PostgresResult } from './log/sql';
export type {
  /** @deprecated Use OutputItem from 'velo-stream/durable'. */
  OutputItem,
  /** @deprecated Use HandlerFailure from 'velo-stream/durable'. */
  HandlerFailure,
} from '../durable/common/outputs';
export type {
  /** @deprecated Use Worker from 'velo-stream/durable'. */
  Worker,
  /** @deprecated Use WorkerStats from 'velo-stream/durable'. */
  WorkerStats,
} from '../durable/engine/worker-types';
export {
  /** @deprecated Use jsonCodec from 'velo-stream/durable'. */
  jsonCodec,
  /** @deprecated Use bufferCodec from 'velo-stream/durable'. */
  bufferCodec,
  /** @deprecated Use Codec from 'velo-stream/durable'. */
  type Codec,
} from '../durable/common/codec';
export {
  /** @deprecated Use fnv1a from 'velo-stream/durable'. */
  fnv1a,
} from '../durable/common/keys';
export {
  /** @deprecated Use ResumeCursorError from 'velo-stream/durable'. */
  ResumeCursorError,
  /** @deprecated Use ResumeCursorErrorJSON from 'velo-stream/durable'. */
  type ResumeCursorErrorJSON,
  /** @deprecated Use ResumeCursorReason from 'velo-stream/durable'. */
  type ResumeCursorReason,
  /** @deprecated Use ResumeTrimmedError from 'velo-stream/durable'. */
  ResumeTrimmedError,
  /** @deprecated Use ResumeTrimmedErrorJSON from 'velo-stream/durable'. */
  type ResumeTrimmedErrorJSON,
} from '../errors';
// Recordings: a function's sessions read from the tables in the format of `exportRecording` (velo-stream/redis), for
// the testing kit's `replayRecording` and `velo-replay run --recording`.
export {
  /** @deprecated Use exportRecording from 'velo-stream/durable'. */
  postgresRecording,
  /** @deprecated Use ExportRecordingOptions from 'velo-stream/durable'. */
  type PostgresRecordingOptions,
} from './clients/recording';
export type {
  /** @deprecated Use Recording from 'velo-stream/durable'. */
  Recording,
  /** @deprecated Use RecordingChoice from 'velo-stream/durable'. */
  RecordingChoice,
  /** @deprecated Use RecordedPartition from 'velo-stream/durable'. */
  RecordedPartition,
  /** @deprecated Use RecordedEntry from 'velo-stream/durable'. */
  RecordedEntry,
  /** @deprecated Use RecordedEvent from 'velo-stream/durable'. */
  RecordedEvent,
  /** @deprecated Use RecordedMarker from 'velo-stream/durable'. */
  RecordedMarker,
  /** @deprecated Use RecordedWake from 'velo-stream/durable'. */
  RecordedWake,
  /** @deprecated Use RecordedOutput from 'velo-stream/durable'. */
  RecordedOutput,
  /** @deprecated Use RecordedEnd from 'velo-stream/durable'. */
  RecordedEnd,
} from '../durable/common/recording';
// The fleet limiter on Postgres (the same Limiter contract as redisLimiter's; docs/postgres.md#fleet-limiter-options).
export {
  /** @deprecated Use fleetLimiter from 'velo-stream/durable'. */
  postgresLimiter,
  /** @deprecated Use FleetLimiter from 'velo-stream/durable'. */
  type PostgresLimiter,
  /** @deprecated Use FleetLimiterOptions from 'velo-stream/durable'. */
  type PostgresLimiterOptions,
  /** @deprecated Use FleetLimiterStats from 'velo-stream/durable'. */
  type PostgresLimiterStats,
  /** @deprecated Use FleetPermit from 'velo-stream/durable'. */
  type PostgresPermit,
  /** @deprecated Use WhenBackendFails from 'velo-stream/durable'. */
  type WhenPostgresFails,
} from './clients/limiter';
