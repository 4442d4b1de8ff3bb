// velo-stream/http: stream outputs to an HTTP response as NDJSON or
// Server-Sent Events, and read an NDJSON request body as events.
//
// Works with Node's http.ServerResponse, so with Express's `res` and
// Fastify's `reply.raw`; `toReadable` gives a Readable for `reply.send`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { NOT_NOW, kCancelled, kReadNow, kSettle } from '../core/protocol';
import { kBodyCut } from './ndjson-body';
import { assertOptionsObject, readingOptions } from '../config';
import { SerializeError, describe, invalidType, invalidValue, responseInUseError } from '../errors';
import { bodyEndPending, closeIfBodyLeft, closeIfBodyUnread } from '../net/body-close';
import { drainOrClose } from '../net/drain';
import { errorAnswer as answerTo, errorJSON } from '../net/error-answer';
import { checkResponseFields } from '../net/response-fields';

/** Output formats. */
export type Format = 'ndjson' | 'sse';

// The errors live with every other error of the library (js/errors/); these are the ones this subpath makes.
export {
  RequestBodyError,
  RequestBodyTimeoutError,
  RequestTooLargeError,
  SerializeError,
  type RequestBodyErrorJSON,
  type RequestTooLargeErrorJSON,
} from '../errors';

/** Options of `sendNdjson`, `sendSse` and `toReadable`. */
export interface ResponseOptions<O> {
  /** How one output becomes text (default: JSON.stringify). */
  serialize?: (output: O) => string;
  /** SSE only: the `event:` name of outputs (default: none, i.e. "message"). */
  event?: string;
  /** Extra response headers (set before the first byte): a string, a number or an array of strings each, as `res.setHeader` takes them. */
  headers?: Record<string, string | number | readonly string[]>;
}

/** Something that can be stopped early: a velo-stream `Stream`, or any async iterable. */
/** What the writers take: any async iterable; one with `cancel()` (a stream, a `feed()`) is cancelled when the client leaves. */
export type Stoppable<O> = AsyncIterable<O> & {
  /** Called when the client leaves (and after an output the serializer refused). */
  cancel?: (reason?: unknown) => Promise<void>;
};

const CONTENT_TYPE: Record<Format, string> = {
  ndjson: 'application/x-ndjson; charset=utf-8',
  sse: 'text/event-stream; charset=utf-8',
};

/** SSE data may not contain bare newlines: each line becomes its own `data:` field. */
function sseFrame(data: string, event?: string): string {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`);
  return `${event ? `event: ${event}\n` : ''}${lines.join('')}\n`;
}

/** What a serializer's error says, for the SerializeError's message (read with care: it may be anything). */
function reasonOf(error: unknown): string {
  try {
    const message = (error as { message?: unknown } | null | undefined)?.message;
    return typeof message === 'string' ? message : String(error);
  } catch {
    return 'the serializer threw';
  }
}

/** `describe(value)`, or a plain word for a value that cannot be looked at (a revoked proxy). */
function describeSafely(value: unknown): string {
  try {
    return describe(value);
  } catch {
    return typeof value;
  }
}

/** The output's text, or a SerializeError. */
function serialized<O>(serialize: (o: O) => string, o: O): string {
  let text: unknown;
  try {
    text = serialize(o);
  } catch (error) {
    throw new SerializeError(`An output could not be serialized: ${reasonOf(error)}`, { cause: error });
  }
  if (typeof text !== 'string') {
    const what =
      o === undefined
        ? 'undefined'
        : typeof o === 'function'
          ? 'a function'
          : typeof o === 'symbol'
            ? 'a symbol'
            : describeSafely(o);
    throw new SerializeError(
      `An output could not be serialized: ${what} has no JSON text (the serializer returned ${describeSafely(text)})`,
    );
  }
  return text;
}

/** How outputs and errors go on the wire. */
interface Frames<O> {
  output(o: O): string;
  error(e: unknown): string;
}

const stringify = (o: unknown): string => JSON.stringify(o);

/** A line break: NDJSON gives each output one line (JSON's own text has none outside whitespace, which a custom serializer may add). */
const LINE_BREAK = /[\r\n]/;

/** One NDJSON line from a custom serializer's text, which may not break the framing. */
function ndjsonLine(text: string): string {
  if (LINE_BREAK.test(text)) {
    throw new SerializeError(
      'An output could not be serialized: the serializer returned text with a line break, and NDJSON gives each output one line',
    );
  }
  return `${text}\n`;
}

/** NDJSON with the default serializer: one shared set, not three closures per response. */
const NDJSON_FRAMES: Frames<unknown> = {
  output: (o) => `${serialized(stringify, o)}\n`,
  error: (e) => `${errorJSON(e)}\n`,
};

function frames<O>(format: Format, opts: ResponseOptions<O>): Frames<O> {
  if (format === 'ndjson' && opts.serialize === undefined) return NDJSON_FRAMES;
  const serialize = opts.serialize ?? stringify;
  return {
    output: (o: O) =>
      format === 'ndjson' ? ndjsonLine(serialized(serialize, o)) : sseFrame(serialized(serialize, o), opts.event),
    error: (e: unknown) => (format === 'ndjson' ? `${errorJSON(e)}\n` : sseFrame(errorJSON(e), 'error')),
  };
}

/**
 * Stops the producer: cancels the stream when there is one (a pending read
 * ends, the handler's `finally` runs), else closes the iterator. Async, so
 * that an iterator whose return() throws rejects rather than throws.
 */
async function stop<O>(outputs: Stoppable<O>, it: AsyncIterator<unknown>, why: string, cause?: unknown): Promise<void> {
  if (typeof outputs.cancel === 'function') await outputs.cancel(cause ?? new Error(why));
  else await it.return?.();
}

/** The connection's own error when its client left mid-request (Node's ECONNRESET "aborted"), if it has one. */
function connectionError(res: ServerResponse): unknown {
  const req = res.req as { errored?: unknown } | undefined;
  return req?.errored ?? undefined;
}

const RESPONSE_KEYS = new Set(['serialize', 'event', 'headers']);

/** Checks a writer's format and options at the call, as the rest of the library does. */
function checkResponseOptions(format: unknown, opts: unknown): void {
  if (format !== 'ndjson' && format !== 'sse') {
    throw invalidValue(`The "format" argument must be 'ndjson' or 'sse'. Received ${describe(format)}`);
  }
  if (opts === undefined) return;
  assertOptionsObject(opts, 'options', '{ serialize, event, headers }');
  // (Options that cannot be read, a throwing getter or a revoked Proxy, are refused as such, with a code.)
  readingOptions('options', () => {
    for (const key of Object.keys(opts)) {
      if (!RESPONSE_KEYS.has(key)) throw invalidValue(`Unknown option "${key}". Known options: ${[...RESPONSE_KEYS].join(', ')}`);
    }
    checkResponseFields(opts);
  });
}

function assertResponse(res: unknown): asserts res is ServerResponse {
  const r = res as Partial<ServerResponse> | null;
  const usable = readingOptions(
    'res',
    () =>
      r !== null &&
      typeof r === 'object' &&
      typeof r.write === 'function' &&
      typeof r.setHeader === 'function' &&
      typeof r.on === 'function',
  );
  if (!usable) throw invalidType(`The "res" argument must be an http.ServerResponse. Received ${describe(res)}`);
}

function assertOutputs(outputs: unknown): asserts outputs is AsyncIterable<unknown> {
  const iterable = readingOptions(
    'outputs',
    () => outputs !== null && typeof (outputs as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === 'function',
  );
  if (!iterable) {
    throw invalidType(`The "outputs" argument must be an async iterable (a Stream, or feed()). Received ${describe(outputs)}`);
  }
}

/** Set on a response a writer has taken (a writer's call, or a `toReadable` piped into it): a response takes one. */
const kWriter = Symbol('velo.writer');

type WrittenResponse = ServerResponse & { [kWriter]?: true };

/** Takes `res` for a writer: false when another writer has it. */
function takeResponse(res: WrittenResponse): boolean {
  if (res[kWriter] === true) return false;
  res[kWriter] = true;
  return true;
}

/** A plain iterable's read, raced with the client's leaving: the client left. */
const LEFT: unique symbol = Symbol('velo.left');

/**
 * Writes every output to `res` in `format`, honouring backpressure (a full
 * socket pauses the reading, and so the handler), and ends the response when
 * the outputs end. A handler error is reported in the format's own way (a
 * final `{"error":…}` line, or an `event: error`; a refusal of a limiter or
 * of admission carries its `status`, and `retryAfter` in seconds when known,
 * as the headers went out already) and the response ends; an error before the
 * first output is answered as `sendError` answers it (its `status`, else 500,
 * `Retry-After` when known, and a JSON body), with the `headers` option's
 * headers.
 * Both carry the same fixed shape (`errorAnswer` in js/net/error-answer.ts),
 * never the error's own `toJSON()`. An output the serializer rejects counts
 * as a handler error and stops the stream. A request body that the stream
 * stopped reading while a line of it was arriving (`RequestBodyTimeoutError`)
 * is answered as such an error, in place of the outputs not written yet, and
 * so are outputs that a cancel on the server's side ended (their
 * `StreamClosedError`): a cut answer never ends like a whole one. If
 * the client goes away first, the stream is cancelled (so the handler's
 * `finally` runs and its slot frees at once); a plain async iterable (no
 * `cancel()`) has its `return()` called, not waited for (a generator parked
 * on an `await` answers it only when it resumes), and the writer settles. A
 * HEAD request is answered with the headers alone, and the stream is
 * cancelled unread. Waits for a full socket to drain, leaving no listener
 * behind. Resolves when done; never rejects because of the client. Rejects
 * at once with `ERR_INVALID_STATE` on a response another writer has (the
 * outputs are left open).
 */
export async function writeResponse<O>(
  res: ServerResponse,
  outputs: Stoppable<O>,
  format: Format,
  opts?: ResponseOptions<O>,
): Promise<void> {
  assertResponse(res);
  assertOutputs(outputs);
  checkResponseOptions(format, opts);
  // A second writer would interleave its outputs with the first's, or wait for ever once the first ended the answer.
  if (!takeResponse(res)) throw responseInUseError();
  const frame = frames<O>(format, opts ?? (NO_OPTIONS as ResponseOptions<O>));
  const headers = opts?.headers;
  const it = outputs[Symbol.asyncIterator]();
  // A HEAD response has no body: Node takes and drops every write at once, so nothing would ever pause the handler.
  if (isHead(res)) {
    if (!res.destroyed && !res.writableEnded) {
      startResponse(res, format, headers);
      res.end();
    }
    await stop(outputs, it, 'HEAD request').catch(() => {});
    return;
  }
  // A plain async iterable cannot be made to answer a pending read (a cancel does that for a stream): its reads
  // are raced with the client's leaving, so that the writer settles when the client leaves.
  const plain = typeof outputs.cancel !== 'function';
  let leave: (() => void) | undefined;
  const left = plain ? new Promise<typeof LEFT>((resolve) => (leave = () => resolve(LEFT))) : undefined;
  let gone = res.destroyed || res.writableEnded;
  const onClose = () => {
    if (res.writableFinished) return;
    gone = true;
    leave?.();
    // Nobody is left to tell if stopping fails (a plain iterator's return()). The reason: the connection's error
    // (a client that left mid-body), else that the client left.
    stop(outputs, it, 'client disconnected', connectionError(res)).catch(() => {});
  };
  // (\`on\`, not \`once\`: 'close' comes once, and \`finally\` removes it; \`once\` would wrap it in two more objects.)
  res.on('close', onClose);
  // Gone before we started (the handler awaited something first, and the
  // client left meanwhile): its 'close' has fired already, so stop now. The
  // pending read below then ends.
  if (gone) {
    leave?.();
    stop(outputs, it, 'client disconnected').catch(() => {});
  }
  let failed = false;
  const ready = ReadyTaker.of(outputs, frame, res.writableHighWaterMark);
  const req = res.req as BodyRequest | undefined;
  try {
    for (;;) {
      let text = '';
      let failure: { error: unknown } | undefined;
      try {
        const next = it.next();
        const r = left === undefined ? await next : await Promise.race([next, left]);
        if (r === LEFT || gone) break;
        // The stream stopped reading a body whose line was arriving: its outputs since are of a cut body.
        const cut = req?.[kBodyCut];
        if (cut !== undefined) failure = { error: cut };
        else if (r.done) {
          // Ended by a cancel (the server's: the client's sets `gone`), the answer is cut: an error, not a whole answer.
          const cancelled = cancelledOf(outputs);
          if (cancelled === undefined) break;
          failure = { error: cancelled };
        } else {
          text = frame.output(r.value);
          // The outputs ready with it go out in the same write.
          if (ready !== undefined) {
            let taken = ready.take(text);
            if (taken instanceof Promise) taken = await taken;
            ({ text, failure } = taken);
          }
          // (The client may have left while the handler finished its run.)
          if (gone) break;
          // (Or, the handler having run to its end meanwhile, its body found cut: those outputs are of a cut body.)
          const cutSince = req?.[kBodyCut];
          if (cutSince !== undefined) {
            text = '';
            failure = { error: cutSince };
          }
        }
      } catch (error) {
        // The outputs failed, or an output could not be serialized (then the
        // stream would go on: it is stopped in `finally`).
        failure = { error };
      }
      if (text !== '') {
        startResponse(res, format, headers);
        const room = res.write(text);
        flushCompressed(res);
        // The socket is full: wait for room, or for the client to leave.
        if (!room && failure === undefined) await drainOrClose(res);
      }
      if (failure === undefined) {
        if (gone) break;
        continue;
      }
      failed = true;
      if (gone) break;
      if (!res.headersSent) {
        // (A body sent whole keeps its connection: Node may tell its end only after this turn.)
        const bodyEnd = bodyEndPending(res);
        if (bodyEnd !== undefined) {
          await bodyEnd;
          if (gone) break;
        }
        res.write(errorAnswer(res, failure.error, headers));
      } else {
        closeIfBodyUnread(res);
        res.write(frame.error(failure.error));
      }
      break;
    }
  } finally {
    res.off('close', onClose);
    if (!gone) {
      startResponse(res, format, headers);
      closeIfBodyLeft(res);
      res.end();
    }
    // Our iterator is not waiting here, so return() stops the producer at
    // once (a Stream's cancels it; feed()'s runs its cleanup). A plain
    // iterable the client left had its return() called then, not waited for.
    if (failed || (gone && !plain)) await Promise.resolve(it.return?.()).catch(() => {});
  }
}

/**
 * Sends on what a compressing middleware holds of the response (Express' `compression()` adds `res.flush()`, which
 * ends a compressed block), so that each write reaches the client as it is made, not when the stream ends.
 */
function flushCompressed(res: ServerResponse): void {
  const flush = (res as { flush?: unknown }).flush;
  if (typeof flush === 'function') flush.call(res);
}

/**
 * Answers `error` as the writers answer an error before any output: its
 * `status` (an integer from 400 to 599; else 504 for a deadline that passed, a
 * `DOMException` named `TimeoutError` or an error caused by one; else 500: 400 for a malformed request
 * body, 408 for one cut by the stream's idle end, 413 for one over a size
 * limit; for the refusals of limiters and of admission, 429 for a limiter
 * with no permit now, 413 for a cost above its burst, 503 for a full line, a
 * closed limiter or a `StreamLimitError`: docs/errors.md, "HTTP answers"),
 * `Retry-After` (seconds, rounded up) when a 429 or 503 knows its wait
 * (`retryAfter`, ms), the JSON body
 * `{"error":{"message","code"}}` (a refusal's adds `status`, and `retryAfter`
 * in seconds when known; see `errorAnswer` in
 * js/net/error-answer.ts: never the error's `toJSON()`; a 5xx's message is
 * the status's reason phrase unless the error has `expose: true`), and
 * `Connection: close` when the request body was not read to its end (the
 * rest of the body is then read and dropped, up to a bound, so that a client
 * still sending gets the answer). A request with no body keeps its
 * connection. For the error thrown before a writer could be called, such as
 * `open()` past `maxConcurrent`. Headers set on `res` before stay. A response
 * whose headers went out already is destroyed (the client sees it cut
 * short); one that ended is left as it is. Never throws for the error.
 */
export function sendError(res: ServerResponse, error: unknown): void {
  assertResponse(res);
  if (res.destroyed || res.writableEnded) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.end(errorAnswer(res, error));
}

/** Sets the status and headers of the answer to `error` (the headers are not out yet); returns its JSON body. */
function errorAnswer(res: ServerResponse, error: unknown, headers?: ResponseOptions<unknown>['headers']): string {
  const { status, body, retryAfter } = answerTo(error);
  res.statusCode = status;
  if (headers !== undefined) for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (retryAfter !== undefined) res.setHeader('retry-after', String(retryAfter));
  res.setHeader('content-type', 'application/json; charset=utf-8');
  closeIfBodyUnread(res);
  return JSON.stringify(body);
}

/** A response to a HEAD request. */
function isHead(res: ServerResponse): boolean {
  return (res.req as IncomingMessage | undefined)?.method === 'HEAD';
}

/** A writer given no options. */
const NO_OPTIONS: ResponseOptions<never> = Object.freeze({});

/**
 * Headers go out with the first output, so that an error before any output
 * (a malformed request body, say) can still be answered with its own status.
 */
function startResponse(res: ServerResponse, format: Format, headers: ResponseOptions<unknown>['headers']): void {
  if (res.headersSent) return;
  res.statusCode = 200;
  res.setHeader('content-type', CONTENT_TYPE[format]);
  // (No `Connection` header: Node keeps an HTTP/1.1 connection alive unless the client asked otherwise, and HTTP/2 has none.)
  if (format === 'sse') res.setHeader('cache-control', 'no-cache');
  if (headers !== undefined) for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
}

/** Frames taken (`ReadyTaker`); `failure`: an output could not be serialized (`text` has the ones before it). */
type Taken = { text: string; failure?: { error: unknown } };

/** What an outputs object of this library offers for taking the outputs ready with one just read (protocol.ts). */
interface ReadyOutputs<O> {
  [kReadNow](): O | typeof NOT_NOW;
  [kSettle](): Promise<void> | undefined;
}

/**
 * For the outputs of this library: adds to `text` (the frame of an output
 * just read) the frames of the outputs ready with it, up to about `limit`
 * characters. While the handler is still producing, it waits once for it to
 * stop (it waits for input or finishes), or for the next turn of the event
 * loop, so that a run of outputs goes out together. Past `limit` (a socket's
 * high-water mark) the rest stays in the stream, to wait for room there: no
 * more is held here than one output's wait would hold. `failure`: an output
 * could not be serialized (`text` has the ones before it). `of` answers
 * undefined for other async iterables.
 */
class ReadyTaker<O> {
  readonly #source: ReadyOutputs<O>;
  readonly #frame: { output: (o: O) => string };
  readonly #limit: number;

  static of<O>(outputs: Stoppable<O>, frame: { output: (o: O) => string }, limit: number): ReadyTaker<O> | undefined {
    const ready = outputs as Partial<ReadyOutputs<O>>;
    if (typeof ready[kReadNow] !== 'function' || typeof ready[kSettle] !== 'function') return undefined;
    return new ReadyTaker(ready as ReadyOutputs<O>, frame, limit);
  }

  constructor(source: ReadyOutputs<O>, frame: { output: (o: O) => string }, limit: number) {
    this.#source = source;
    this.#frame = frame;
    this.#limit = limit;
  }

  /** Synchronous when nothing is to be waited for (the handler is not running): no promise and no turn of the microtask queue per read then. */
  take(text: string): Taken | Promise<Taken> {
    const taken = this.#takeNow(text);
    if (taken.failure !== undefined || taken.text.length >= this.#limit) return taken;
    const settled = this.#source[kSettle]();
    if (settled === undefined) return taken;
    return this.#takeSettled(settled, taken.text);
  }

  async #takeSettled(settled: Promise<void>, text: string): Promise<Taken> {
    await settled;
    return this.#takeNow(text);
  }

  #takeNow(text: string): Taken {
    const source = this.#source;
    while (text.length < this.#limit) {
      const value = source[kReadNow]();
      if (value === NOT_NOW) break;
      try {
        text += this.#frame.output(value);
      } catch (error) {
        return { text, failure: { error } };
      }
    }
    return { text };
  }
}

/** The outputs of this library that can tell a cancel ended them (protocol.ts). */
type CancelAware = { [kCancelled]?: () => Error | undefined };

/** The error of the cancel that ended `outputs`' reads, if one did; undefined for other async iterables. */
function cancelledOf(outputs: object): Error | undefined {
  const cancelled = (outputs as CancelAware)[kCancelled];
  return typeof cancelled === 'function' ? cancelled.call(outputs) : undefined;
}

/** A request as the writers look at it: the marks its NDJSON body's reader leaves (ndjson-body.ts). */
type BodyRequest = IncomingMessage & { [kBodyCut]?: unknown };

/** The `RequestBodyTimeoutError` of a response's request whose body the stream stopped reading mid-line, if any. */
function cutOf(res: ServerResponse | undefined): unknown {
  const req: BodyRequest | undefined = res?.req;
  return req === undefined ? undefined : req[kBodyCut];
}

/** NDJSON: one JSON document per line. */
export function sendNdjson<O>(res: ServerResponse, outputs: Stoppable<O>, opts?: ResponseOptions<O>): Promise<void> {
  return writeResponse(res, outputs, 'ndjson', opts);
}

/** Server-Sent Events: one `data:` event per output. */
export function sendSse<O>(res: ServerResponse, outputs: Stoppable<O>, opts?: ResponseOptions<O>): Promise<void> {
  return writeResponse(res, outputs, 'sse', opts);
}

/**
 * The Readable of `toReadable`: it keeps the first HTTP response it is piped
 * into (Fastify's `reply.send` and `pipeline` pipe it, as does a plain
 * `.pipe(res)`), to answer an error before any output with a status, to close
 * a connection whose body nobody reads any more, as the writers do, and to be
 * destroyed (the stream cancelled) when the response closes unfinished.
 */
class OutputReadable extends Readable {
  response: ServerResponse | undefined = undefined;
  /** Called when piped into a response to a HEAD request. */
  onHead: (() => void) | undefined = undefined;

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (this.response === undefined && isResponseLike(destination)) {
      if (!takeResponse(destination)) {
        // Another writer has the response: this Readable fails (as `pipeline` reports) and writes nothing to it.
        process.nextTick(() => this.destroy(responseInUseError()));
        return destination;
      }
      this.response = destination;
      if (isHead(destination)) this.onHead?.();
      // A response closed before its end was written (a client that left): the stream is cancelled, as `pipeline`
      // and Fastify do by destroying this Readable. (Node's own pipe() only unpipes.)
      destination.once('close', () => {
        if (!destination.writableFinished) this.destroy();
      });
    }
    return super.pipe(destination, options);
  }
}

/** A `ServerResponse` (or one that quacks like it), as opposed to another Writable. */
function isResponseLike(w: unknown): w is ServerResponse {
  const r = w as Partial<ServerResponse>;
  return typeof r.setHeader === 'function' && typeof r.headersSent === 'boolean' && typeof r.req === 'object' && r.req !== null;
}

/**
 * The outputs as a byte Readable in `format` (for Fastify's `reply.send`, or
 * `pipeline`). Reading pulls outputs; destroying it (a client that left)
 * cancels the stream at once, even while the handler waits for input, and
 * the Readable closes once the handler has returned (a plain async iterable,
 * with no `cancel()`, has its `return()` called, not waited for, and the
 * Readable closes at once). Piped into an HTTP response whose headers are not
 * out yet, an error before any output is answered as `sendError` answers it
 * (its status and JSON body; the `headers` option is only checked: set
 * headers on the reply); read any other way, it is a final error line or
 * event, of the same shape; outputs that a cancel other than its own ended
 * (the server's) end it with such an error too. Piped into a response to a
 * HEAD request, it ends at once and the stream is cancelled unread; piped
 * into a response another writer has, it fails with `ERR_INVALID_STATE`.
 * Never leaves a rejection unhandled, whatever was thrown.
 */
export function toReadable<O>(outputs: Stoppable<O>, format: Format, opts?: ResponseOptions<O>): Readable {
  assertOutputs(outputs);
  checkResponseOptions(format, opts);
  const frame = frames<O>(format, opts ?? (NO_OPTIONS as ResponseOptions<O>));
  const it = outputs[Symbol.asyncIterator]();
  // The outputs are over (ended, or failed and reported, or stopped): nothing more is pushed or stopped.
  let over = false;
  // Some output was pushed: an error now is a final error line or event.
  let started = false;
  // Not Readable.from over a generator: a generator can only be returned from
  // at its next step, so a destroy would wait for the next output (forever,
  // for a handler waiting for input). This Readable stops the stream itself.
  const readable = new OutputReadable({
    read() {
      // (Nothing in a pull is meant to throw; if something does, the Readable fails with it rather than leave a
      // rejection unhandled.)
      pull().catch((error: unknown) => readable.destroy(error as Error));
    },
    destroy(error, callback) {
      if (over) return callback(error);
      over = true;
      if (typeof outputs.cancel !== 'function') {
        // A plain async iterable: its return() is called, not waited for (a generator parked on an await
        // answers it only when it resumes), and the Readable closes now.
        stop(outputs, it, 'response closed').catch(() => {});
        return callback(error);
      }
      stop(outputs, it, 'response closed').then(
        () => callback(error),
        (stopError: unknown) => callback(error ?? (stopError as Error)),
      );
    },
  });
  readable.onHead = () => {
    if (over) return;
    over = true;
    readable.push(null);
    stop(outputs, it, 'HEAD request').catch(() => {});
  };
  /** The outputs ended: a body left unread closes its connection once the answer is out. */
  const end = (): void => {
    over = true;
    if (readable.response !== undefined) closeIfBodyLeft(readable.response);
    readable.push(null);
  };
  /** The outputs failed (or one could not be serialized), after the frames in `text`. */
  const fail = async (text: string, error: unknown): Promise<void> => {
    over = true;
    const res = readable.response;
    const early = (): boolean => !started && text === '' && res !== undefined && !res.headersSent && !res.writableEnded;
    // (A body sent whole keeps its connection: Node may tell its end only after this turn.)
    const bodyEnd = early() ? bodyEndPending(res as ServerResponse) : undefined;
    if (bodyEnd !== undefined) {
      await bodyEnd;
      if (readable.destroyed) return;
    }
    if (early()) {
      // Nothing went out yet: the response is answered with the error's status, and its JSON body is pushed.
      readable.push(errorAnswer(res as ServerResponse, error));
    } else {
      if (res !== undefined) closeIfBodyUnread(res);
      readable.push(text + frame.error(error));
    }
    readable.push(null);
  };
  const ready = ReadyTaker.of(outputs, frame, readable.readableHighWaterMark);
  /** One read: the next output and those ready with it, pushed together. */
  const pull = async (): Promise<void> => {
    let value: O | undefined;
    let failure: { error: unknown } | undefined;
    let done = false;
    try {
      const r = await it.next();
      done = Boolean(r.done);
      if (!done) value = r.value as O;
    } catch (error) {
      failure = { error };
    }
    if (over || readable.destroyed) return;
    // The stream stopped reading a body whose line was arriving: its outputs since are of a cut body.
    const cut = cutOf(readable.response);
    if (cut !== undefined) {
      const failed = fail('', cut);
      stop(outputs, it, 'the request body was cut').catch(() => {});
      await failed;
      return;
    }
    if (failure !== undefined) {
      await fail('', failure.error);
      return;
    }
    if (done) {
      // Ended by a cancel other than this Readable's (a destroy sets `over`): the answer is cut, an error.
      const cancelled = cancelledOf(outputs);
      if (cancelled === undefined) end();
      else await fail('', cancelled);
      return;
    }
    let framed: Taken;
    try {
      framed = { text: frame.output(value as O) };
      // The outputs ready with it are pushed with it, as writeResponse writes them.
      if (ready !== undefined) {
        const taken = ready.take(framed.text);
        framed = taken instanceof Promise ? await taken : taken;
      }
    } catch (error) {
      framed = { text: '', failure: { error } };
    }
    if (over || readable.destroyed) return;
    // (The handler having run to its end meanwhile, its body may be found cut: those outputs are of a cut body.)
    const cutSince = cutOf(readable.response);
    if (cutSince !== undefined) framed = { text: '', failure: { error: cutSince } };
    if (framed.failure === undefined) {
      started = true;
      readable.push(framed.text);
      return;
    }
    // An output the serializer refused: the outputs before it went out, then its error (as the other writers
    // do), and the stream, which would go on, is stopped.
    const failed = fail(framed.text, framed.failure.error);
    stop(outputs, it, 'an output could not be serialized').catch(() => {});
    await failed;
  };
  return readable;
}

/** The content type of a format, for frameworks that set headers themselves. */
export function contentType(format: Format): string {
  return CONTENT_TYPE[format];
}

export { type NdjsonOptions, ndjsonEvents } from './ndjson-body';
