// velo-stream/redis: stream functions scaled out on Redis/Valkey Streams.
export {
  /** @deprecated Use sessionProducer from 'velo-stream/durable'. */
  redisProducer,
  /** @deprecated Use Producer from 'velo-stream/durable'. */
  type RedisProducer,
  /** @deprecated Use ProducerOptions from 'velo-stream/durable'. */
  type RedisProducerOptions,
} from './clients/producer';
export {
  /** @deprecated Use sessionWorker from 'velo-stream/durable'. */
  redisWorker,
  /** @deprecated Use Worker from 'velo-stream/durable'. */
  type RedisWorker,
  /** @deprecated Use WorkerOptions from 'velo-stream/durable'. */
  type RedisWorkerOptions,
  /** @deprecated Use WorkerStats from 'velo-stream/durable'. */
  type RedisWorkerStats,
} from './clients/redis-worker';
export {
  /** @deprecated Use Migrate from 'velo-stream/durable'. */
  type Migrate,
  /** @deprecated Use NoInferred from 'velo-stream/durable'. */
  type NoInferred,
  /** @deprecated Use SyncMigrate from 'velo-stream/durable'. */
  type SyncMigrate,
  /** @deprecated Use RoundTripStats from 'velo-stream/durable'. */
  type RoundTripStats,
  /** @deprecated Use RenewalStats from 'velo-stream/durable'. */
  type RenewalStats,
  /** @deprecated Use SessionLimiters from 'velo-stream/durable'. */
  type SessionLimiters,
  /** @deprecated Use SessionPermitItem from 'velo-stream/durable'. */
  type SessionPermitItem,
  /** @deprecated Use WorkerLimiterOptions from 'velo-stream/durable'. */
  type WorkerLimiterOptions,
  /** @deprecated Use WorkerPermitStats from 'velo-stream/durable'. */
  type WorkerPermitStats,
  /** @deprecated Use WorkerSlotStats from 'velo-stream/durable'. */
  type WorkerSlotStats,
} from '../durable/engine/worker';
export {
  /** @deprecated Use sessionOutputs from 'velo-stream/durable'. */
  redisOutputs,
  /** @deprecated Use Outputs from 'velo-stream/durable'. */
  type RedisOutputs,
  /** @deprecated Use OutputsOptions from 'velo-stream/durable'. */
  type RedisOutputsOptions,
} from './clients/reader';
export type {
  /** @deprecated Use HandlerFailure from 'velo-stream/durable'. */
  HandlerFailure,
  /** @deprecated Use OutputItem from 'velo-stream/durable'. */
  OutputItem,
} from '../durable/common/outputs';
export {
  /** @deprecated Use keyOutputs from 'velo-stream/durable'. */
  redisKeyOutputs,
  /** @deprecated Use KeyOutputs from 'velo-stream/durable'. */
  type RedisKeyOutputs,
  /** @deprecated Use keyCursor from 'velo-stream/durable'. */
  redisCursor,
  /** @deprecated Use KeyOutput from 'velo-stream/durable'. */
  type KeyOutput,
  /** @deprecated Use KeyOutputsOptions from 'velo-stream/durable'. */
  type RedisKeyOutputsOptions,
  /** @deprecated Use CursorOptions from 'velo-stream/durable'. */
  type RedisCursorOptions,
  /** @deprecated Use SessionEndInfo from 'velo-stream/durable'. */
  type SessionEndInfo,
} from './clients/key-outputs';
export {
  /** @deprecated Use keySse from 'velo-stream/durable'. */
  redisSse,
  /** @deprecated Use keyNdjson from 'velo-stream/durable'. */
  redisNdjson,
  /** @deprecated Use SseOptions from 'velo-stream/durable'. */
  type RedisSseOptions,
  /** @deprecated Use NdjsonOptions from 'velo-stream/durable'. */
  type RedisNdjsonOptions,
} from './clients/key-http';
export {
  /** @deprecated Use materialize from 'velo-stream/durable'. */
  redisMaterialize,
  /** @deprecated Use Materializer from 'velo-stream/durable'. */
  type RedisMaterializer,
  /** @deprecated Use MaterializeOptions from 'velo-stream/durable'. */
  type RedisMaterializeOptions,
  /** @deprecated Use MaterializeStats from 'velo-stream/durable'. */
  type MaterializeStats,
  /** @deprecated Use ValueOutput from 'velo-stream/durable'. */
  type ValueOutput,
} from './clients/materialize';
export {
  /** @deprecated Use jsonCodec from 'velo-stream/durable'. */
  jsonCodec,
  /** @deprecated Use bufferCodec from 'velo-stream/durable'. */
  bufferCodec,
  /** @deprecated Use Codec from 'velo-stream/durable'. */
  type Codec,
} from '../durable/common/codec';
export {
  /** @deprecated Use keyState from 'velo-stream/durable'. */
  redisKeyState,
  /** @deprecated Use KeyState from 'velo-stream/durable'. */
  type KeyState,
  /** @deprecated Use KeyStatesOptions from 'velo-stream/durable'. */
  type RedisKeyStateOptions,
  /** @deprecated Use KeyStates from 'velo-stream/durable'. */
  type RedisKeyStates,
} from './clients/key-state';
export type {
  /** @deprecated Use KeyStateOptions from 'velo-stream/durable'. */
  KeyStateOptions,
} from '../durable/engine/worker-limits';
export {
  /** @deprecated Use outputTraceContext from 'velo-stream/durable'. */
  outputTraceContext,
} from '../durable/common/trace-context';
// The errors live with every other error of the library (js/errors/); these are the ones this subpath makes.
export {
  /** @deprecated Use CheckpointTooLargeError from 'velo-stream/durable'. */
  CheckpointTooLargeError,
  /** @deprecated Use CloseTimeoutError from 'velo-stream/durable'. */
  CloseTimeoutError,
  /** @deprecated Use EventTooLargeError from 'velo-stream/durable'. */
  EventTooLargeError,
  /** @deprecated Use FencedError from 'velo-stream/durable'. */
  FencedError,
  /** @deprecated Use LagLimitError from 'velo-stream/durable'. */
  LagLimitError,
  /** @deprecated Use OnOutputError from 'velo-stream/durable'. */
  OnOutputError,
  /** @deprecated Use OutputContent from 'velo-stream/durable'. */
  type OutputContent,
  RedisConnectionError,
  /** @deprecated Use ReplayDivergedError from 'velo-stream/durable'. */
  ReplayDivergedError,
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
  /** @deprecated Use TooManyTimersError from 'velo-stream/durable'. */
  TooManyTimersError,
  /** @deprecated Use TimerPastAgeError from 'velo-stream/durable'. */
  TimerPastAgeError,
  /** @deprecated Use SendError from 'velo-stream/durable'. */
  SendError,
  /** @deprecated Use SessionLimitError from 'velo-stream/durable'. */
  SessionLimitError,
  /** @deprecated Use SessionLimitCode from 'velo-stream/durable'. */
  type SessionLimitCode,
  /** @deprecated Use SessionEnd from 'velo-stream/durable'. */
  type SessionEnd,
} from '../errors';
export {
  /** @deprecated Use exportRecording from 'velo-stream/durable'. */
  exportRecording,
  /** @deprecated Use ExportRecordingOptions from 'velo-stream/durable'. */
  type ExportRecordingOptions,
} from './clients/recording-export';
export type {
  /** @deprecated Use Recording from 'velo-stream/durable'. */
  Recording,
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
export {
  /** @deprecated Use fnv1a from 'velo-stream/durable'. */
  fnv1a,
} from './log/options';
export type {
  /** @deprecated Use ShapeOptions and RedisClientOption from 'velo-stream/durable'. */
  RedisOptions,
} from './log/options';
export {
  /** @deprecated Use functionName from 'velo-stream/durable'. */
  redisName,
  /** @deprecated Use FunctionName from 'velo-stream/durable'. */
  type RedisName,
} from './log/name';
export {
  /** @deprecated Use fleetLimiter from 'velo-stream/durable'. */
  redisLimiter,
  /** @deprecated Use FleetLimiter from 'velo-stream/durable'. */
  type RedisLimiter,
  /** @deprecated Use FleetLimiterOptions from 'velo-stream/durable'. */
  type RedisLimiterOptions,
  /** @deprecated Use FleetLimiterStats from 'velo-stream/durable'. */
  type RedisLimiterStats,
  /** @deprecated Use FleetPermit from 'velo-stream/durable'. */
  type RedisPermit,
  /** @deprecated Use WhenBackendFails from 'velo-stream/durable'. */
  type WhenRedisFails,
} from './limiter/limiter';
export type {
  /** @deprecated Use AcquireOptions from 'velo-stream'. */
  AcquireOptions,
  /** @deprecated Use LimitSettings from 'velo-stream'. */
  LimitSettings,
  /** @deprecated Use Limiter from 'velo-stream'. */
  Limiter,
  /** @deprecated Use LimiterOptions from 'velo-stream'. */
  LimiterOptions,
  /** @deprecated Use LimiterStats from 'velo-stream'. */
  LimiterStats,
  /** @deprecated Use Permit from 'velo-stream'. */
  Permit,
  /** @deprecated Use RateLimit from 'velo-stream'. */
  RateLimit,
} from '../limits/types';
export { redisClientOptions, type RedisClientLike, type RedisClientTimeouts } from './log/connection';
export type {
  /** @deprecated Use VersionStatus from 'velo-stream/durable'. */
  VersionStatus,
  /** @deprecated Use VersionedWorker from 'velo-stream/durable'. */
  VersionedWorker,
} from '../durable/rules/versions';
export {
  /** @deprecated Use sessionVersions from 'velo-stream/durable'. */
  redisVersions,
  /** @deprecated Use DrainedOptions from 'velo-stream/durable'. */
  type DrainedOptions,
  /** @deprecated Use Versions from 'velo-stream/durable'. */
  type RedisVersions,
  /** @deprecated Use VersionsOptions from 'velo-stream/durable'. */
  type RedisVersionsOptions,
} from './clients/version-status';
