// velo-stream/durable: the distributed tier's one API, on Redis/Valkey or Postgres. Each entry point picks its
// backend by `options.client` (pick.ts): a node-redis client runs it on Redis, a pg.Pool on Postgres (in
// `options.schema`). The work is the backends' own entry points', under this entry point's name.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StreamFn } from '../types';
import { invalidType } from '../errors';
import { readingOptions } from '../config';
import type { Migrate, SyncMigrate, Worker, WorkerOptions as EngineWorkerOptions } from '../durable/engine/worker-types';
import type { FunctionName, ShapeOptions } from '../durable/common/shape';
import type { KeyReadOptions } from '../durable/common/key-reader';
import type { KeyNdjsonOptions, KeySseOptions } from '../durable/common/key-http';
import type { Recording, RecordingChoice } from '../durable/common/recording';
import type {
  FleetLimiter,
  FleetLimiterBase,
  KeyOutputs,
  KeyStates,
  Materializer,
  Outputs,
  Producer,
  Versions,
  WhenBackendFails,
} from '../durable/common/clients';
import { type Backend, backendOf, readOptions } from './pick';
// Redis
import type { RedisClientOption } from '../redis/log/options';
import { typedName } from '../redis/log/name';
import { type RedisWorkerOptions, startRedisWorker } from '../redis/clients/redis-worker';
import { type RedisProducerOnly, type RedisProducerOptions, startProducer } from '../redis/clients/producer';
import { type RedisOutputsOnly, type RedisOutputsOptions, readOutputs } from '../redis/clients/reader';
import { type RedisCursorOptions, type RedisKeyOutputsOptions, cursorOf, readKeyOutputs } from '../redis/clients/key-outputs';
import { type RedisNdjsonOptions, type RedisSseOptions, serveNdjson, serveSse } from '../redis/clients/key-http';
import { type RedisVersionsOptions, versionsOf } from '../redis/clients/version-status';
import {
  type ExportRecordingOptions as RedisRecordingOptions,
  exportRecording as redisRecording,
} from '../redis/clients/recording-export';
import { keyStatesOf } from '../redis/clients/key-state';
import { type RedisMaterializeOnly, type RedisMaterializeOptions, startMaterializer } from '../redis/clients/materialize';
import { type RedisLimiterOptions, startRedisLimiter } from '../redis/limiter/limiter';
// Postgres
import type { PostgresClientOption } from '../postgres/clients/options';
import { type PostgresWorkerOnly, type PostgresWorkerOptions, startPgWorker } from '../postgres/clients/worker';
import { type PostgresProducerOnly, type PostgresProducerOptions, startPgProducer } from '../postgres/clients/producer';
import { type PostgresOutputsOnly, type PostgresOutputsOptions, readPgOutputs } from '../postgres/clients/outputs';
import {
  type PostgresCursorOptions,
  type PostgresKeyOutputsOnly,
  type PostgresKeyOutputsOptions,
  pgCursorOf,
  readPgKeyOutputs,
} from '../postgres/clients/key-outputs';
import { type PostgresNdjsonOptions, type PostgresSseOptions, servePgNdjson, servePgSse } from '../postgres/clients/key-http';
import { type PostgresVersionsOptions, pgVersionsOf } from '../postgres/clients/versions';
import { type PostgresRecordingOptions, pgRecordingOf } from '../postgres/clients/recording';
import type { PostgresLimiterOnly, PostgresLimiterOptions } from '../postgres/clients/limiter-options';
import { startPgLimiter } from '../postgres/clients/limiter';

// The options of each entry point: the tier's (the shape every process of a function agrees on, and the entry
// point's own), and the backend's part, one per client: `RedisClientOption` (a node-redis client) or
// `PostgresClientOption` (a pg.Pool, and its schema), with the options that backend alone has.

/**
 * The options of `T` (but those `U` has too) as refused: the other backend's own options, with this client (a
 * node-redis client takes no `listen`, a pg.Pool no `group`).
 */
export type Refused<T, U = object> = { [K in Exclude<keyof T, keyof U>]?: never };

/**
 * Options of `sessionWorker`: the worker's own, the log's shape (`name`, typed by `functionName(fn, name)`), and the
 * backend's by `client` (on Postgres, also `listen`, `pollInterval`, `effects` and `callTimeout`).
 */
export type WorkerOptions<O = unknown, I = unknown> = EngineWorkerOptions<O, I> &
  ShapeOptions & {
    /** The function's name; a `FunctionName<I, O>` (`functionName(fn, name)`) must name a function of `fn`'s types. */
    name: FunctionName<I, O>;
  } & ((RedisClientOption & Refused<PostgresWorkerOnly>) | (PostgresClientOption & PostgresWorkerOnly<O>));

/** Options of `sessionProducer`: the log's shape, and the backend's by `client` (`callTimeout`; on Redis, also `maxLag` and `lagInterval`). */
export type ProducerOptions<I = unknown> = ShapeOptions<I> & {
  /** The function's name; a `FunctionName<I, O>` (`functionName(fn, name)`) gives the producer the function's event type. */
  name: FunctionName<I, unknown>;
} & (
    | (RedisClientOption & RedisProducerOnly)
    | (PostgresClientOption & PostgresProducerOnly & Refused<RedisProducerOnly, PostgresProducerOnly>)
  );

/** Options of `sessionOutputs`: the log's shape, and the backend's by `client` with the reader's options there. */
export type OutputsOptions<O = unknown> = ShapeOptions<O> & {
  /** The function's name; a `FunctionName<I, O>` gives the reader the function's output type. */
  name: FunctionName<never, O>;
} & (
    | (RedisClientOption & RedisOutputsOnly & Refused<PostgresOutputsOnly, RedisOutputsOnly>)
    | (PostgresClientOption & PostgresOutputsOnly & Refused<RedisOutputsOnly, PostgresOutputsOnly>)
  );

/** Options of `keyOutputs` (and of `keySse`, `keyNdjson`, which add their own). */
export type KeyOutputsOptions<O = unknown> = ShapeOptions<O> &
  KeyReadOptions<O> & {
    /** The function's name; a `FunctionName<I, O>` gives the reader the function's output type. */
    name: FunctionName<never, O>;
  } & ((RedisClientOption & Refused<PostgresKeyOutputsOnly>) | (PostgresClientOption & PostgresKeyOutputsOnly));

/** Options of `keyNdjson`: those of `keyOutputs`, and the writer's. */
export type NdjsonOptions<O = unknown> = KeyOutputsOptions<O> & KeyNdjsonOptions<O>;

/** Options of `keySse`: those of `keyNdjson`, and SSE's own. */
export type SseOptions<O = unknown> = NdjsonOptions<O> & KeySseOptions<O>;

/** Options of `keyCursor`: the log's shape, the key (or keys), and the backend's by `client`. */
export type CursorOptions = ShapeOptions & {
  /** The key (or `keys`) whose readers will take the cursor. */
  key?: string;
  /** The set of keys, instead of `key`. */
  keys?: readonly string[];
} & (RedisClientOption | PostgresClientOption);

/** Options of `sessionVersions`: the log's shape (the function's name, partitions), and the backend's by `client`. */
export type VersionsOptions = ShapeOptions & (RedisClientOption | PostgresClientOption);

/**
 * Options of `exportRecording`: the log's shape (its `codec` and `maxEventBytes` go unused: bytes are recorded as
 * written), what to record, and the backend's by `client`.
 */
export type ExportRecordingOptions = ShapeOptions & RecordingChoice & (RedisClientOption | PostgresClientOption);

/** Options of `keyState`: the log's shape (the function's name, partitions, codec) and a Redis client (Redis only, for now). */
export type KeyStatesOptions = ShapeOptions & RedisClientOption;

/** Options of `materialize`: the log's shape, a Redis client (it writes Redis hashes), and the materializer's own. */
export type MaterializeOptions<O = unknown> = ShapeOptions<O> & {
  /** The function's name; a `FunctionName<I, O>` gives the materializer the function's output type. */
  name: FunctionName<never, O>;
} & RedisClientOption &
  RedisMaterializeOnly<O>;

/** Options of `fleetLimiter`: the limiter's own, its failure policy, and the backend's by `client`. */
export type FleetLimiterOptions<T = unknown> = FleetLimiterBase<T> & {
  /** See {@link WhenBackendFails}. Default 'fail-closed'. */
  whenBackendFails?: WhenBackendFails;
} & ((RedisClientOption & Refused<PostgresLimiterOnly>) | (PostgresClientOption & PostgresLimiterOnly));

// Each entry point runs the backend's own under its name. The casts: a backend's option types name the client as
// that backend does (Postgres' `pool`); its checks read the option this entry point names (`client`).

/**
 * Runs `fn` as a distributed stream function: this process joins the workers of `options.name`, takes a fair share
 * of its partitions, and runs one session of `fn` per live key, on the backend of `options.client`. Outputs go to
 * the function's outputs; read them with `sessionOutputs` (or `keyOutputs`).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function, `options.client` is neither a
 * node-redis client nor a pg.Pool, or an option is invalid; `ERR_INVALID_ARG_VALUE` for `schema` with a Redis client.
 */
export function sessionWorker<I = unknown, O = unknown, M extends Migrate = Migrate>(
  fn: StreamFn<I, O>,
  options: WorkerOptions<O, I> & { migrate?: M & SyncMigrate<M> },
): Worker {
  const what = 'sessionWorker()';
  const o = readOptions(what, options);
  // (A function or an option that cannot be read, a Proxy whose trap throws, is refused with a code.)
  return readingOptions('fn" or "options', () =>
    backendOf(what, o) === 'redis'
      ? startRedisWorker(fn, o as RedisWorkerOptions<O, I>, what, 'sessionOutputs')
      : startPgWorker(fn, o as unknown as PostgresWorkerOptions<O, I>, what, 'sessionOutputs', 'client'),
  );
}

/** A producer for the distributed stream function `options.name`: `send(key, event)` appends to the key's partition. */
export function sessionProducer<I = unknown>(options: ProducerOptions<I>): Producer<I> {
  const what = 'sessionProducer()';
  const o = readOptions(what, options);
  return readingOptions('options', () =>
    backendOf(what, o) === 'redis'
      ? startProducer(o as RedisProducerOptions<I>, what)
      : startPgProducer(o as unknown as PostgresProducerOptions<I>, what, 'client'),
  );
}

/**
 * The outputs of the function `options.name`, from every partition, as an async iterable (per key in order; across
 * partitions interleaved), or in batches with the positions to keep (`batches()`). A reader keeps its own position
 * (`after`, on both backends); on Redis a `group` may keep it instead, sharing the outputs among its consumers.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for an `after` that is not a plain object or holds an id that is not a
 * string; `ERR_INVALID_ARG_VALUE` for an id that is not an entry id, or `after` with a `group`.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for an `after` key that is not a partition number of the function.
 */
export function sessionOutputs<O = unknown>(options: OutputsOptions<O>): Outputs<O> {
  const what = 'sessionOutputs()';
  const o = readOptions(what, options);
  return readingOptions('options', () =>
    backendOf(what, o) === 'redis'
      ? readOutputs(o as RedisOutputsOptions<O>, what)
      : readPgOutputs(o as unknown as PostgresOutputsOptions<O>, what, 'client'),
  );
}

/**
 * The outputs of `options.key` (or of the set `options.keys`) of the function `options.name`, as an async iterable:
 * each with its `cursor`, to read on exactly after it later (`from`). The options are checked at the call (a `from`
 * that is no cursor of these keys throws `ResumeCursorError`).
 */
export function keyOutputs<O = unknown>(options: KeyOutputsOptions<O>): KeyOutputs<O> {
  const what = 'keyOutputs()';
  const o = readOptions(what, options);
  return backendOf(what, o) === 'redis'
    ? readKeyOutputs(o as RedisKeyOutputsOptions<O>, what)
    : readPgKeyOutputs(o as unknown as PostgresKeyOutputsOptions<O>, what, 'client');
}

/**
 * A cursor at the end of the outputs of `options.key` (or `options.keys`) now: a reader given it as `from` reads what
 * is written after this call. Take it before you send the events whose outputs a client will follow.
 */
export function keyCursor(options: CursorOptions): Promise<string> {
  const what = 'keyCursor()';
  const o = readOptions(what, options);
  return backendOf(what, o) === 'redis'
    ? cursorOf(o as RedisCursorOptions, what)
    : pgCursorOf(o as unknown as PostgresCursorOptions, what, 'client');
}

/**
 * Serves the outputs of `options.key` (or of the set `options.keys`) as Server-Sent Events on `res`, each with its
 * cursor as the event's `id:`: a client that reconnects with `Last-Event-ID` goes on exactly after the last event it
 * got. A bad key or cursor is answered 400, a cursor whose outputs after it were trimmed away 410. Resolves when the
 * response is over; rejects only for arguments that are wrong (not for the client).
 */
export function keySse<O = unknown>(req: IncomingMessage, res: ServerResponse, options: SseOptions<O>): Promise<void> {
  const what = 'keySse()';
  const o = readOptions(what, options);
  return backendOf(what, o) === 'redis'
    ? serveSse(req, res, o as RedisSseOptions<O>, what)
    : servePgSse(req, res, o as unknown as PostgresSseOptions<O>, what, 'client');
}

/**
 * `keySse` as NDJSON: one line per output, `{"id":<cursor>,"value":…}`; the client goes on after a line by passing
 * its `id` back as `options.from`.
 */
export function keyNdjson<O = unknown>(req: IncomingMessage, res: ServerResponse, options: NdjsonOptions<O>): Promise<void> {
  const what = 'keyNdjson()';
  const o = readOptions(what, options);
  return backendOf(what, o) === 'redis'
    ? serveNdjson(req, res, o as RedisNdjsonOptions<O>, what)
    : servePgNdjson(req, res, o as unknown as PostgresNdjsonOptions<O>, what, 'client');
}

/** The versions of the function `options.name` from outside its workers: live sessions per version, and `drained()`. */
export function sessionVersions(options: VersionsOptions): Versions {
  const what = 'sessionVersions()';
  const o = readOptions(what, options);
  return backendOf(what, o) === 'redis'
    ? versionsOf(o as RedisVersionsOptions, what)
    : pgVersionsOf(o as unknown as PostgresVersionsOptions, what, 'client');
}

/**
 * A limiter shared by every process that creates one with the same `name` on the same backend: the fleet holds at
 * most `concurrency` permits at once and admits at most `rate.limit` units per `rate.period` (per key when `key` is
 * given).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a missing or bad client, name or option.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a limit, `leaseTtl`, `maxWaiting` or `callTimeout` out of range.
 */
export function fleetLimiter<T = unknown>(options: FleetLimiterOptions<T>): FleetLimiter<T> {
  const what = 'fleetLimiter()';
  const o = readOptions(what, options);
  return backendOf(what, o) === 'redis'
    ? startRedisLimiter(o as unknown as RedisLimiterOptions<T>, { what, policy: 'whenBackendFails' })
    : startPgLimiter(o as unknown as PostgresLimiterOptions<T>, { what, poolKey: 'client', policy: 'whenBackendFails' });
}

/**
 * Records the sessions of the function `options.name` (input, outputs, ends, live sessions), for `replayRecording`
 * (`velo-stream/testing`) and `velo-replay run --recording`. Nothing is written.
 * @throws {RangeError} `ERR_VELO_RECORDING_TOO_LARGE` when a partition holds more than `maxEntries` input entries,
 * session ends or live sessions, or more than `maxOutputs` outputs, of the keys recorded.
 */
export function exportRecording(options: ExportRecordingOptions): Promise<Recording> {
  const what = 'exportRecording()';
  const o = readOptions(what, options);
  // (On Redis, its own entry point of the same name.)
  return backendOf(what, o) === 'redis'
    ? redisRecording(o as RedisRecordingOptions)
    : pgRecordingOf(o as unknown as PostgresRecordingOptions, what, 'client');
}

/** Refuses a backend an entry point does not run on yet. */
function onRedisOnly(what: string, backend: Backend, why: string): void {
  if (backend !== 'redis') throw invalidType(`${what}: options.client must be a node-redis client: ${why}`);
}

/**
 * Reads and deletes the states the keys of the function `options.name` keep after their sessions (the worker's
 * `keyState` option). On Redis only, for now.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for a pg.Pool (not supported yet), or a bad option.
 */
export function keyState<S = unknown>(options: KeyStatesOptions): KeyStates<S> {
  const what = 'keyState()';
  const o = readOptions(what, options);
  onRedisOnly(what, backendOf(what, o), 'key states are read from outside the worker on Redis only, for now');
  return keyStatesOf<S>(o, what);
}

/**
 * Writes the outputs of the function `options.name` into Redis hashes (one per `key(output)`, its fields
 * `fields(output)`), newest per source key, read with a consumer group. On Redis only.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for a pg.Pool (on Postgres, write your tables in the worker's `effects`),
 * or a bad option.
 */
export function materialize<O = unknown>(options: MaterializeOptions<O>): Materializer {
  const what = 'materialize()';
  const o = readOptions(what, options);
  onRedisOnly(what, backendOf(what, o), "it writes Redis hashes (on Postgres, write your own tables in the worker's effects)");
  return startMaterializer(o as RedisMaterializeOptions<O>, what);
}

/**
 * `name`, typed with `fn`'s event and output types, for the `name` option of every entry point of the function. A
 * name of 1-200 characters without braces, whitespace or lone surrogates (one that both backends take).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or `name` not a string;
 * `ERR_INVALID_ARG_VALUE` for a name that breaks the rule.
 */
export function functionName<I, O>(fn: StreamFn<I, O>, name: string): FunctionName<I, O> {
  return typedName('functionName()', fn, name);
}

// The tier's names, from their one home.
// (The engine's own options of a worker, without the log's shape and the backend's: part of `WorkerOptions`.)
export type { Worker, WorkerStats, WorkerOptions as WorkerOwnOptions } from '../durable/engine/worker-types';
export type {
  Migrate,
  NoInferred,
  SyncMigrate,
  RoundTripStats,
  RenewalStats,
  SessionLimiters,
  SessionPermitItem,
  WorkerLimiterOptions,
  WorkerPermitStats,
  WorkerSlotStats,
} from '../durable/engine/worker';
export type { KeyStateOptions } from '../durable/engine/worker-limits';
export type {
  FleetLimiter,
  FleetLimiterBase,
  FleetLimiterStats,
  FleetPermit,
  KeyOutputs,
  KeyStates,
  MaterializeStats,
  Materializer,
  Outputs,
  Producer,
  Versions,
  WhenBackendFails,
} from '../durable/common/clients';
export type { FunctionName, ShapeOptions } from '../durable/common/shape';
export type { HandlerFailure, OutputBatch, OutputBatchOptions, OutputItem } from '../durable/common/outputs';
export type { KeyOutput, KeyReadOptions, SessionEndInfo } from '../durable/common/key-reader';
export type { KeyNdjsonOptions, KeySseOptions } from '../durable/common/key-http';
export type { KeyState } from '../durable/common/stored';
export type { ValueOutput } from '../redis/clients/materialize';
export { jsonCodec, bufferCodec, type Codec } from '../durable/common/codec';
export { fnv1a } from '../durable/common/keys';
export { outputTraceContext } from '../durable/common/trace-context';
export type { VersionStatus, VersionedWorker } from '../durable/rules/versions';
export type { DrainedOptions } from '../durable/common/drained';
export type {
  Recording,
  RecordingChoice,
  RecordedPartition,
  RecordedEntry,
  RecordedEvent,
  RecordedMarker,
  RecordedWake,
  RecordedOutput,
  RecordedEnd,
} from '../durable/common/recording';
// The backends' parts of the options (what each client brings).
export type { RedisClientOption, RedisProducerOnly, RedisOutputsOnly, RedisMaterializeOnly };
export type {
  PostgresClientOption,
  PostgresWorkerOnly,
  PostgresProducerOnly,
  PostgresOutputsOnly,
  PostgresKeyOutputsOnly,
  PostgresLimiterOnly,
};
// The errors the tier makes (they live with every other error of the library, js/errors/).
export {
  AnswerRestartedError,
  CheckpointTooLargeError,
  CloseTimeoutError,
  EventTooLargeError,
  FencedError,
  JournalDivergedError,
  JournalTooLargeError,
  LagLimitError,
  OnOutputError,
  type OutputContent,
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
