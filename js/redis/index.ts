// velo-stream/redis: stream functions scaled out on Redis/Valkey Streams.
export { redisProducer, type RedisProducer, type RedisProducerOptions } from './producer';
export { redisWorker, type RedisWorker, type RedisWorkerOptions, type RedisWorkerStats } from './worker';
export { redisOutputs, type HandlerFailure, type OutputItem, type RedisOutputsOptions } from './reader';
export {
  redisMaterialize,
  type RedisMaterializer,
  type RedisMaterializeOptions,
  type MaterializeStats,
  type ValueOutput,
} from './materialize';
export { jsonCodec, bufferCodec, EventTooLargeError, type Codec } from './codec';
export {
  CloseTimeoutError,
  LagLimitError,
  OnOutputError,
  type OutputContent,
  RedisConnectionError,
  ReplayDivergedError,
  SendError,
  SessionLimitError,
  type SessionLimitCode,
} from './errors';
export {
  FencedError,
  type PartitionLog,
  type Lease,
  type InputEntry,
  type OutputRecord,
  type Commit,
  type CommitResult,
  type Divergence,
  type ReadResult,
} from './transport';
export { fnv1a } from './options';
export type { RedisOptions } from './options';
export type { RedisClientLike } from './connection';
