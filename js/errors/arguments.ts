// Arguments: Node's own codes, where Node uses them, and calls made in the wrong state.

import { coded } from './make';

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

/** `ndjsonEvents(req)` of a body something read before it (a body parser): what it read would be missing. */
export function bodyAlreadyReadError(): TypeError & { code: 'ERR_INVALID_STATE' } {
  return coded(
    new TypeError(
      "The request body was read before ndjsonEvents() (by a body parser such as express.json() or express.raw()?): its events would be missing. Leave the route's body unparsed",
    ),
    'ERR_INVALID_STATE',
  );
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
