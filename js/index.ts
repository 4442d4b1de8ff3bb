export { streamFn } from './core/function';
export { batch, task } from './core/task';
export { workerFn, type WorkerStreamFn } from './worker/index';
export { limiter, type LocalLimiterOptions } from './limits/local';
export type {
  AcquireOptions,
  Fairness,
  KeyWait,
  LimitSettings,
  Limiter,
  LimiterOptions,
  LimiterStats,
  Permit,
  RateLimit,
} from './limits/types';
export { ERROR_CODE_ALIASES, SourceStalledError, StreamClosedError, StreamLimitError, WorkerCrashedError } from './errors';
export type {
  AdmissionItem,
  BatchConfig,
  EntryInfo,
  EventSource,
  FeedOutputs,
  JournalCall,
  JournalStreamCall,
  OpenOptions,
  RetryConfig,
  SessionItem,
  Stream,
  SessionsConfig,
  SourceFactory,
  DebounceConfig,
  StreamConfig,
  StreamContext,
  StreamFn,
  StreamFnConfig,
  StreamFnStats,
  StreamHandler,
  StreamMetrics,
  StreamSessions,
  StreamState,
  TaskConfig,
  TaskContext,
  WakeUpsAreEvents,
  WakeAtOptions,
  WorkerFnConfig,
} from './types';
