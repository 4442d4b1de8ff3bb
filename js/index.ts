export { streamFn } from './function';
export { StreamClosedError, StreamLimitError } from './errors';
export type {
  EventSource,
  OpenOptions,
  Stream,
  StreamConfig,
  StreamContext,
  StreamFn,
  StreamFnStats,
  StreamHandler,
  StreamMetrics,
  StreamState,
} from './types';
