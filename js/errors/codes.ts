// The table of error codes: what each means, where it comes from and what to do (docs/errors.md is generated
// from it by scripts/errors-doc.mjs), and the old names of renamed codes.

/** One error code: its class (empty: a plain Error, TypeError or RangeError with the code), origin, cause, remedy. */
export interface ErrorCodeInfo {
  readonly class: string;
  readonly from: string;
  readonly when: string;
  readonly action: string;
}

export const ERROR_CODES = {
  ERR_VELO_STREAM_CLOSED: {
    class: 'StreamClosedError',
    from: 'velo-stream',
    when: 'A send to a stream whose input is closed (ended, idle, cancelled, handler finished), or a read with no output left. A send refused because the handler failed has its error as `cause`.',
    action: 'Open a new stream; read `cause` for why the handler stopped.',
  },
  ERR_VELO_STREAM_LIMIT: {
    class: 'StreamLimitError',
    from: 'velo-stream',
    when: '`open()` (or `run()`, a session) while `maxConcurrent` streams of the function are open. Its `status` is 503, for an HTTP answer.',
    action:
      'Retry later, shed the load, or raise `maxConcurrent`; in a plain `node:http` handler, answer it with `sendError(res, error)` (docs/http.md).',
  },
  ERR_VELO_SOURCE_STALLED: {
    class: 'SourceStalledError',
    from: 'velo-stream',
    when: "The source given to `feed()` or `run()` gave no event for the stream's `idleTimeout` while the stream waited on it (an upstream that stopped answering mid-way): the source is closed, a generator handler's input loop throws this error after the events before it, and `run()` or a `for await` over `feed()` rejects with it after the outputs. The HTTP writers answer it as an error event after the outputs (504 before any). An explicit `end()` or a source that ends stays a clean end.",
    action:
      "Find why the source stopped (the upstream's own timeout, its logs); raise `idleTimeout` above the longest pause between its events; pass the feed's `signal` to the upstream call so that it is aborted too.",
  },
  ERR_VELO_WORKER_CRASHED: {
    class: 'WorkerCrashedError',
    from: 'velo-stream (workerFn)',
    when: 'The worker thread hosting a stream stopped (an uncaught error, `process.exit`, out of memory), or could not start (`new Worker()` refused: too many threads, a stack size the system refuses; the cause says which).',
    action: 'Fix the handler module; the next stream gets a new thread.',
  },
  ERR_VELO_WORKER_MODULE: {
    class: '',
    from: 'velo-stream (workerFn)',
    when: 'A `workerFn` module failed to load, has no such export, its export is not a handler, or it took longer than `loadTimeout`.',
    action: "Check the module path, `export` and the module's top-level code.",
  },
  ERR_VELO_DATA_CLONE: {
    class: 'DOMException',
    from: 'velo-stream (workerFn)',
    when: "An event sent to or an output yielded by a worker stream that the structured clone algorithm refuses (a function, a symbol, a class instance holding one): the stream fails with it after what came before. (DOMException's own numeric `code`, 25, is replaced by this string.)",
    action: 'Send and yield plain data: objects, arrays, Maps, Sets, Dates, typed arrays, Buffers, errors.',
  },
  ERR_VELO_SHARED_ARRAY_BUFFER: {
    class: 'DOMException',
    from: 'velo-stream (workerFn)',
    when: 'A bare `SharedArrayBuffer` sent to or yielded by a worker stream (a view over one is shared).',
    action: 'Send a typed-array view over it.',
  },
  ERR_VELO_RUNTIME_UNSUPPORTED: {
    class: 'DOMException, Error',
    from: 'velo-stream (workerFn)',
    when: "What the runtime cannot do (Bun, docs/runtimes.md): share a `SharedArrayBuffer` view with a worker stream (the stream fails with a `DataCloneError`), or honour `workerFn`'s `resourceLimits` (`workerFn()` throws).",
    action: 'Send a copy (a view over an ordinary ArrayBuffer); leave out `resourceLimits` there; or run on Node.',
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
    when: 'An argument or option with a value that cannot be used: an unknown option key, a bad event or key for Redis or Postgres.',
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
    from: 'velo-stream (streams, sessions), velo-stream/http, velo-stream/testing',
    when: "A second `feed()` on a stream while another still reads its source; a second reader of a sessions object's merged output; a second HTTP writer (`sendNdjson`, `sendSse`, `writeResponse`, a `toReadable` piped into it) on a response that has one; `ctx.wakeAt()`/`ctx.cancelTimer()` in a `workerFn` handler; a test worker's `advance()`/`settle()` while another runs, or a call but a read after `close()`.",
    action:
      'Merge the sources into one (or `send()` beside the feed); read the merged output with one loop; write a response with one writer (merge the outputs into one stream first); set timers in a handler on the main thread; await each `advance()`/`settle()` before the next, and close a test worker last.',
  },
  ERR_VELO_SERIALIZE: {
    class: 'SerializeError',
    from: 'velo-stream/http',
    when: 'An output with no JSON text (a BigInt, a cycle, `undefined`, a function, a symbol) behind an HTTP writer, or a custom `serialize` that returns no string (or, for NDJSON, text with a line break).',
    action: 'Yield JSON-serializable values, or pass a `serialize` that handles them.',
  },
  ERR_VELO_BAD_NDJSON: {
    class: 'RequestBodyError',
    from: 'velo-stream/http',
    when: 'A request body line that is not JSON or not UTF-8 (answered 400).',
    action: 'The client sends one JSON value per line.',
  },
  ERR_VELO_NDJSON_LINE_TOO_LARGE: {
    class: 'RequestTooLargeError',
    from: 'velo-stream/http',
    when: 'A request body line over `maxLineBytes` (answered 413).',
    action: 'Raise `maxLineBytes`, or split the values.',
  },
  ERR_VELO_BODY_TOO_LARGE: {
    class: 'RequestTooLargeError',
    from: 'velo-stream/http',
    when: 'A request body over `maxBodyBytes` (answered 413).',
    action: 'Raise `maxBodyBytes`, or send less.',
  },
  ERR_VELO_BODY_TIMEOUT: {
    class: 'RequestBodyTimeoutError',
    from: 'velo-stream/http',
    when: 'The stream fed by `ndjsonEvents` stopped reading the request body (its `idleTimeout` passed, or `end()`) while a line of it was still arriving: the writers answer 408 (or an error line after outputs), and `run()` or a `for await` over `feed()` rejects with it after the outputs, rather than a success over a cut body. `idleTimeout` counts whole lines, not bytes.',
    action: 'Raise `idleTimeout` above the longest time a line of the body takes to arrive, or have the client send whole lines.',
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
    when: "A `sessionWorker` session's `ctx.checkpoint(state)` whose state, with the timers it records (those its handler has not taken, with their payloads), is over `maxCheckpointBytes` encoded: thrown at the call, and the session fails.",
    action: 'Keep less state or fewer pending timers, or raise `maxCheckpointBytes`.',
  },
  ERR_VELO_JOURNAL_DIVERGED: {
    class: 'JournalDivergedError',
    from: 'velo-stream/durable',
    when: "A replay of a session asked a journaled call (`ctx.run`, `ctx.stream`) other than the one recorded at that place (another name, or `ctx.run` where `ctx.stream` was recorded, or the reverse): the handler's calls are not the same on every run over the same inputs (a call made or skipped by outside state, or a new version that calls in another order). Thrown into the handler at the call, and reported to the worker's `onError`.",
    action:
      'Make the sequence of journaled calls depend only on the inputs and on earlier journaled results; in a new version, keep the calls an answer in flight makes, or catch the error and answer again.',
  },
  ERR_VELO_ANSWER_RESTARTED: {
    class: 'AnswerRestartedError',
    from: 'velo-stream/durable',
    when: "A session adopted by `migrate` mid-answer: the new version took the old version's journaled records of that answer, but its outputs are not the old ones continued: another number of them before a record (or before its first call past the records) than the old version had, other outputs up to the old version's last written one, or some of the records left untaken. Its whole answer is written after the old version's partial one, and the worker reports this error to `onError` (nothing is thrown into the handler).",
    action:
      'Keep what an answer yields the same from one version to the next, its end included (no version number in it), and begin every answer with the same marker output: a restart writes it again, which readers can act on.',
  },
  ERR_VELO_JOURNAL_TOO_LARGE: {
    class: 'JournalTooLargeError',
    from: 'velo-stream/durable',
    when: "A session's journal (the results and chunks of its journaled calls since its last checkpoint) would pass `maxJournalBytes`: thrown at the call that would pass it. The result is not kept; the refusal is, and a replay throws it again at that call without running its body.",
    action:
      'Checkpoint more often (a checkpoint drops the records it covers), journal smaller results, or raise `maxJournalBytes`.',
  },
  ERR_VELO_TOO_MANY_TIMERS: {
    class: 'TooManyTimersError',
    from: 'velo-stream/redis',
    when: "A `sessionWorker` session's `ctx.wakeAt()` while it has `maxSessionTimers` timers not taken by its handler: thrown at the call (no timer is made).",
    action: 'Make fewer timers per session (one per deadline, not one per event), or raise `maxSessionTimers`.',
  },
  ERR_VELO_TEST_NOT_SETTLED: {
    class: '',
    from: 'velo-stream/testing',
    when: "A test worker's `settle(within)` or a `checkDeterminism` run did not end every session within its virtual time: a session still open (often a timer computed from `Date.now()`), or a handler waiting on a real timer or I/O (the message says so).",
    action:
      'Give the run more virtual time (`settle(within)`, `settleWithin`), end sessions sooner (`idleTimeout`, `maxSessionAge`), or give the handler its waits as `ctx.wakeAt` timers.',
  },
  ERR_VELO_TEST_SERVER: {
    class: '',
    from: 'velo-stream/testing',
    when: '`redisService()` or `postgresService()` could not start its private server: `redis-server` (or the `command` given, or `$VELO_REDIS_SERVER`) is not installed or cannot be run; no `initdb` and `postgres` were found (the `bin` given, `$VELO_POSTGRES_BIN`, `pg_config --bindir`, `/usr/lib/postgresql/*/bin`) or initdb failed; the `pg` package cannot be loaded; or the server did not say it was ready within `startTimeout`. The message names what it tried and what the server printed.',
    action:
      'Install the server (Redis: `apt-get install redis-server` or `brew install redis`; Postgres: `apt-get install postgresql-15` or `brew install postgresql@15`) or point the option or variable at it; for `postgresService()`, `npm install --save-dev pg`.',
  },
  ERR_VELO_TEST_STEPS: {
    class: '',
    from: 'velo-stream/testing',
    when: 'One `advance()`, `settle()` or `checkDeterminism` run took 2 000 000 steps, or its handlers 100 000 steps at one virtual time: most likely a handler looping without end (a timer due at once made on every input, outputs yielded without taking input). The looping process is stopped, as `crash()` does.',
    action:
      'Look for a handler that makes a timer or an output for ever; move time in shorter spans; send many events at different times.',
  },
  ERR_VELO_RECORDING_INVALID: {
    class: '',
    from: 'velo-stream/testing',
    when: '`parseRecording`, `replayRecording` or `velo-replay` got a recording that `exportRecording` did not write (not JSON, another version, a bad field). The message names the field.',
    action:
      'Export the recording again (`velo-replay export`, `exportRecording`); do not edit it by hand, or keep to the format in docs/durable/replay-before-deploy.md.',
  },
  ERR_VELO_RECORDING_TOO_LARGE: {
    class: '',
    from: 'velo-stream/redis',
    when: 'A recording over `maxEntries`, `maxOutputs` or `maxBytes`, at export or parse. Nothing is cut: a partial recording would report differences that are not there.',
    action:
      'Record fewer sessions (`keys`, `since`, `partitions`), or raise the bound (`--max-entries`, `--max-outputs`, `--max-bytes`).',
  },
  ERR_VELO_PEER_MISSING: {
    class: '',
    from: 'velo-replay',
    when: '`velo-replay --redis` without the package `redis` (node-redis) installed, or `--postgres` without `pg` (node-postgres): optional peer dependencies, loaded only when asked for. Its `cause` is the failed import.',
    action: 'Install the one it names beside velo-stream (`npm i redis` or `npm i pg`), or export and run from a file.',
  },
  ERR_VELO_TIMER_PAST_AGE: {
    class: 'TimerPastAgeError',
    from: 'velo-stream/redis',
    when: "A `sessionWorker` session's `ctx.wakeAt(time)` after the session's age end (first entry plus `maxSessionAge`): it could never fire. Thrown at the call; no timer is made.",
    action:
      "Compute `time` within the session (from `ctx.entry.time`), or raise `maxSessionAge`; a deadline past it belongs to the key's next session.",
  },
  ERR_VELO_PIPE_SESSION_CALL: {
    class: 'TypeError',
    from: 'velo-stream/redis',
    when: "A stage of a pipe run by `sessionWorker` calls `ctx.checkpoint()`, `ctx.wakeAt()`, `ctx.cancelTimer()`, `ctx.run()` or `ctx.stream()`: a pipe's stages have no durable side, and the call would be lost on a takeover.",
    action:
      "Run the stateful step as its own `sessionWorker` function (a single handler, not a pipe), or keep the pipe's stages stateless.",
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
    when: 'An input entry (the session ends before it, with this error as its last output) or a checkpoint (the restored session fails with it) the codec cannot decode.',
    action:
      'Use the same codec on every process of the function, and one that still decodes the checkpoints stored before a deployment.',
  },
  ERR_VELO_MIGRATE: {
    class: 'TypeError',
    from: 'velo-stream/redis',
    when: "A worker's `migrate(state, fromVersion)` threw, or returned a state the codec cannot encode: the adopted session fails with it, and the events after its checkpoint open the key's next session.",
    action:
      'Make `migrate` total over the states the old version checkpoints (a test: replay recorded sessions with `velo-replay`), and return a state the codec carries.',
  },
  ERR_VELO_SEND_FAILED: {
    class: 'SendError',
    from: 'velo-stream/redis',
    when: 'Some events of a `send`/`sendMany` were not written (the server refused them, or a call got no answer); `ids` says which.',
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
    when: 'A replay made an output other than the one committed before, or fewer outputs, or ended a session elsewhere or for another reason.',
    action: "Make the handler deterministic over its inputs (time from `ctx.entry.time`, the entry id's, not `Date.now()`).",
  },
  ERR_VELO_ON_OUTPUT: {
    class: 'OnOutputError',
    from: 'velo-stream/redis (onOutput)',
    when: '`onOutput` threw or rejected for an output.',
    action: 'Handle errors in `onOutput`; the output is stored either way (`sessionOutputs` reads it).',
  },
  ERR_VELO_ON_ERROR: {
    class: '',
    from: 'velo-stream/durable, velo-stream/redis, velo-stream/dashboard (onError)',
    when: '`onError` threw, or the promise it returned rejected, while it was given an error (`reported`); given to `process.emitWarning`, and the worker went on.',
    action:
      'Handle errors in `onError` (a logger that fails, an assertion); the error it was given is `reported`, what it threw `cause`.',
  },
  ERR_VELO_CLOSE_TIMEOUT: {
    class: 'CloseTimeoutError',
    from: 'velo-stream/redis',
    when: "`close()` stopped waiting at the last lease's deadline: for the server (Redis, Postgres) to answer, a handler to finish, or `onOutput`; the partitions still held were dropped (the next owner replays them).",
    action:
      'Let handlers finish within `leaseTtl` (they get the cancel); read the outputs it did not deliver with `sessionOutputs`.',
  },
  ERR_VELO_LOG_RESET: {
    class: '',
    from: 'velo-stream/redis',
    when: "A partition's fencing epoch went back, or a key's output reader (`keyOutputs`, `keySse`, `keyNdjson`) found a partition's outputs ending before the position it had read to: the server lost data (Redis: a restart without persistence, a failover to a replica behind; Postgres: a restore from an older backup).",
    action:
      'On Redis, turn on persistence (docs/redis.md, operations; docs/durable/production.md, section 1); check what was lost.',
  },
  ERR_VELO_REDIS_CONNECTION: {
    class: 'RedisConnectionError',
    from: 'velo-stream/redis',
    when: "A connection failed (refused, reset, closed, timed out) or the server is still loading after a restart; the client's error is its `cause`. A worker retries; a `redisLimiter` under `'fail-closed'` rejects acquires with it.",
    action: 'Check Redis and the network; alert if it lasts.',
  },
  ERR_VELO_REDIS_TIMEOUT: {
    class: '',
    from: 'velo-stream/redis',
    when: "A call Redis did not answer within `callTimeout` (a paused or unreachable server): the `cause` of a `SendError` (those events' `ids` `undefined`), the rejection of `lag()`, or of a `redisLimiter` acquire under `'fail-closed'`. The call is not made again.",
    action:
      'Check Redis and the network. Send the events again if a duplicate is acceptable; raise `callTimeout` if Redis is only slow.',
  },
  ERR_VELO_POSTGRES_CONNECTION: {
    class: '',
    from: 'velo-stream/durable on Postgres (workers)',
    when: 'A worker\'s connection to Postgres ended or could not be made, and node-postgres said so without a code of its own ("Connection terminated unexpectedly", a connect timeout): its error is the `cause`. One with a code (`ECONNREFUSED`, a SQLSTATE such as `57P01`) reaches `onError` as node-postgres made it. The worker retries, one report a second while Postgres is away.',
    action: 'Check Postgres and the network; alert if it lasts.',
  },
  ERR_VELO_POSTGRES_TIMEOUT: {
    class: '',
    from: 'velo-stream/durable on Postgres (workers, producers, readers, fleet limiters)',
    when: "A statement of velo-stream's that Postgres did not answer within `callTimeout` (a paused or unreachable server, a connection gone silent, or a row locked): it counts as Postgres away. A worker reports it through `onError` and retries on a new connection (the silent one is destroyed); a send rejects with `SendError`, this error as `cause`, its `ids` unknown; a reader reads again. A fleet limiter's acquires follow `whenBackendFails`; under `'fail-closed'` they reject with it, and an acquire it cut short takes nothing once Postgres answers.",
    action: 'Check Postgres and the network; raise `callTimeout` if Postgres is only slow.',
  },
  ERR_VELO_BAD_CURSOR: {
    class: 'ResumeCursorError',
    from: 'velo-stream/redis (redisKeyOutputs, redisSse, redisNdjson)',
    when: "A resume cursor (`Last-Event-ID`, `from`) that no reader of these keys wrote: too long, malformed, another key's, past the newest output, or not an output's id (`reason`: `length`, `syntax`, `partitions`, `future`, `unknown`). The HTTP helpers answer 400.",
    action:
      'Send back only the ids the stream gave (EventSource does); start without a cursor to read from the start, or with one your server made (`keyCursor`).',
  },
  ERR_VELO_RESUME_TRIMMED: {
    class: 'ResumeTrimmedError',
    from: 'velo-stream/redis (redisKeyOutputs, redisSse, redisNdjson)',
    when: 'Outputs after a resume cursor were (or may have been) trimmed from the log (Redis, Postgres), or a reader fell that far behind. The HTTP helpers answer 410 before the first output, or end with an error event after one.',
    action:
      "Start over without the cursor (the outputs in between are gone), and keep outputs longer than clients stay away (`outputMaxLen`, or a group that holds `'acked'` trims).",
  },
  ERR_VELO_CLOSED: {
    class: '',
    from: 'velo-stream/redis',
    when: "A worker's own call to the server (Redis, Postgres) that began after its `close()` (a partition's work still under way as it closed); it can reach `onError`.",
    action: 'Nothing: the worker is closing. Make a new worker to go on.',
  },
  ERR_VELO_RATE_LIMITED: {
    class: '',
    from: 'velo-stream (limiter)',
    when: "A limiter in `mode: 'reject'` had no permit now: its `acquire()`, a task call using it (`retry` and `onError` apply), or `open()` of a stream function using it. `limiter` names it; `retryAfter` (ms) is the wait when its rate held it back (not a full `concurrency`). Answered 429 with `Retry-After` (HTTP answers, below).",
    action: "Retry later, shed the load, raise the limit (`setLimits`), or use `mode: 'throttle'` to wait instead.",
  },
  ERR_VELO_LIMIT_QUEUE_FULL: {
    class: '',
    from: 'velo-stream (limiter)',
    when: "A throttling limiter's `acquire()` (or a task call, or a stream's admission) while `maxWaiting` acquires already wait. Counted in `stats().rejected`.",
    action: 'Slow the producer down, raise `maxWaiting`, or raise the limit.',
  },
  ERR_VELO_LIMITER_CLOSED: {
    class: '',
    from: 'velo-stream (limiter)',
    when: "An `acquire()` after the limiter's `close()`, or one still waiting when it closed.",
    action: 'Nothing, if you closed it on purpose; else make a new limiter.',
  },
  ERR_VELO_LIMIT_COST: {
    class: 'RangeError',
    from: 'velo-stream (limiter)',
    when: "A limiter's `cost(item)` that threw, returned no whole number from 0 to 2^32 - 1, or more than the `burst` (never grantable; also a waiter when `setLimits` lowers the burst). A cost over the burst carries `cost`, `burst` and `status` 413; the others are the server's own failure (500).",
    action: 'Return a whole number of units no larger than `rate.burst`; split the work, or raise the burst.',
  },
  ERR_VELO_LIMIT_KEY: {
    class: 'TypeError',
    from: 'velo-stream (limiter)',
    when: "A limiter's `key(item)` that threw (its error is the `cause`) or returned something other than a non-empty string.",
    action: 'Return a non-empty string for every item (for example a tenant id).',
  },
  ERR_VELO_LIMIT_TENANT: {
    class: 'TypeError',
    from: 'velo-stream (limiter)',
    when: "A limiter's `fairness.by(item)` that threw or returned no non-empty string, or `fairness.weight(tenant)` no whole number from 1 to 10000: the acquire is refused.",
    action: 'Return a non-empty tenant string for every item, and a whole-number weight from 1 to 10000 for every tenant.',
  },
  ERR_VELO_LIMIT_PRIORITY: {
    class: 'TypeError',
    from: 'velo-stream (limiter)',
    when: "A limiter's `priority(item)` that threw (its error is the `cause`) or returned something other than a whole number from -1000000 to 1000000. The acquire is refused; nothing waits.",
    action: 'Return a whole-number priority in that range for every item (higher is served first).',
  },
  ERR_VELO_SESSION_PERMIT: {
    class: '',
    from: 'velo-stream/redis',
    when: 'A `sessionWorker` with the `limiter` option could not get a permit for a session or step (reported through `onError`, at most once a second; `limiter`, `per` and `cause` say which and why). It goes on waiting and asks again: nothing a reader sees changes.',
    action:
      "Read `cause`: fix the limiter's `key`/`cost` function, raise its `maxWaiting`, keep it open while the worker runs, or choose `whenBackendFails`.",
  },
  ERR_VELO_VERSION_REFUSED: {
    class: '',
    from: 'velo-stream/redis',
    when: "A worker was refused a free partition because a live session there runs a version it neither runs nor adopts (`versions`, `migrate`). Reported through `onError` at most once a minute per worker (`partitions` lists those refused in one pass, `refused` the versions); `stats().refusedVersions` counts every refusal. The partition waits for a worker that runs that version: its keys' events, new keys' too, wait with it.",
    action:
      'Keep a worker of that version running until its sessions end, or deploy the new release with the old handler in `versions` (or with `migrate`).',
  },
  ERR_VELO_SESSION_SLOTS: {
    class: '',
    from: 'velo-stream/redis',
    when: "Keys of a worker's partitions needed a new session while every session slot (`fn`'s `maxConcurrent`) was taken: their events wait, in log order, until sessions end (a slot frees when a session ends, after its `idleTimeout`). Reported through `onError` at most once a minute per worker (`slots` is `maxConcurrent`, `waitingKeys` the keys waiting then); `stats().slots.waits` counts every key that began to wait (`slots.waitingKeys`: those waiting now). Nothing is lost, but those keys' events are late.",
    action:
      'Raise `maxConcurrent` above the keys live at once on a worker (a live key holds a slot until its idle time passes), shorten `idleTimeout`, or add workers.',
  },
  ERR_VELO_KEY_STATE_VERSION: {
    class: '',
    from: 'velo-stream/redis',
    when: "A new session's key state (`keyState`) was kept by a version its worker neither runs nor adopts (a newer release's, after a rollback or beside a release that does not carry the old): the session starts without it, reported through `onError`. The kept state stays for a worker that reads it, unless this session's end keeps its own.",
    action:
      'Roll back with a release that carries the newer version in `versions` or has `migrate`, or keep workers of the newer version serving its keys.',
  },
  ERR_VELO_VERSION_UNKNOWN: {
    class: '',
    from: 'velo-stream/redis',
    when: '`sessionVersions().drained(version)` for a version no live worker runs and no live session is on (a misspelt name, or long gone); the message lists those there.',
    action:
      "Check the name against `status()`. For a script that may run after the version is gone, pass `{ ifUnknown: 'resolve' }`.",
  },
  ERR_VELO_SCHEMA_VERSION: {
    class: '',
    from: 'velo-stream/postgres',
    when: "The Postgres schema is not at the version this release's code expects: it was migrated by a newer release (`found` > `expected`: this process would misread it), it was renamed after it was made (its functions would write the old name's tables), or it is older and workers are registered on it (`live`: workers of the older release; migrating under them would let them and this release keep different read positions). A worker reports it through `onError` and takes no partition; a producer, reader or `migrate` rejects with it.",
    action:
      'Upgrade this process to the release that migrated the schema; or, to migrate, stop every worker of the older release first (a closed worker leaves at once, a killed one within its `leaseTtl`) and start the new release: docs/postgres.md#upgrading.',
  },
  ERR_VELO_POOL_ENDED: {
    class: '',
    from: 'velo-stream/postgres',
    when: "The pool a worker, producer or reader uses was ended (`pool.end()`) before it was closed: every call of it fails. A worker reports it to `onError` at each failed call (node-postgres' error is the `cause`); a send rejects with `SendError`, its `cause` this error.",
    action: 'Close the workers, producers and readers on the pool, then end it (docs/durable/production.md).',
  },
  ERR_VELO_POOL_TOO_SMALL: {
    class: 'RangeError',
    from: 'velo-stream/postgres',
    when: 'A worker or fleet limiter on a Postgres pool whose `max` is below 2 with `listen` on: the waits hold one connection of the pool (one per pool in the process, shared by its workers, limiters and readers) and every other call would wait for it forever.',
    action: 'Give the pool a larger `max` (docs/postgres.md, pool sizing), or set `listen: false`.',
  },
  ERR_VELO_POOL_EXHAUSTED: {
    class: '',
    from: 'velo-stream/postgres',
    when: "A call of velo-stream (a lease renewal or takeover, a read, a commit, a send, a reader's poll, a migration, the LISTEN connection) has waited 10 s for a connection of the pool: every connection is checked out (the user's own calls, or more calls in flight than `max`) or still opening (a server that does not answer: give the pool a `connectionTimeoutMillis`). Reported once per episode through the `onError` of every worker on the pool in the process, or as a process warning when none runs; the calls go on waiting. So is a worker's call that waited the pool's `connectionTimeoutMillis` in its queue (`cause`: node-postgres' error), tried again.",
    action: 'Give the pool a larger `max` (docs/postgres.md, pool sizing), or find what holds its connections.',
  },
  ERR_VELO_NOT_A_POOL: {
    class: 'TypeError',
    from: 'velo-stream/postgres',
    when: 'The `pool` option is a single connection (a `pg.Client`, or a client checked out of a pool), or its `connect()` gave no client with `release()`: velo-stream runs transactions concurrently, each on a connection of its own, and on one connection they would interleave.',
    action: 'Pass a `pg.Pool` (or a wrapper of one whose `connect()` resolves to a client with `release()`).',
  },
  ERR_VELO_TRANSACTION_IDLE: {
    class: '',
    from: 'velo-stream/postgres',
    when: "The server ended a transaction of velo-stream's for waiting between two statements longer than its `idle_in_transaction_session_timeout` (half the lease): the `effects` callback, or the process, was paused that long. Nothing of it was committed; the worker reports it through `onError` and retries. `cause` is the connection's error (Postgres code 25P03).",
    action:
      'Keep `effects` short (no calls to other services, no waits), or find what pauses the process (a GC pause, a VM frozen).',
  },
  ERR_VELO_EFFECTS_CLIENT: {
    class: '',
    from: 'velo-stream/postgres',
    when: "A call on the client `effects` was given that would break the commit's transaction: a transaction-control statement (BEGIN, START, COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION; savepoints are allowed), a text whose statements ended the transaction all the same (the server's check after them failed), or any call after the `effects` callback settled or after such a text; or a statement on it failed and the callback went on (it caught the error or did not await the statement), so that the transaction ended rolled back at its COMMIT. The commit fails and is retried.",
    action:
      "Run only your writes on the client, and await each before the callback returns; let a failed statement's error propagate, or recover with a savepoint. velo-stream commits or rolls back the transaction.",
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** Every code of `ERROR_CODES`. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Codes renamed to the library's one prefix, old name -> new name. An error carries the new code only; code that
 * compares with an old name can map it (`ERROR_CODE_ALIASES[code] ?? code`) until the aliases are removed in the
 * next minor release (CHANGELOG.md).
 */
export const ERROR_CODE_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  ERR_STREAM_CLOSED: 'ERR_VELO_STREAM_CLOSED',
  ERR_STREAM_LIMIT: 'ERR_VELO_STREAM_LIMIT',
  ERR_BAD_NDJSON: 'ERR_VELO_BAD_NDJSON',
  ERR_NDJSON_LINE_TOO_LARGE: 'ERR_VELO_NDJSON_LINE_TOO_LARGE',
  ERR_BODY_TOO_LARGE: 'ERR_VELO_BODY_TOO_LARGE',
} satisfies Record<string, ErrorCode>);
