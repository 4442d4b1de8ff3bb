// velo-stream/redis: stream functions scaled out on Redis/Valkey Streams.
export { redisProducer, type RedisProducer, type RedisProducerOptions } from './producer';
export {
  redisWorker,
  type RedisWorker,
  type RedisWorkerOptions,
  type RedisWorkerStats,
  type RoundTripStats,
  type RenewalStats,
} from './worker';
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
  CheckpointTooLargeError,
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
// The partitioned log the worker runs on (transport.ts) is internal: it is not pluggable, so its types are not
// part of the API. FencedError is: it reaches onError.
export { FencedError } from './transport';
export { fnv1a } from './options';
export type { RedisOptions } from './options';
export type { RedisClientLike } from './connection';
