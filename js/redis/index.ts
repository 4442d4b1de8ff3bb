// velo-stream/redis: stream functions scaled out on Redis/Valkey Streams.
export { redisProducer, type RedisProducer, type RedisProducerOptions } from './producer';
export {
  redisWorker,
  type RedisWorker,
  type RedisWorkerOptions,
  type RedisWorkerStats,
  type RoundTripStats,
  type RenewalStats,
  type SessionLimiters,
  type SessionPermitItem,
  type WorkerLimiterOptions,
  type WorkerPermitStats,
} from './worker';
export { redisOutputs, type HandlerFailure, type OutputItem, type RedisOutputsOptions } from './reader';
export {
  redisKeyOutputs,
  redisCursor,
  type KeyOutput,
  type RedisKeyOutputsOptions,
  type RedisCursorOptions,
  type SessionEndInfo,
} from './key-outputs';
export { redisSse, redisNdjson, type RedisSseOptions, type RedisNdjsonOptions } from './key-http';
export {
  redisMaterialize,
  type RedisMaterializer,
  type RedisMaterializeOptions,
  type MaterializeStats,
  type ValueOutput,
} from './materialize';
export { jsonCodec, bufferCodec, type Codec } from './codec';
export { redisKeyState, type KeyState, type RedisKeyStateOptions, type RedisKeyStates } from './key-state';
export type { KeyStateOptions } from './worker-limits';
export { outputTraceContext } from './trace-context';
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
export { exportRecording, type ExportRecordingOptions } from './recording-export';
export type {
  Recording,
  RecordedPartition,
  RecordedEntry,
  RecordedEvent,
  RecordedMarker,
  RecordedWake,
  RecordedOutput,
  RecordedEnd,
} from './recording';
export { fnv1a } from './options';
export type { RedisOptions } from './options';
export { redisName, type RedisName } from './name';
export {
  redisLimiter,
  type RedisLimiter,
  type RedisLimiterOptions,
  type RedisLimiterStats,
  type RedisPermit,
  type WhenRedisFails,
} from './limiter';
export type { AcquireOptions, LimitSettings, Limiter, LimiterOptions, LimiterStats, Permit, RateLimit } from '../limits/types';
export { redisClientOptions, type RedisClientLike, type RedisClientTimeouts } from './connection';
export {
  redisVersions,
  type DrainedOptions,
  type RedisVersions,
  type RedisVersionsOptions,
  type VersionStatus,
  type VersionedWorker,
} from './version-status';
