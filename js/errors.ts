// Every error velo-stream makes, in one module: the table of codes (what each means and what to do; docs/errors.md
// is generated from it by scripts/errors-doc.mjs), the classes users may test with `instanceof`, and a factory for
// each code that has no class of its own. Nothing else in js/ writes a code: __test__/error-codes.test.mjs fails
// when a file outside this one makes an error with a code, when a code made here is missing from the table, or
// when the table lists a code nothing makes.
//
// This module imports nothing at run time: the worker threads, the subpaths and the addon loader all use it.

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
    when: "A session's journal (the results and chunks of its journaled calls since its last checkpoint) would pass `maxJournalBytes`: thrown at the call that would pass it, nothing of it recorded.",
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
    when: "Keys of a worker's partitions needed a new session while every session slot (`fn`'s `maxConcurrent`) was taken: their events wait, in log order, until sessions end (a slot frees when a session ends, after its `idleTimeout`). Reported through `onError` at most once a minute per worker (`slots` is `maxConcurrent`, `waitingKeys` the keys waiting then); `stats().slots` counts every key that waited. Nothing is lost, but those keys' events are late.",
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
  ERR_VELO_POOL_TOO_SMALL: {
    class: 'RangeError',
    from: 'velo-stream/postgres',
    when: 'A worker or fleet limiter on a Postgres pool whose `max` is below 2 with `listen` on: the waits hold one connection of the pool (one per pool in the process, shared by its workers, limiters and readers) and every other call would wait for it forever.',
    action: 'Give the pool a larger `max` (docs/postgres.md, pool sizing), or set `listen: false`.',
  },
  ERR_VELO_POOL_EXHAUSTED: {
    class: '',
    from: 'velo-stream/postgres',
    when: "A call of velo-stream (a lease renewal or takeover, a read, a commit, a send, a reader's poll, a migration, the LISTEN connection) has waited 10 s for a connection of the pool: every connection is checked out (the user's own calls, or more calls in flight than `max`) or still opening (a server that does not answer: give the pool a `connectionTimeoutMillis`). Reported once per episode (until no call of velo-stream waits for the pool) through the `onError` of every worker on the pool in the process, or as a process warning when none runs; the calls go on waiting.",
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

/** How an HTTP answer tells an error of one code: its status, and what it is answered for. */
export interface HttpAnswerInfo {
  /** The HTTP status the writers of velo-stream/http (and Express, Fastify, which read `status`) answer. */
  readonly status: number;
  /**
   * A refusal of a limiter or of a stream's admission (the server refused the work: nothing of it ran), as opposed
   * to a request the client got wrong. Every refusal code is in this table (__test__/error-codes.test.mjs).
   */
  readonly refusal: boolean;
  /** Whether the answer carries `Retry-After` (seconds, rounded up) when the error knows the wait (`retryAfter`, ms). */
  readonly retryAfter: boolean;
  /** When the code is answered so (docs/errors.md, "HTTP answers"). */
  readonly when: string;
}

/**
 * The one table of HTTP statuses: the errors of these codes carry `status` from it (and a refusal that knows its
 * wait, `retryAfter` in ms and `headers` with `Retry-After`), which `sendError` and the writers of
 * velo-stream/http answer before the first output, and put in the error line or event after it. docs/errors.md's
 * "HTTP answers" is generated from it. A code not here is answered 500 (the server's own failure).
 */
export const HTTP_ANSWERS = {
  ERR_VELO_STREAM_LIMIT: {
    status: 503,
    refusal: true,
    retryAfter: false,
    when: '`maxConcurrent` streams of the function are open: the server is full.',
  },
  ERR_VELO_RATE_LIMITED: {
    status: 429,
    refusal: true,
    retryAfter: true,
    when: "A limiter in `mode: 'reject'` has no permit now (for the key, when keyed). `Retry-After` when its rate holds the acquire back (the wait is known); none when its `concurrency` is full (a release frees it).",
  },
  ERR_VELO_LIMIT_QUEUE_FULL: {
    status: 503,
    refusal: true,
    retryAfter: false,
    when: "A throttling limiter's line is full (`maxWaiting`): the server is full.",
  },
  ERR_VELO_LIMIT_COST: {
    status: 413,
    refusal: true,
    retryAfter: false,
    when: "The cost is above the rate's burst: it could never be granted, so the work is too large. (A `cost` function that threw or gave no whole number is the server's own failure: 500.)",
  },
  ERR_VELO_LIMITER_CLOSED: {
    status: 503,
    refusal: true,
    retryAfter: false,
    when: 'The limiter is closed (the server is shutting down).',
  },
  ERR_VELO_BAD_NDJSON: { status: 400, refusal: false, retryAfter: false, when: 'A request body line that is not JSON.' },
  ERR_VELO_NDJSON_LINE_TOO_LARGE: {
    status: 413,
    refusal: false,
    retryAfter: false,
    when: 'A request body line over `maxLineBytes`.',
  },
  ERR_VELO_BODY_TOO_LARGE: { status: 413, refusal: false, retryAfter: false, when: 'A request body over `maxBodyBytes`.' },
  ERR_VELO_SOURCE_STALLED: {
    status: 504,
    refusal: false,
    retryAfter: false,
    when: 'The source a stream was fed from (a model) gave nothing for `idleTimeout`: the upstream stopped answering.',
  },
  ERR_VELO_BODY_TIMEOUT: {
    status: 408,
    refusal: false,
    retryAfter: false,
    when: 'The stream stopped reading the request body while a line of it was arriving.',
  },
  ERR_VELO_BAD_CURSOR: {
    status: 400,
    refusal: false,
    retryAfter: false,
    when: 'A resume cursor no reader of these keys wrote.',
  },
  ERR_VELO_RESUME_TRIMMED: {
    status: 410,
    refusal: false,
    retryAfter: false,
    when: 'Outputs after a resume cursor were trimmed.',
  },
} as const satisfies Partial<Record<ErrorCode, HttpAnswerInfo>>;

/** The longest wait `Retry-After` says, in seconds (about 68 years): the header is digits only, whatever the wait. */
export const MAX_RETRY_AFTER = 2 ** 31 - 1;

/** `Retry-After` for a wait of `ms`: a whole number of seconds, rounded up, at most `MAX_RETRY_AFTER`; undefined for no wait known. */
export function retryAfterSeconds(ms: unknown): number | undefined {
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? Math.min(Math.ceil(ms / 1000), MAX_RETRY_AFTER) : undefined;
}

/** `Retry-After` for the error's wait (`retryAfterSeconds`), as an error's `headers` carry it. */
function retryAfterHeaders(this: { retryAfter?: unknown }): Record<string, string> | undefined {
  const seconds = retryAfterSeconds(this.retryAfter);
  return seconds === undefined ? undefined : { 'retry-after': String(seconds) };
}

/** `error` with a string `code` of the table. (An own data property, so DOMException's numeric getter is shadowed.) */
function coded<E extends Error, C extends ErrorCode, X extends object = object>(
  error: E,
  code: C,
  extra?: X,
): E & { code: C } & X {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, configurable: true, writable: true });
  return Object.assign(error, extra) as E & { code: C } & X;
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') {
    try {
      return `an instance of ${value.constructor?.name ?? 'Object'}`;
    } catch {
      return 'an object that cannot be read (a revoked Proxy?)';
    }
  }
  if (typeof value === 'string') return `type string (${JSON.stringify(value.length > 28 ? value.slice(0, 25) + '...' : value)})`;
  // Only primitives are left here (and symbols, which String() describes).
  const primitive = value as number | boolean | bigint | symbol | undefined;
  return `type ${typeof value} (${String(primitive)})`;
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments: Node's own codes, where Node uses them.

/** `cause`: the error of a read that threw (a getter's, a revoked Proxy's). */
export function invalidType(message: string, cause?: unknown): TypeError & { code: 'ERR_INVALID_ARG_TYPE' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_INVALID_ARG_TYPE');
}

export function invalidValue(message: string, cause?: unknown): TypeError & { code: 'ERR_INVALID_ARG_VALUE' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_INVALID_ARG_VALUE');
}

export function outOfRange(message: string): RangeError & { code: 'ERR_OUT_OF_RANGE' } {
  return coded(new RangeError(message), 'ERR_OUT_OF_RANGE');
}

export function invalidReturn(message: string, cause?: unknown): TypeError & { code: 'ERR_INVALID_RETURN_VALUE' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_INVALID_RETURN_VALUE');
}

/** A stream's feed() started while another feed of it still reads its source: a stream takes one feed at a time. */
export function feedInProgressError(): TypeError & { code: 'ERR_INVALID_STATE' } {
  return coded(
    new TypeError(
      "The stream is being fed already: a stream takes one feed() at a time (the first one's source ends its input); merge the sources, or send() beside the feed",
    ),
    'ERR_INVALID_STATE',
  );
}

/** The merged output of sessions has a reader already: it has one reader at a time. */
export function sessionsReaderError(): TypeError & { code: 'ERR_INVALID_STATE' } {
  return coded(
    new TypeError(
      'The sessions already have a reader: their merged output is read by one iterator at a time (finish or leave the first loop before starting another)',
    ),
    'ERR_INVALID_STATE',
  );
}

/** An HTTP writer called on a response that another writer has: a response takes one writer. */
export function responseInUseError(): TypeError & { code: 'ERR_INVALID_STATE' } {
  return coded(
    new TypeError(
      "The response has a writer already: a response takes one writer (sendNdjson, sendSse, writeResponse, or a toReadable piped into it); a second would mix its outputs into the first's or wait for ever. Merge the outputs into one stream",
    ),
    'ERR_INVALID_STATE',
  );
}

/** `ctx.wakeAt`/`ctx.cancelTimer` with the timer key a `sessionWorker`'s `debounce` keeps for itself. */
export function reservedTimerKeyError(call: string): TypeError & { code: 'ERR_INVALID_ARG_VALUE' } {
  return coded(
    new TypeError(`${call}: the timer key "velo.debounce" is the worker's own (its debounce timer): use another key`),
    'ERR_INVALID_ARG_VALUE',
  );
}

/** A call a test worker cannot take in its state (the message says which and why). */
export function testWorkerStateError(message: string): TypeError & { code: 'ERR_INVALID_STATE' } {
  return coded(new TypeError(message), 'ERR_INVALID_STATE');
}

/** A test run did not settle within its bound of virtual time (the message says which bound, and why it may not). */
export function testNotSettledError(message: string): Error & { code: 'ERR_VELO_TEST_NOT_SETTLED' } {
  return coded(new Error(message), 'ERR_VELO_TEST_NOT_SETTLED');
}

/** `redisService()` could not start its server (not installed, not runnable, or never ready). */
export function testServerError(message: string, cause?: unknown): Error & { code: 'ERR_VELO_TEST_SERVER' } {
  return coded(cause === undefined ? new Error(message) : new Error(message, { cause }), 'ERR_VELO_TEST_SERVER');
}

/** A test run took more steps of its virtual clock than one move may (a loop without end at one time, most likely). */
export function testStepsError(message: string): Error & { code: 'ERR_VELO_TEST_STEPS' } {
  return coded(new Error(message), 'ERR_VELO_TEST_STEPS');
}

/** A recording that is not one `exportRecording` writes (the message names the field). */
export function recordingInvalidError(message: string, cause?: unknown): Error & { code: 'ERR_VELO_RECORDING_INVALID' } {
  return coded(cause === undefined ? new Error(message) : new Error(message, { cause }), 'ERR_VELO_RECORDING_INVALID');
}

/** A recording over its bounds (entries, outputs, bytes): nothing is cut. */
export function recordingTooLargeError(message: string): RangeError & { code: 'ERR_VELO_RECORDING_TOO_LARGE' } {
  return coded(new RangeError(message), 'ERR_VELO_RECORDING_TOO_LARGE');
}

/** velo-replay: an optional peer dependency (`redis`, `pg`) that could not be loaded; `cause` is why. */
export function peerMissingError(message: string, cause: unknown): Error & { code: 'ERR_VELO_PEER_MISSING' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_PEER_MISSING');
}

/** `ctx.wakeAt()` (or `cancelTimer()`) in a `workerFn` handler: its input is the main thread's lane, where an event made on the worker would not be counted. */
export function wakeAtOnWorkerError(call = 'wakeAt'): TypeError & { code: 'ERR_INVALID_STATE' } {
  return coded(
    new TypeError(`ctx.${call}() is not available in a workerFn handler: timers run on the main thread`),
    'ERR_INVALID_STATE',
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Streams (velo-stream).

/** Rejected or thrown when a stream can no longer accept events or has no more outputs. */
export class StreamClosedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_STREAM_CLOSED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StreamClosedError';
  }
}

/** Thrown by `open()` (and rejected by `run()`) when `maxConcurrent` streams of the function are open. */
export class StreamLimitError extends Error {
  /** The HTTP status to answer with (503 Service Unavailable): the HTTP writers and the frameworks that read `status` answer it. */
  readonly status = HTTP_ANSWERS.ERR_VELO_STREAM_LIMIT.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_STREAM_LIMIT' as const;
  constructor(message: string) {
    super(message);
    this.name = 'StreamLimitError';
  }
}

/**
 * The source a stream was fed from (`feed()`, `run()`) gave no event for the stream's `idleTimeout` while the stream
 * waited on it: the source is closed, and the stream fails with this error after the events before it. Its `status`
 * (504 Gateway Timeout) is what the HTTP writers answer before any output; after some, an error event.
 */
export class SourceStalledError extends Error {
  /** The HTTP status to answer with (504 Gateway Timeout: the upstream the source reads stopped answering). */
  readonly status = HTTP_ANSWERS.ERR_VELO_SOURCE_STALLED.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_SOURCE_STALLED' as const;
  constructor(message: string) {
    super(message);
    this.name = 'SourceStalledError';
  }
}

/** The native addon for this platform could not be loaded. */
export function addonNotFoundError(message: string, cause: unknown): Error & { code: 'ERR_VELO_ADDON_NOT_FOUND' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_ADDON_NOT_FOUND');
}

/** Two copies of incompatible versions share one thread's state. */
export function incompatibleCopyError(message: string): Error & { code: 'ERR_VELO_INCOMPATIBLE_COPY' } {
  return coded(new Error(message), 'ERR_VELO_INCOMPATIBLE_COPY');
}

// ---------------------------------------------------------------------------------------------------------------
// Worker threads (workerFn).

/** A stream of a `workerFn` failed because the worker thread hosting it stopped (an uncaught error, `process.exit`, out of memory). */
export class WorkerCrashedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_WORKER_CRASHED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkerCrashedError';
  }
}

/** The module of a `workerFn` cannot serve as its handler. */
export function workerModuleError(message: string, cause?: unknown): Error & { code: 'ERR_VELO_WORKER_MODULE' } {
  return coded(cause === undefined ? new Error(message) : new Error(message, { cause }), 'ERR_VELO_WORKER_MODULE');
}

/** The module did not finish loading within `loadTimeout`. */
export function loadTimeoutError(module: string, ms: number): Error & { code: 'ERR_VELO_WORKER_MODULE' } {
  return workerModuleError(
    `The module ${module} did not finish loading on a worker thread within ${ms} ms (loadTimeout): a top-level await that never settles, or a load that never ends`,
  );
}

/**
 * A clone failure with the library's string code: DOMException's own `code` is a number (25 for a
 * DataCloneError), and every error velo-stream makes has a string code to compare. A coded one is left as is.
 */
export function dataCloneError(error: unknown): DOMException {
  const e =
    error instanceof DOMException ? error : new DOMException(String((error as Error)?.message ?? error), 'DataCloneError');
  return typeof e.code === 'string' ? e : coded(e, 'ERR_VELO_DATA_CLONE');
}

/** A bare SharedArrayBuffer: v8's deserializer as Node exposes it cannot take one back, so it is refused (a view over one is shared). */
export function sharedArrayBufferError(): DOMException {
  return coded(
    new DOMException(
      'A bare SharedArrayBuffer cannot cross to or from a worker stream: send a view over it (new Uint8Array(sab)), which is shared',
      'DataCloneError',
    ),
    'ERR_VELO_SHARED_ARRAY_BUFFER',
  );
}

/** A view over a SharedArrayBuffer where `node:v8` has no DefaultSerializer (Bun): it cannot be shared there. */
export function sharedViewError(): DOMException {
  return coded(
    new DOMException(
      'A view over a SharedArrayBuffer cannot cross to or from a worker stream on this runtime (its node:v8 has no Serializer, so the memory cannot be shared): send a copy, or run on Node',
      'DataCloneError',
    ),
    'ERR_VELO_RUNTIME_UNSUPPORTED',
  );
}

/** `resourceLimits` on a runtime whose `Worker` ignores them (Bun): a limit asked for and not enforced is refused. */
export function resourceLimitsUnsupportedError(runtime: string): Error {
  return coded(
    new Error(
      `The "resourceLimits" option of workerFn has no effect on ${runtime} (its Worker ignores resourceLimits), so it is refused there: leave it out, or run on Node`,
    ),
    'ERR_VELO_RUNTIME_UNSUPPORTED',
  );
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP (velo-stream/http).

/**
 * An output the serializer refused: it threw (a BigInt, a cycle), or gave no
 * text (JSON has none for `undefined`, a function or a symbol). Every writer
 * treats it the same way: the outputs before it go out, then its error line
 * or event, and the stream is stopped.
 */
export class SerializeError extends TypeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_SERIALIZE';
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'SerializeError';
  }
}

/** The JSON body of a 400 answer to a malformed request body (`RequestBodyError.toJSON()`). */
export interface RequestBodyErrorJSON {
  /** What was wrong. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_BAD_NDJSON`. */
    code: string;
    /** The malformed line's number, from 1. */
    line: number;
  };
}

/** The JSON body of a 413 answer (`RequestTooLargeError.toJSON()`). */
export interface RequestTooLargeErrorJSON {
  /** What was too large. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_NDJSON_LINE_TOO_LARGE` or `ERR_VELO_BODY_TOO_LARGE`. */
    code: string;
    /** The limit passed, bytes. */
    limit: number;
    /** The line's number, from 1, for a line too long. */
    line?: number;
  };
}

/** A malformed request body: answer with `status` and `toJSON()`. */
export class RequestBodyError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BAD_NDJSON.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_BAD_NDJSON' as const;
  /** 1-based line number of the malformed line. */
  readonly line: number;
  constructor(line: number, cause: unknown) {
    super(`Line ${line} of the request body is not valid JSON: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'RequestBodyError';
    this.line = line;
  }
  /** The body of a 400 response. */
  toJSON(): RequestBodyErrorJSON {
    return { error: { message: this.message, code: this.code, line: this.line } };
  }
}

/** A request body over a size limit of `ndjsonEvents`: answer with `status` (413) and `toJSON()`. */
export class RequestTooLargeError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BODY_TOO_LARGE.status;
  /** `ERR_VELO_NDJSON_LINE_TOO_LARGE` (one line over `maxLineBytes`) or `ERR_VELO_BODY_TOO_LARGE` (the body over `maxBodyBytes`). */
  readonly code: 'ERR_VELO_NDJSON_LINE_TOO_LARGE' | 'ERR_VELO_BODY_TOO_LARGE';
  /** The limit that was exceeded, in bytes. */
  readonly limit: number;
  /** 1-based number of the line over `maxLineBytes` (line errors only). */
  readonly line: number | undefined;
  constructor(code: RequestTooLargeError['code'], limit: number, line?: number) {
    super(
      code === 'ERR_VELO_BODY_TOO_LARGE'
        ? `The request body is larger than maxBodyBytes (${limit} bytes)`
        : `Line ${line} of the request body is larger than maxLineBytes (${limit} bytes)`,
    );
    this.name = 'RequestTooLargeError';
    this.code = code;
    this.limit = limit;
    this.line = line;
  }
  /** The response body: `{ error: { message, code, limit, line? } }` (`limit` in bytes; `line` for a line too long). */
  toJSON(): RequestTooLargeErrorJSON {
    const error = { message: this.message, code: this.code, limit: this.limit };
    return { error: this.line === undefined ? error : { ...error, line: this.line } };
  }
}

/**
 * The stream fed by `ndjsonEvents` stopped reading the request body (its idle timeout, or `end()`) while a line
 * of it was arriving: the rest of the body is not read. Answered with `status` (408) by the HTTP writers.
 */
export class RequestBodyTimeoutError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BODY_TIMEOUT.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_BODY_TIMEOUT' as const;
  /** 1-based number of the line that was arriving. */
  readonly line: number;
  constructor(line: number, bytes: number) {
    super(
      `The stream stopped reading the request body (its idleTimeout passed, or its input was ended) while line ${line} was arriving (${bytes} bytes of it in): the rest of the body is not read`,
    );
    this.name = 'RequestBodyTimeoutError';
    this.line = line;
  }
}

/** A request body over `maxBodyBytes`. */
export function bodyTooLargeError(limit: number): RequestTooLargeError {
  return new RequestTooLargeError('ERR_VELO_BODY_TOO_LARGE', limit);
}

/** Line `line` (from 1) of a request body over `maxLineBytes`. */
export function lineTooLargeError(limit: number, line: number): RequestTooLargeError {
  return new RequestTooLargeError('ERR_VELO_NDJSON_LINE_TOO_LARGE', limit, line);
}

// ---------------------------------------------------------------------------------------------------------------
// Redis (velo-stream/redis).

/** An event or output larger than the configured limit (`maxEventBytes`), refused before it reaches Redis. */
export class EventTooLargeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_EVENT_TOO_LARGE' as const;
  /** The encoded size, bytes. */
  readonly size: number;
  /** `maxEventBytes`. */
  readonly limit: number;
  /** `atLeast`: `size` is the fewest bytes it takes (found before it was all encoded). */
  constructor(what: string, size: number, limit: number, atLeast = false) {
    super(
      `The ${what} is ${atLeast ? 'at least ' : ''}${size} bytes encoded, more than the limit of ${limit} bytes (maxEventBytes)`,
    );
    this.name = 'EventTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/**
 * Thrown by a `sessionWorker` session's `ctx.wakeAt()` when the session has `maxSessionTimers` timers that have not
 * fired: no timer is made. The same on every replay (the handler is deterministic over its inputs).
 */
export class TooManyTimersError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_TOO_MANY_TIMERS' as const;
  /** `maxSessionTimers`. */
  readonly limit: number;
  constructor(sid: string, limit: number) {
    super(
      `Session ${JSON.stringify(sid)} has ${limit} timers not taken by its handler, the limit (maxSessionTimers): ctx.wakeAt() made no timer`,
    );
    this.name = 'TooManyTimersError';
    this.limit = limit;
  }
}

/**
 * Thrown by a `sessionWorker` session's `ctx.wakeAt(time)` when `time` is after the session's age end (its first
 * entry's time plus `maxSessionAge`): the timer could never fire, so none is made. The age end is fixed at the
 * session's start, so the call throws the same on every replay.
 */
export class TimerPastAgeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_TIMER_PAST_AGE' as const;
  /** `maxSessionAge`. */
  readonly limit: number;
  /** The timer's time asked for (ms, rounded up). */
  readonly time: number;
  constructor(sid: string, start: number, limit: number, time: number) {
    super(
      `Session ${JSON.stringify(sid)} began at ${start} and ends at ${start + limit + 1} by maxSessionAge (${limit} ms): ctx.wakeAt(${time}) would never fire, and made no timer`,
    );
    this.name = 'TimerPastAgeError';
    this.limit = limit;
    this.time = time;
  }
}

/** `ctx.checkpoint()`, `ctx.wakeAt()`, `ctx.cancelTimer()`, `ctx.run()` or `ctx.stream()` in a stage of a pipe that `sessionWorker` runs. */
export function pipeSessionCallError(call: string): TypeError & { code: 'ERR_VELO_PIPE_SESSION_CALL' } {
  return coded(
    new TypeError(
      `ctx.${call}() is not available in a stage of a pipe run by a session worker (sessionWorker): a pipe's stages have no checkpoint, durable timer or journal (run the stateful step as a function of its own)`,
    ),
    'ERR_VELO_PIPE_SESSION_CALL',
  );
}

/**
 * Thrown by a `sessionWorker` session's `ctx.checkpoint(state)` when the state's encoding is over
 * `maxCheckpointBytes`. The session fails at that point (this error is its last output, after those yielded
 * before the call), and nothing of the checkpoint is written.
 */
export class CheckpointTooLargeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_CHECKPOINT_TOO_LARGE' as const;
  /** The encoded size, bytes. */
  readonly size: number;
  /** `maxCheckpointBytes`. */
  readonly limit: number;
  constructor(sid: string, size: number, limit: number) {
    super(
      `The checkpoint of session ${JSON.stringify(sid)} is ${size} bytes encoded, more than the limit of ${limit} bytes (maxCheckpointBytes): the session fails, nothing of it was written`,
    );
    this.name = 'CheckpointTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/** The codec threw on an event or output (`what`), or gave neither a Buffer nor a string. */
export function encodeError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_ENCODE' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_ENCODE');
}

/** The codec threw on an input entry or a stored output. */
export function decodeError(message: string, cause: unknown): TypeError & { code: 'ERR_VELO_DECODE' } {
  return coded(new TypeError(message, { cause }), 'ERR_VELO_DECODE');
}

/**
 * A replay asked a journaled call of another name than the one recorded at its place (`ERR_VELO_JOURNAL_DIVERGED`):
 * thrown into the handler at `ctx.run` or `ctx.stream`, nothing called.
 */
export class JournalDivergedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_JOURNAL_DIVERGED' as const;
  /** The call's place in the session's journal (1 for its first journaled call). */
  readonly call: number;
  /** The name recorded at that place. */
  readonly recorded: string;
  /** The name the replay asked there. */
  readonly asked: string;
  constructor(sid: string, call: number, recorded: string, asked: string) {
    super(
      `Journal diverged: session ${JSON.stringify(sid)}'s journaled call ${call} was recorded as ${JSON.stringify(recorded)}, and its replay asked ${JSON.stringify(asked)}. Journaled calls must come in the same order on every run over the same inputs.`,
    );
    this.name = 'JournalDivergedError';
    this.call = call;
    this.recorded = recorded;
    this.asked = asked;
  }
}

/**
 * A migrated session's answer in flight is written whole after the old version's partial one, because the new
 * version's outputs do not line up with the old version's journaled records (`ERR_VELO_ANSWER_RESTARTED`): reported
 * to the worker's `onError`, never thrown.
 */
export class AnswerRestartedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_ANSWER_RESTARTED' as const;
  /** The session: `<key>@<id of its first input entry>`. */
  readonly sid: string;
  /** `reason`: where the new version's outputs left the old version's (`its new version yielded ...`). */
  constructor(sid: string, reason: string) {
    super(
      `Answer restarted: session ${JSON.stringify(sid)} was adopted by migrate mid-answer, and ${reason}. Its outputs are not the old answer continued: its whole answer is written after the old version's partial one.`,
    );
    this.name = 'AnswerRestartedError';
    this.sid = sid;
  }
}

/** A session's journal would pass `maxJournalBytes` (`ERR_VELO_JOURNAL_TOO_LARGE`): thrown at the call, nothing recorded. */
export class JournalTooLargeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_JOURNAL_TOO_LARGE' as const;
  /** The journal's size with this record, bytes. */
  readonly size: number;
  /** `maxJournalBytes`. */
  readonly limit: number;
  /**
   * `record`: the record that would pass the limit, as the journal names it (`result of ctx.run("x") (journaled call
   * 2 of session "k@1-0", key "k@1-0/2")`, `chunk 3 of ctx.stream(...)`); without it, only session `sid` is named.
   */
  constructor(sid: string, size: number, limit: number, record?: string) {
    const what =
      record === undefined
        ? `The journal of session ${JSON.stringify(sid)} would be`
        : `The ${record} would make the journal of its session`;
    super(
      `${what} ${size} bytes, more than the limit of ${limit} bytes (maxJournalBytes): checkpoint more often, or raise the limit`,
    );
    this.name = 'JournalTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/** A free partition refused to a worker for the versions of its live sessions (`ERR_VELO_VERSION_REFUSED`). */
export function versionRefusedError(
  partitions: readonly number[],
  refused: readonly string[],
  runs: readonly string[],
): Error & { code: 'ERR_VELO_VERSION_REFUSED'; partitions: readonly number[]; refused: readonly string[] } {
  const names = (list: readonly string[]) => list.map((v) => (v === '' ? '(none)' : JSON.stringify(v))).join(', ');
  const error = coded(
    new Error(
      `${partitions.length === 1 ? `Partition ${partitions[0]} waits` : `Partitions ${partitions.join(', ')} wait`} for a worker of version ${names(refused)}: live sessions there run it, and this worker runs ${names(runs)} without migrate. Keep a worker of that version running, or carry its handler in \`versions\` (or \`migrate\`).`,
    ),
    'ERR_VELO_VERSION_REFUSED',
  );
  return Object.assign(error, { partitions, refused });
}

/** Keys wait for a worker's session slots (`ERR_VELO_SESSION_SLOTS`): a warning, nothing failed. */
export function slotsFullError(
  slots: number,
  waitingKeys: number,
): Error & { code: 'ERR_VELO_SESSION_SLOTS'; slots: number; waitingKeys: number } {
  const error = coded(
    new Error(
      `More keys are live than this worker has session slots (maxConcurrent ${slots}): keys that need a new session wait for sessions to end, so their events are late (${waitingKeys} waiting when reported; more may follow: stats().slots.waitingKeys counts them now). Raise maxConcurrent, shorten idleTimeout, or add workers. (Reported when keys begin to wait, at most once a minute.)`,
    ),
    'ERR_VELO_SESSION_SLOTS',
  );
  return Object.assign(error, { slots, waitingKeys });
}

/** A key state kept by a version the worker neither runs nor adopts (`ERR_VELO_KEY_STATE_VERSION`). */
export function keyStateVersionError(message: string): Error & { code: 'ERR_VELO_KEY_STATE_VERSION' } {
  return coded(new Error(message), 'ERR_VELO_KEY_STATE_VERSION');
}

/** `drained()` of a version nothing runs or holds (`ERR_VELO_VERSION_UNKNOWN`). */
export function versionUnknownError(message: string): Error & { code: 'ERR_VELO_VERSION_UNKNOWN' } {
  return coded(new Error(message), 'ERR_VELO_VERSION_UNKNOWN');
}

/** `migrate` failed for a session (`ERR_VELO_MIGRATE`): the cause is what it threw. */
export function migrateError(message: string, cause: unknown): TypeError & { code: 'ERR_VELO_MIGRATE' } {
  return coded(new TypeError(message, { cause }), 'ERR_VELO_MIGRATE');
}

/** A write or read by a worker whose lease on the partition is gone: another worker owns it now. */
export class FencedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_FENCED' as const;
  /** The partition whose lease is gone. */
  readonly partition: number;
  constructor(partition: number, message: string) {
    super(`Partition ${partition}: ${message}`);
    this.name = 'FencedError';
    this.partition = partition;
  }
}

/**
 * Rejected by `send()` / `sendMany()` of a producer with `maxLag` while its partition's consumer-group lag
 * (entries not yet read by the partition's worker) has reached the bound. Nothing of the call was written.
 */
export class LagLimitError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_LAG_LIMIT' as const;
  /** The partition that is behind. */
  readonly partition: number;
  /** Its lag as the producer estimated it: the last measure plus what this producer appended since. */
  readonly lag: number;
  /** The producer's `maxLag`. */
  readonly limit: number;
  constructor(partition: number, lag: number, limit: number) {
    super(
      `Partition ${partition} is ${lag} entries behind (maxLag ${limit}): its worker is slow, stalled or absent. Nothing was written; retry later.`,
    );
    this.name = 'LagLimitError';
    this.partition = partition;
    this.lag = lag;
    this.limit = limit;
  }
}

/** Which cap ended a session: `maxSessionEvents` or `maxSessionAge`. */
export type SessionLimitCode = 'ERR_VELO_SESSION_EVENTS' | 'ERR_VELO_SESSION_AGE';

/**
 * The last output of a worker session that reached `maxSessionEvents` or `maxSessionAge` (as `sessionOutputs`
 * delivers it: `{ error: { name: 'SessionLimitError', message, code } }`). The key's next event opens a new session.
 */
export class SessionLimitError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code: SessionLimitCode;
  /** The cap reached: `maxSessionEvents`, or `maxSessionAge` in ms. */
  readonly limit: number;
  constructor(code: SessionLimitCode, limit: number, message: string) {
    super(message);
    this.name = 'SessionLimitError';
    this.code = code;
    this.limit = limit;
  }
}

/**
 * Where a Redis session ended (`ReplayDivergedError.ends`): why its input ended (`idle`, `age`, `events`: the
 * session rule; `decode`: an input its codec could not decode; `throw`: its handler threw, or an output or
 * checkpoint could not be encoded; `return`: its handler returned) and the last input it took (an entry id,
 * `t<n>` for its n-th timer; `''` only for a session restored from a snapshot of an earlier version that took
 * nothing after it).
 */
export interface SessionEnd {
  /** Why its input ended. */
  readonly reason: 'idle' | 'age' | 'events' | 'decode' | 'throw' | 'return';
  /** The last input it took: an entry id, `t<n>` for its n-th timer. */
  readonly last: string;
}

/** An output as a local consumer or a divergence report sees it: a value, or a handler's failure. */
export type OutputContent<O = unknown> =
  | {
      /** The output, decoded. */
      value: O;
    }
  | {
      /** A handler failure as stored. */
      error: {
        /** The error's `name`. */
        name: string;
        /** The error's `message`. */
        message: string;
        /** The error's `code`, when it had a string one. */
        code?: string;
      };
    };

/**
 * Reported to `onError` by a worker with `checkReplay` when a replayed session does not make the outputs its
 * earlier run committed: `kind: 'output'`, output `seq` differs from the committed one (both are given,
 * decoded); `kind: 'count'`, the session ended with fewer outputs than were committed (`seq` is the first one
 * it did not make again); `kind: 'boundary'`, a session that had ended was ended again after another last input
 * or for another reason (both ends in `ends`). What was committed first stays, for every reader: the check
 * changes nothing in Redis.
 */
export class ReplayDivergedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_REPLAY_DIVERGED' as const;
  /** `'output'`: an output differs; `'count'`: the session ended with fewer outputs; `'boundary'`: it ended elsewhere. */
  readonly kind: 'output' | 'count' | 'boundary';
  /** The session's partition. */
  readonly partition: number;
  /** The session's key. */
  readonly key: string;
  /** The session: `<key>@<id of its first input entry>`. */
  readonly sid: string;
  /** The output's seq (for `'count'`, the first one the replay did not make; for `'boundary'`, its last output, 0: none). */
  readonly seq: number;
  /** The committed output (undefined if its entry is gone from the output stream, or for `kind: 'count'`). */
  readonly committed: OutputContent | undefined;
  /** What the replay made instead (undefined for `kind: 'count'`). */
  readonly replayed: OutputContent | undefined;
  /** For `kind: 'boundary'`: where the session ended first (kept) and where the replay ended it. */
  readonly ends:
    | {
        /** Where it ended first: what stays. */
        readonly committed: SessionEnd;
        /** Where the replay ended it. */
        readonly replayed: SessionEnd;
      }
    | undefined;
  constructor(
    kind: 'output' | 'count' | 'boundary',
    where: { partition: number; key: string; sid: string; seq: number },
    message: string,
    committed?: OutputContent,
    replayed?: OutputContent,
    ends?: { committed: SessionEnd; replayed: SessionEnd },
  ) {
    super(message);
    this.name = 'ReplayDivergedError';
    this.kind = kind;
    this.partition = where.partition;
    this.key = where.key;
    this.sid = where.sid;
    this.seq = where.seq;
    this.committed = committed;
    this.replayed = replayed;
    this.ends = ends;
  }
}

/**
 * Reported to `onError` when a worker's `onOutput` threw or its promise rejected (`cause`). The output counts as
 * delivered: it is not offered again, and the worker goes on with the next one.
 */
export class OnOutputError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_ON_OUTPUT' as const;
  /** The output `onOutput` was called with. */
  readonly output: unknown;
  constructor(output: { sid: string; seq: number }, cause: unknown) {
    super(
      `onOutput failed for output ${output.seq} of session ${JSON.stringify(output.sid)}: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
    this.name = 'OnOutputError';
    this.output = output;
  }
}

/**
 * Reported to `onError` when `close()` stopped waiting: the server did not answer (or a handler did not finish) before
 * the worker's leases ran out by its own clock. Its partitions were dropped, not released: their next owner takes
 * them once the leases have lapsed and replays their live sessions (outputs not committed are made again there).
 */
export class CloseTimeoutError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_CLOSE_TIMEOUT' as const;
  /** The partitions dropped. */
  readonly partitions: readonly number[];
  constructor(partitions: readonly number[], message: string) {
    super(message);
    this.name = 'CloseTimeoutError';
    this.partitions = partitions;
  }
}

/**
 * `send()` or `sendMany()` failed after something may have been sent: Redis refused an event (out of memory,
 * say), or a call got no answer (a connection lost). Events go to their partitions in separate calls, and
 * Redis does not undo a call's earlier writes, so some events may be in the log. `ids` says which, per event in
 * the order given: its entry id if it was written, `null` if Redis refused it (or one before it in its call),
 * `undefined` if that is unknown (its call failed without an answer from the script: a lost connection). Send again only the events that are `null`, or those `undefined` too if a duplicate is
 * acceptable.
 */
export class SendError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_SEND_FAILED' as const;
  /** Per event, in the order given: its entry id if written, `null` if not, `undefined` if unknown. */
  readonly ids: ReadonlyArray<string | null | undefined>;
  constructor(ids: ReadonlyArray<string | null | undefined>, message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'SendError';
    this.ids = ids;
  }
}

/** A session's cap of events (`maxSessionEvents`) reached. */
export function sessionEventsError(limit: number, message: string): SessionLimitError {
  return new SessionLimitError('ERR_VELO_SESSION_EVENTS', limit, message);
}

/** A session's cap of age (`maxSessionAge`, ms) reached. */
export function sessionAgeError(limit: number, message: string): SessionLimitError {
  return new SessionLimitError('ERR_VELO_SESSION_AGE', limit, message);
}

/**
 * Reported to `onError` when a connection to Redis failed (refused, reset, timed out, closed) or the server is still
 * loading its data after a restart (`LOADING`): the client's error
 * is its `cause`. The worker goes on: its calls are retried, and the client reconnects by its own settings.
 */
export class RedisConnectionError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_REDIS_CONNECTION' as const;
  constructor(cause: unknown, advice?: string) {
    super(`A connection to Redis failed: ${connectionCauseText(cause)}${advice === undefined ? '' : `. ${advice}`}`, { cause });
    this.name = 'RedisConnectionError';
  }
}

// node-redis 6 rejects a command still queued (not yet written) when its `commandOptions.timeout` (5000 ms by
// default) runs out with a `TimeoutError` that has no message: name it, so the report says what happened.
function connectionCauseText(cause: unknown): string {
  const message = (cause as { message?: unknown } | null)?.message;
  if (message !== '') return String(message ?? cause);
  const name = (cause as { constructor?: { name?: unknown } }).constructor?.name;
  if (name === 'TimeoutError')
    return "TimeoutError: the client's command timeout (node-redis' commandOptions.timeout, 5000 ms by default) ran out before the command was written (a busy process or a slow server); the worker retries";
  return typeof name === 'string' && name !== '' ? name : 'an error with no message';
}

/**
 * A user's `onError` as velo-stream calls it (`process.emitWarning` if none): what it throws, or the promise it returns rejects with, neither reaches
 * the code that reported (a retry loop, a socket's event, a commit) nor ends the process. It goes to
 * `process.emitWarning` as an `ERR_VELO_ON_ERROR`, with the error `onError` was given (`reported`) and its own (`cause`).
 */
export function reporterOf(onError: ((error: unknown) => unknown) | undefined): (error: unknown) => void {
  if (onError === undefined) return (error) => process.emitWarning(error instanceof Error ? error : new Error(String(error)));
  /** Its `code` or `message` if a string (read in a try: a getter may throw), else how `describe` puts it. */
  const said = (value: unknown, field: 'code' | 'message'): string => {
    try {
      const text = (value as Record<string, unknown> | null)?.[field] ?? (value as Error | null)?.message;
      if (typeof text === 'string') return text;
    } catch {
      // (described below)
    }
    return describe(value);
  };
  const warn = (reported: unknown, cause: unknown): void => {
    const message = `onError failed while given ${said(reported, 'code')}: ${said(cause, 'message')}`;
    process.emitWarning(coded(new Error(message, { cause }), 'ERR_VELO_ON_ERROR', { reported }));
  };
  return (error) => {
    try {
      const pending = onError(error) as PromiseLike<unknown> | undefined;
      if (pending !== null && typeof pending === 'object' && typeof pending.then === 'function')
        pending.then(undefined, (cause: unknown) => warn(error, cause));
    } catch (cause) {
      warn(error, cause);
    }
  };
}

/** A partition's fencing epoch went back, or its outputs end before a reader's position: the server lost data. */
export function logResetError(partition: number, message: string): Error & { code: 'ERR_VELO_LOG_RESET'; partition: number } {
  return coded(new Error(message), 'ERR_VELO_LOG_RESET', { partition });
}

/** A `postgresLimiter` call not answered within `callTimeout` ms (`what`: the call). */
export function postgresTimeoutError(ms: number, what: string): Error & { code: 'ERR_VELO_POSTGRES_TIMEOUT'; timeout: number } {
  return coded(new Error(`${what}: Postgres did not answer within callTimeout (${ms} ms)`), 'ERR_VELO_POSTGRES_TIMEOUT', {
    timeout: ms,
  });
}

/** A call to Redis not answered within `callTimeout` ms (`what`: the call, when the message names it). */
export function redisTimeoutError(ms: number, what?: string): Error & { code: 'ERR_VELO_REDIS_TIMEOUT'; timeout: number } {
  const message = `Redis did not answer within callTimeout (${ms} ms)`;
  return coded(new Error(what === undefined ? message : `${what}: ${message}`), 'ERR_VELO_REDIS_TIMEOUT', { timeout: ms });
}

/** Why a resume cursor was refused (`ResumeCursorError.reason`). */
export type ResumeCursorReason = 'length' | 'syntax' | 'partitions' | 'future' | 'unknown';

/** The JSON body of a 400 answer to a refused resume cursor (`ResumeCursorError.toJSON()`). */
export interface ResumeCursorErrorJSON {
  /** What was wrong. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_BAD_CURSOR`. */
    code: string;
    /** Why it was refused. */
    reason: ResumeCursorReason;
  };
}

/**
 * A resume cursor (an SSE `Last-Event-ID`, a `from` option) that no reader of these keys wrote: answer with
 * `status` (400) and `toJSON()`, as `keySse` and `keyNdjson` do.
 */
export class ResumeCursorError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BAD_CURSOR.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_BAD_CURSOR' as const;
  /**
   * `length`: longer than a cursor of these keys can be; `syntax`: not `<partition>:<ms>-<seq>` pairs joined by
   * commas; `partitions`: naming other partitions than the keys' (a cursor of other keys); `future`: after the
   * newest output of its partition; `unknown`: inside the kept outputs, yet not the id of one.
   */
  readonly reason: ResumeCursorReason;
  constructor(reason: ResumeCursorReason, message: string) {
    super(message);
    this.name = 'ResumeCursorError';
    this.reason = reason;
  }
  /** The body of a 400 response. */
  toJSON(): ResumeCursorErrorJSON {
    return { error: { message: this.message, code: this.code, reason: this.reason } };
  }
}

/** The JSON body of a 410 answer to a cursor whose outputs were trimmed away (`ResumeTrimmedError.toJSON()`). */
export interface ResumeTrimmedErrorJSON {
  /** What was wrong. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_RESUME_TRIMMED`. */
    code: string;
    /** The partition whose outputs were removed. */
    partition: number;
  };
}

/**
 * Outputs after a reader's position were removed from the log (or may have been): answer with `status` (410) and
 * `toJSON()`, as `keySse` and `keyNdjson` do before their first output.
 */
export class ResumeTrimmedError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_RESUME_TRIMMED.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_RESUME_TRIMMED' as const;
  /** The partition whose output stream no longer holds the outputs after the position. */
  readonly partition: number;
  constructor(partition: number, message: string) {
    super(message);
    this.name = 'ResumeTrimmedError';
    this.partition = partition;
  }
  /** The body of a 410 response. */
  toJSON(): ResumeTrimmedErrorJSON {
    return { error: { message: this.message, code: this.code, partition: this.partition } };
  }
}

/** A call of a worker after its `close()`. */
export function workerClosedError(): Error & { code: 'ERR_VELO_CLOSED' } {
  return coded(new Error('The worker is closed'), 'ERR_VELO_CLOSED');
}

// ----- limiters -----

/** The errors `refusal` made: a limiter's refusals, as opposed to failures (a throwing key function, a bad cost). */
const refusals = new WeakSet<Error>();

/** Whether `error` is a limiter's refusal (no permit now, a full line, a closed limiter, a cost over the burst). */
export function isRefusal(error: unknown): boolean {
  return error instanceof Error && refusals.has(error);
}

/** The HTTP fields of a refusal: `status` from `HTTP_ANSWERS`, and `headers` (`Retry-After`) whenever `retryAfter` is set. */
function refusal<E extends Error>(error: E, code: keyof typeof HTTP_ANSWERS): E & { status: number } {
  refusals.add(error);
  Object.defineProperty(error, 'status', {
    value: HTTP_ANSWERS[code].status,
    enumerable: true,
    configurable: true,
    writable: true,
  });
  // A getter, so that a `retryAfter` set later (the fleet limiters assign theirs) is answered too.
  if (HTTP_ANSWERS[code].retryAfter)
    Object.defineProperty(error, 'headers', { get: retryAfterHeaders, enumerable: false, configurable: true });
  return error as E & { status: number };
}

/**
 * A limiter in reject mode had no permit now (`limiter`: its name). `retryAfter`: the wait, ms, when the limiter
 * knows it (its rate holds the acquire back); answered as `Retry-After` (429).
 */
export function rateLimitedError(
  limiter: string,
  what: string,
  retryAfter?: number,
): Error & { code: 'ERR_VELO_RATE_LIMITED'; limiter: string; status: number; retryAfter?: number } {
  const wait = retryAfter === undefined ? '' : `; the rate allows one in ${Math.ceil(retryAfter)} ms`;
  const error = coded(
    new Error(`${what}: limiter "${limiter}" has no permit now (mode 'reject')${wait}`),
    'ERR_VELO_RATE_LIMITED',
    retryAfter === undefined ? { limiter } : { limiter, retryAfter },
  );
  return refusal(error, 'ERR_VELO_RATE_LIMITED');
}

/** A throttling limiter's line is full (503). */
export function limitQueueFullError(
  limiter: string,
  maxWaiting: number,
): Error & { code: 'ERR_VELO_LIMIT_QUEUE_FULL'; limiter: string; status: number } {
  const error = coded(
    new Error(`Limiter "${limiter}": ${maxWaiting} acquires wait already (maxWaiting)`),
    'ERR_VELO_LIMIT_QUEUE_FULL',
    { limiter },
  );
  return refusal(error, 'ERR_VELO_LIMIT_QUEUE_FULL');
}

/** An acquire after (or waiting at) a limiter's close() (503). */
export function limiterClosedError(
  limiter: string,
): Error & { code: 'ERR_VELO_LIMITER_CLOSED'; limiter: string; status: number } {
  return refusal(
    coded(new Error(`Limiter "${limiter}" is closed`), 'ERR_VELO_LIMITER_CLOSED', { limiter }),
    'ERR_VELO_LIMITER_CLOSED',
  );
}

/** A cost function's result that cannot be used: the server's own failure (no `status`: 500). */
export function limitCostError(message: string, cause?: unknown): RangeError & { code: 'ERR_VELO_LIMIT_COST' } {
  return coded(cause === undefined ? new RangeError(message) : new RangeError(message, { cause }), 'ERR_VELO_LIMIT_COST');
}

/** A cost above the rate's burst, which could never be granted (413): `cost` and `burst` say by how much. */
export function costOverBurstError(
  limiter: string,
  cost: number,
  burst: number,
): RangeError & { code: 'ERR_VELO_LIMIT_COST'; limiter: string; cost: number; burst: number; status: number } {
  const error = coded(
    new RangeError(`Limiter "${limiter}": the cost ${cost} is above the rate's burst (${burst}), so it could never be granted`),
    'ERR_VELO_LIMIT_COST',
    { limiter, cost, burst },
  );
  return refusal(error, 'ERR_VELO_LIMIT_COST');
}

/** A key function that threw or returned no usable key. */
/** `ERR_VELO_LIMIT_TENANT`: a limiter's `fairness.by(item)` or `fairness.weight(tenant)` gave no usable answer. */
export function limitTenantError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_LIMIT_TENANT' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_LIMIT_TENANT');
}

/** `ERR_VELO_LIMIT_PRIORITY`: a limiter's `priority(item)` gave no usable answer. */
export function limitPriorityError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_LIMIT_PRIORITY' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_LIMIT_PRIORITY');
}

export function limitKeyError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_LIMIT_KEY' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_LIMIT_KEY');
}

/** A `sessionWorker` could not get a limiter's permit for a session or a step (`cause`: the limiter's error); it asks again. */
export function sessionPermitError(
  limiter: string,
  per: 'session' | 'step',
  message: string,
  cause: unknown,
): Error & { code: 'ERR_VELO_SESSION_PERMIT'; limiter: string; per: 'session' | 'step' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_SESSION_PERMIT', { limiter, per });
}

/** `ERR_VELO_SCHEMA_VERSION`: the Postgres schema is at `found`, this release expects `expected` (`live`: the workers registered on an older schema). */
/** `ERR_VELO_POOL_TOO_SMALL`: the pool's `max` is too small for a worker that listens. */
export function poolTooSmallError(message: string): RangeError & { code: 'ERR_VELO_POOL_TOO_SMALL' } {
  return coded(new RangeError(message), 'ERR_VELO_POOL_TOO_SMALL');
}

/** `ERR_VELO_POOL_EXHAUSTED`: the pool gave no connection within a bound. */
export function poolExhaustedErrorOf(message: string): Error & { code: 'ERR_VELO_POOL_EXHAUSTED' } {
  return coded(new Error(message), 'ERR_VELO_POOL_EXHAUSTED');
}

/** `ERR_VELO_NOT_A_POOL`: the `pool` option is one connection, not a pool. */
export function notAPoolError(message: string): TypeError & { code: 'ERR_VELO_NOT_A_POOL' } {
  return coded(new TypeError(message), 'ERR_VELO_NOT_A_POOL');
}

/** `ERR_VELO_TRANSACTION_IDLE`: the server ended a transaction for its idle timeout (`cause`: the connection's error). */
export function transactionIdleError(message: string, cause: unknown): Error & { code: 'ERR_VELO_TRANSACTION_IDLE' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_TRANSACTION_IDLE');
}

/** `ERR_VELO_EFFECTS_CLIENT`: a call on the `effects` client that would break the commit's transaction. */
export function effectsClientError(message: string): Error & { code: 'ERR_VELO_EFFECTS_CLIENT' } {
  return coded(new Error(message), 'ERR_VELO_EFFECTS_CLIENT');
}

export function schemaVersionError(
  message: string,
  found: number,
  expected: number,
  live: readonly string[] = [],
): Error & { code: 'ERR_VELO_SCHEMA_VERSION'; found: number; expected: number; live: readonly string[] } {
  return coded(new Error(message), 'ERR_VELO_SCHEMA_VERSION', { found, expected, live });
}

/** JavaScript's own error classes, by name. */
const BUILT_IN_ERRORS: Readonly<Record<string, ErrorConstructor>> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** JavaScript's error class named `name` (`TypeError`, `RangeError`, ...), else `Error`: an error rebuilt as itself. */
export function builtInErrorClass(name: unknown): ErrorConstructor {
  return (typeof name === 'string' && Object.hasOwn(BUILT_IN_ERRORS, name) && BUILT_IN_ERRORS[name]) || Error;
}
