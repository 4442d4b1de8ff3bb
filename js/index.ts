export { streamFn } from './core/function';
export { batch, task } from './core/task';
export { StreamClosedError, StreamLimitError } from './errors';
export type {
  BatchConfig,
  EventSource,
  FeedOutputs,
  OpenOptions,
  RetryConfig,
  SessionItem,
  Stream,
  StreamConfig,
  StreamContext,
  StreamFn,
  StreamFnStats,
  StreamHandler,
  StreamMetrics,
  StreamSessions,
  StreamState,
  TaskConfig,
  TaskContext,
} from './types';
