// Every error code the library makes, in one place: which class carries it, where it comes from, when, and
// what to do. docs/errors.md is generated from this table (scripts/errors-doc.mjs), and
// __test__/error-codes.test.mjs fails when a code in js/ is missing here, a code here is used nowhere, or
// docs/errors.md is out of date.

/** One error code: its class (empty: a plain Error, TypeError or RangeError with the code), origin, cause, remedy. */
export interface ErrorCodeInfo {
  readonly class: string;
  readonly from: string;
  readonly when: string;
  readonly action: string;
}

export const ERROR_CODES = {
  ERR_STREAM_CLOSED: {
    class: 'StreamClosedError',
    from: 'velo-stream',
    when: 'A send to a stream whose input is closed (ended, idle, cancelled, handler finished), or a read with no output left. A send refused because the handler failed has its error as `cause`.',
    action: 'Open a new stream; read `cause` for why the handler stopped.',
  },
  ERR_STREAM_LIMIT: {
    class: 'StreamLimitError',
    from: 'velo-stream',
    when: '`open()` (or `run()`, a session) while `maxConcurrent` streams of the function are open.',
    action: 'Retry later, shed the load, or raise `maxConcurrent`.',
  },
  ERR_VELO_WORKER_CRASHED: {
    class: 'WorkerCrashedError',
    from: 'velo-stream (workerFn)',
    when: 'The worker thread hosting a stream stopped: an uncaught error, `process.exit`, out of memory.',
    action: 'Fix the handler module; the next stream gets a new thread.',
  },
  ERR_VELO_WORKER_MODULE: {
    class: '',
    from: 'velo-stream (workerFn)',
    when: 'A `workerFn` module failed to load, has no such export, its export is not a handler, or it took longer than `loadTimeout`.',
    action: "Check the module path, `export` and the module's top-level code.",
  },
  ERR_VELO_DATA_CLONE: {
    class: 'DataCloneError',
    from: 'velo-stream (workerFn)',
    when: "An event sent to or an output yielded by a worker stream that the structured clone algorithm refuses (a function, a symbol, a class instance holding one): the stream fails with it after what came before. (DOMException's own numeric `code`, 25, is replaced by this string.)",
    action: 'Send and yield plain data: objects, arrays, Maps, Sets, Dates, typed arrays, Buffers, errors.',
  },
  ERR_VELO_SHARED_ARRAY_BUFFER: {
    class: 'DataCloneError',
    from: 'velo-stream (workerFn)',
    when: 'A bare `SharedArrayBuffer` sent to or yielded by a worker stream (a view over one is shared).',
    action: 'Send a typed-array view over it.',
  },
  ERR_VELO_RUNTIME_UNSUPPORTED: {
    class: 'DataCloneError',
    from: 'velo-stream (workerFn)',
    when: 'A view over a `SharedArrayBuffer` sent to or yielded by a worker stream on a runtime whose `node:v8` has no `Serializer` (Bun), where the memory cannot be shared.',
    action: 'Send a copy (a view over an ordinary ArrayBuffer), or run on Node or Deno.',
  },
  ERR_VELO_ADDON_NOT_FOUND: {
    class: '',
    from: 'velo-stream',
    when: 'The native addon for this platform could not be loaded (optional dependencies omitted, a lockfile from another platform, an unsupported platform).',
    action: 'Install with optional dependencies for this platform, or build from a clone (CONTRIBUTING.md).',
  },
  ERR_VELO_INCOMPATIBLE_COPY: {
    class: '',
    from: 'velo-stream',
    when: 'Two copies of velo-stream of incompatible versions are loaded on one thread.',
    action: 'Load one version per process (deduplicate the dependency).',
  },
  ERR_INVALID_ARG_TYPE: {
    class: 'TypeError',
    from: 'every entry point',
    when: "An argument or option of the wrong type (Node's own code for it).",
    action: 'The message names the argument and what was given.',
  },
  ERR_INVALID_ARG_VALUE: {
    class: 'TypeError',
    from: 'every entry point',
    when: 'An argument or option with a value that cannot be used: an unknown option key, a bad event or key for Redis.',
    action: 'The message names the argument and the values allowed.',
  },
  ERR_OUT_OF_RANGE: {
    class: 'RangeError',
    from: 'every entry point',
    when: 'A number option outside its range, not an integer where one is needed, or not a number at all (a numeric option given `"4"`: the message names the range).',
    action: 'The message names the option and its range.',
  },
  ERR_INVALID_RETURN_VALUE: {
    class: 'TypeError',
    from: 'velo-stream, velo-stream/prometheus',
    when: 'A handler that does not return an async iterable; a function list of `registerStreamMetrics` that returns something unusable.',
    action: 'Make the handler an `async function*`; return stream functions from the list function.',
  },
  ERR_INVALID_STATE: {
    class: 'TypeError',
    from: 'velo-stream (sessions)',
    when: "A second reader of a sessions object's merged output while the first is still reading; `ctx.wakeAt()` in a `workerFn` handler.",
    action: 'Read the merged output with one loop; set timers in a handler on the main thread.',
  },
  ERR_VELO_SERIALIZE: {
    class: 'SerializeError',
    from: 'velo-stream/http',
    when: 'An output with no JSON text (a BigInt, a cycle, `undefined`, a function, a symbol) behind an HTTP writer, or a custom `serialize` that returns no string.',
    action: 'Yield JSON-serializable values, or pass a `serialize` that handles them.',
  },
  ERR_BAD_NDJSON: {
    class: 'RequestBodyError',
    from: 'velo-stream/http',
    when: 'A request body line that is not JSON or not UTF-8 (answered 400).',
    action: 'The client sends one JSON value per line.',
  },
  ERR_NDJSON_LINE_TOO_LARGE: {
    class: 'RequestTooLargeError',
    from: 'velo-stream/http',
    when: 'A request body line over `maxLineBytes` (answered 413).',
    action: 'Raise `maxLineBytes`, or split the values.',
  },
  ERR_BODY_TOO_LARGE: {
    class: 'RequestTooLargeError',
    from: 'velo-stream/http',
    when: 'A request body over `maxBodyBytes` (answered 413).',
    action: 'Raise `maxBodyBytes`, or send less.',
  },
  ERR_VELO_EVENT_TOO_LARGE: {
    class: 'EventTooLargeError',
    from: 'velo-stream/redis',
    when: 'An event or output whose encoding is over `maxEventBytes`.',
    action: 'Send smaller events, or raise `maxEventBytes` on every process of the function.',
  },
  ERR_VELO_CHECKPOINT_TOO_LARGE: {
    class: 'CheckpointTooLargeError',
    from: 'velo-stream/redis',
    when: "A `redisWorker` session's `ctx.checkpoint(state)` whose state is over `maxCheckpointBytes` encoded: thrown at the call, and the session fails.",
    action: 'Keep less state, or raise `maxCheckpointBytes`.',
  },
  ERR_VELO_ENCODE: {
    class: 'TypeError',
    from: 'velo-stream/redis',
    when: 'An event, output or checkpoint state the codec cannot encode (with `jsonCodec`: a BigInt, a cycle).',
    action: 'Send values the codec carries, or pass a codec that carries them.',
  },
  ERR_VELO_DECODE: {
    class: 'TypeError',
    from: 'velo-stream/redis',
    when: 'An input entry the codec cannot decode: the session ends before it, with this error as its last output.',
    action: 'Use the same codec on every process of the function.',
  },
  ERR_VELO_SEND_FAILED: {
    class: 'SendError',
    from: 'velo-stream/redis',
    when: 'Some events of a `send`/`sendMany` were not written (Redis refused them, or a call got no answer); `ids` says which.',
    action: 'Send again the events whose id is `null` (and `undefined` if a duplicate is acceptable).',
  },
  ERR_VELO_LAG_LIMIT: {
    class: 'LagLimitError',
    from: 'velo-stream/redis',
    when: "A producer's `maxLag` reached: the key's partition is that far behind.",
    action: 'Back off, or add workers.',
  },
  ERR_VELO_FENCED: {
    class: 'FencedError',
    from: 'velo-stream/redis',
    when: "A worker's write or read after its lease on the partition was gone (another worker owns it).",
    action: 'Nothing: the partition is replayed by its new owner. Frequent ones mean pauses longer than `leaseTtl`.',
  },
  ERR_VELO_SESSION_EVENTS: {
    class: 'SessionLimitError',
    from: 'velo-stream/redis',
    when: "A session reached `maxSessionEvents`: its last output, and the key's next session starts.",
    action: 'Raise `maxSessionEvents`, or treat it as a session boundary.',
  },
  ERR_VELO_SESSION_AGE: {
    class: 'SessionLimitError',
    from: 'velo-stream/redis',
    when: "A session reached `maxSessionAge` (by entry ids): its last output, and the key's next session starts.",
    action: 'Raise `maxSessionAge`, or treat it as a session boundary.',
  },
  ERR_VELO_REPLAY_DIVERGED: {
    class: 'ReplayDivergedError',
    from: 'velo-stream/redis (checkReplay)',
    when: 'A replay made an output other than the one committed before, or fewer outputs.',
    action: 'Make the handler deterministic over its inputs (time from entry ids, not `Date.now()`).',
  },
  ERR_VELO_ON_OUTPUT: {
    class: 'OnOutputError',
    from: 'velo-stream/redis (onOutput)',
    when: '`onOutput` threw or rejected for an output.',
    action: 'Handle errors in `onOutput`; the output is in Redis either way.',
  },
  ERR_VELO_CLOSE_TIMEOUT: {
    class: 'CloseTimeoutError',
    from: 'velo-stream/redis',
    when: "`close()` stopped waiting for `onOutput` at the last lease's deadline.",
    action: 'Read the outputs it did not deliver from Redis (`redisOutputs`).',
  },
  ERR_VELO_LOG_RESET: {
    class: '',
    from: 'velo-stream/redis',
    when: "A partition's fencing epoch went back: Redis lost data (a restart without persistence, a failover to a replica behind).",
    action: 'Turn on persistence (docs/redis/going-to-production.md, section 1); check what was lost.',
  },
  ERR_VELO_REDIS_CONNECTION: {
    class: 'RedisConnectionError',
    from: 'velo-stream/redis',
    when: "A connection of the worker failed (refused, reset, closed, timed out), or the server is still loading its data after a restart (`LOADING`); the client's error is its `cause`. The worker retries.",
    action: 'Check Redis and the network; alert if it lasts.',
  },
  ERR_VELO_CLOSED: {
    class: '',
    from: 'velo-stream/redis',
    when: 'A call of a worker after its `close()`.',
    action: 'Make a new worker.',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** Every code of `ERROR_CODES`. */
export type ErrorCode = keyof typeof ERROR_CODES;
