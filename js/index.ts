export { streamFn } from './core/function';
export { StreamClosedError, StreamLimitError } from './errors';
export type {
  EventSource,
  FeedOutputs,
  OpenOptions,
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
} from './types';
