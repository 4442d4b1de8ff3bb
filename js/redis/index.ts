// velo-stream/redis: stream functions scaled out on Redis/Valkey Streams.
export { redisProducer, type RedisProducer, type RedisProducerOptions } from './clients/producer';
export { redisWorker, type RedisWorker, type RedisWorkerOptions, type RedisWorkerStats } from './clients/redis-worker';
export {
  type Migrate,
  type NoInferred,
  type SyncMigrate,
  type RoundTripStats,
  type RenewalStats,
  type SessionLimiters,
  type SessionPermitItem,
  type WorkerLimiterOptions,
  type WorkerPermitStats,
  type WorkerSlotStats,
} from '../durable/engine/worker';
export { redisOutputs, type RedisOutputs, type RedisOutputsOptions } from './clients/reader';
export type { HandlerFailure, OutputItem } from '../durable/common/outputs';
export {
  redisKeyOutputs,
  type RedisKeyOutputs,
  redisCursor,
  type KeyOutput,
  type RedisKeyOutputsOptions,
  type RedisCursorOptions,
  type SessionEndInfo,
} from './clients/key-outputs';
export { redisSse, redisNdjson, type RedisSseOptions, type RedisNdjsonOptions } from './clients/key-http';
export {
  redisMaterialize,
  type RedisMaterializer,
  type RedisMaterializeOptions,
  type MaterializeStats,
  type ValueOutput,
} from './clients/materialize';
export { jsonCodec, bufferCodec, type Codec } from '../durable/common/codec';
export { redisKeyState, type KeyState, type RedisKeyStateOptions, type RedisKeyStates } from './clients/key-state';
export type { KeyStateOptions } from '../durable/engine/worker-limits';
export { outputTraceContext } from '../durable/common/trace-context';
// The errors live with every other error of the library (js/errors.ts); these are the ones this subpath makes.
export {
  CheckpointTooLargeError,
  CloseTimeoutError,
  EventTooLargeError,
  FencedError,
  LagLimitError,
  OnOutputError,
  type OutputContent,
  RedisConnectionError,
  ReplayDivergedError,
  ResumeCursorError,
  type ResumeCursorErrorJSON,
  type ResumeCursorReason,
  ResumeTrimmedError,
  type ResumeTrimmedErrorJSON,
  TooManyTimersError,
  TimerPastAgeError,
  SendError,
  SessionLimitError,
  type SessionLimitCode,
  type SessionEnd,
} from '../errors';
export { exportRecording, type ExportRecordingOptions } from './clients/recording-export';
export type {
  Recording,
  RecordedPartition,
  RecordedEntry,
  RecordedEvent,
  RecordedMarker,
  RecordedWake,
  RecordedOutput,
  RecordedEnd,
} from '../durable/common/recording';
export { fnv1a } from './log/options';
export type { RedisOptions } from './log/options';
export { redisName, type RedisName } from './log/name';
export type { FunctionName } from '../durable/common/shape';
export {
  redisLimiter,
  type RedisLimiter,
  type RedisLimiterOptions,
  type RedisLimiterStats,
  type RedisPermit,
  type WhenRedisFails,
} from './limiter/limiter';
export type { AcquireOptions, LimitSettings, Limiter, LimiterOptions, LimiterStats, Permit, RateLimit } from '../limits/types';
export { redisClientOptions, type RedisClientLike, type RedisClientTimeouts } from './log/connection';
export type { VersionStatus, VersionedWorker } from '../durable/rules/versions';
export { redisVersions, type DrainedOptions, type RedisVersions, type RedisVersionsOptions } from './clients/version-status';
