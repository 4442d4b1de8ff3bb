// velo-stream/http: stream outputs to an HTTP response as NDJSON or
// Server-Sent Events, and read an NDJSON request body as events.
//
// Works with Node's http.ServerResponse, so with Express's `res` and
// Fastify's `reply.raw`; `toReadable` gives a Readable for `reply.send`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as bufferConstants, isUtf8 } from 'node:buffer';
import { Readable, finished } from 'node:stream';
import { DONE, NOT_NOW, type ReadTarget, kReadNow, kReadTo, kSettle } from '../core/protocol';
import { assertOptionsObject } from '../config';
import {
  RequestBodyError,
  SerializeError,
  bodyTooLargeError,
  describe,
  invalidType,
  invalidValue,
  lineTooLargeError,
} from '../errors';
import { integerOption } from '../validate';
import { drainOrClose } from '../net/drain';
import { checkResponseFields } from '../net/response-fields';

/** Output formats. */
export type Format = 'ndjson' | 'sse';

// The errors live with every other error of the library (js/errors.ts); these are the ones this subpath makes.
export {
  RequestBodyError,
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

/** What a handler error looks like on the wire. */
function errorPayload(error: unknown): { error: { message: string; code?: string } } {
  const e = error as { message?: unknown; code?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(error);
  return { error: typeof e?.code === 'string' ? { message, code: e.code } : { message } };
}

/** SSE data may not contain bare newlines: each line becomes its own `data:` field. */
function sseFrame(data: string, event?: string): string {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`);
  return `${event ? `event: ${event}\n` : ''}${lines.join('')}\n`;
}

/** The output's text, or a SerializeError. */
function serialized<O>(serialize: (o: O) => string, o: O): string {
  let text: unknown;
  try {
    text = serialize(o);
  } catch (error) {
    const reason = typeof (error as { message?: unknown })?.message === 'string' ? (error as Error).message : String(error);
    throw new SerializeError(`An output could not be serialized: ${reason}`, { cause: error });
  }
  if (typeof text !== 'string') {
    const what =
      o === undefined ? 'undefined' : typeof o === 'function' ? 'a function' : typeof o === 'symbol' ? 'a symbol' : describe(o);
    throw new SerializeError(
      `An output could not be serialized: ${what} has no JSON text (the serializer returned ${describe(text)})`,
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

/** NDJSON with the default serializer: one shared set, not three closures per response. */
const NDJSON_FRAMES: Frames<unknown> = {
  output: (o) => `${serialized(stringify, o)}\n`,
  error: (e) => `${JSON.stringify(errorPayload(e))}\n`,
};

function frames<O>(format: Format, opts: ResponseOptions<O>): Frames<O> {
  if (format === 'ndjson' && opts.serialize === undefined) return NDJSON_FRAMES;
  const serialize = opts.serialize ?? stringify;
  return {
    output: (o: O) => (format === 'ndjson' ? `${serialized(serialize, o)}\n` : sseFrame(serialized(serialize, o), opts.event)),
    error: (e: unknown) =>
      format === 'ndjson' ? `${JSON.stringify(errorPayload(e))}\n` : sseFrame(JSON.stringify(errorPayload(e)), 'error'),
  };
}

/**
 * Stops the producer: cancels the stream when there is one (a pending read
 * ends, the handler's `finally` runs), else closes the iterator. Async, so
 * that an iterator whose return() throws rejects rather than throws.
 */
async function stop<O>(outputs: Stoppable<O>, it: AsyncIterator<unknown>, why: string): Promise<void> {
  if (typeof outputs.cancel === 'function') await outputs.cancel(new Error(why));
  else await it.return?.();
}

const RESPONSE_KEYS = new Set(['serialize', 'event', 'headers']);

/** Checks a writer's format and options at the call, as the rest of the library does. */
function checkResponseOptions(format: unknown, opts: unknown): void {
  if (format !== 'ndjson' && format !== 'sse') {
    throw invalidValue(`The "format" argument must be 'ndjson' or 'sse'. Received ${describe(format)}`);
  }
  if (opts === undefined) return;
  assertOptionsObject(opts, 'options', '{ serialize, event, headers }');
  for (const key of Object.keys(opts)) {
    if (!RESPONSE_KEYS.has(key)) throw invalidValue(`Unknown option "${key}". Known options: ${[...RESPONSE_KEYS].join(', ')}`);
  }
  checkResponseFields(opts);
}

function assertResponse(res: unknown): asserts res is ServerResponse {
  const r = res as Partial<ServerResponse> | null;
  if (r === null || typeof r !== 'object' || typeof r.write !== 'function' || typeof r.setHeader !== 'function') {
    throw invalidType(`The "res" argument must be an http.ServerResponse. Received ${describe(res)}`);
  }
}

function assertOutputs(outputs: unknown): asserts outputs is AsyncIterable<unknown> {
  if (outputs === null || typeof (outputs as AsyncIterable<unknown>)?.[Symbol.asyncIterator] !== 'function') {
    throw invalidType(`The "outputs" argument must be an async iterable (a Stream, or feed()). Received ${describe(outputs)}`);
  }
}

/**
 * Writes every output to `res` in `format`, honouring backpressure (a full
 * socket pauses the reading, and so the handler), and ends the response when
 * the outputs end. A handler error is reported in the format's own way (a
 * final `{"error":…}` line, or an `event: error`) and the response ends; an
 * error before the first output is answered with its `status` (400 for a
 * malformed request body, 413 for one over a size limit, else 500) and a JSON
 * error body instead, with `Connection: close` if the request body was not
 * read to its end. An output the serializer rejects counts as a handler error
 * and stops the stream. If the client goes away first, the stream is
 * cancelled (so the handler's `finally` runs and its slot frees at once).
 * Waits for a full socket to drain, leaving no listener behind. Resolves when
 * done; never rejects because of the client.
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
  const frame = frames<O>(format, opts ?? (NO_OPTIONS as ResponseOptions<O>));
  const headers = opts?.headers;
  const it = outputs[Symbol.asyncIterator]();
  let gone = res.destroyed || res.writableEnded;
  const onClose = () => {
    if (res.writableFinished) return;
    gone = true;
    // Nobody is left to tell if stopping fails (a plain iterator's return()).
    stop(outputs, it, 'client disconnected').catch(() => {});
  };
  // (\`on\`, not \`once\`: 'close' comes once, and \`finally\` removes it; \`once\` would wrap it in two more objects.)
  res.on('close', onClose);
  // Gone before we started (the handler awaited something first, and the
  // client left meanwhile): its 'close' has fired already, so stop now. The
  // pending read below then ends.
  if (gone) stop(outputs, it, 'client disconnected').catch(() => {});
  let failed = false;
  const ready = ReadyTaker.of(outputs, frame, res.writableHighWaterMark);
  try {
    for (;;) {
      let text = '';
      let failure: { error: unknown } | undefined;
      try {
        const r = await it.next();
        if (r.done || gone) break;
        text = frame.output(r.value);
        // The outputs ready with it go out in the same write.
        if (ready !== undefined) {
          let taken = ready.take(text);
          if (taken instanceof Promise) taken = await taken;
          ({ text, failure } = taken);
        }
        // (The client may have left while the handler finished its run.)
        if (gone) break;
      } catch (error) {
        // The outputs failed, or an output could not be serialized (then the
        // stream would go on: it is stopped in `finally`).
        failure = { error };
      }
      if (text !== '') {
        startResponse(res, format, headers);
        // The socket is full: wait for room, or for the client to leave.
        if (!res.write(text) && failure === undefined) await drainOrClose(res);
      }
      if (failure === undefined) {
        if (gone) break;
        continue;
      }
      failed = true;
      if (gone) break;
      const error = failure.error;
      if (!res.headersSent) {
        const e = error as { status?: unknown; toJSON?: () => unknown };
        res.statusCode = typeof e?.status === 'number' && e.status >= 400 && e.status < 600 ? e.status : 500;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        closeIfBodyUnread(res);
        res.write(JSON.stringify(typeof e?.toJSON === 'function' ? e.toJSON() : errorPayload(error)));
      } else {
        closeIfBodyUnread(res);
        res.write(frame.error(error));
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
    // once (a Stream's cancels it; feed()'s runs its cleanup).
    if (gone || failed) await Promise.resolve(it.return?.()).catch(() => {});
  }
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
  if (format === 'sse') {
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('connection', 'keep-alive');
  }
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

/**
 * An error is answered before its request body was read to the end (a body
 * refused for its size, maybe by its Content-Length before any byte was
 * read): nothing will read the rest, so the connection is closed after the
 * answer. Before the headers, `Connection: close` tells Node and the client;
 * Node does that by itself once a body was partly read, but a body never
 * read at all it would read to its end and discard, to keep the connection
 * alive for a next request. After the headers (outputs went out, then the
 * error line), the socket is ended once the answer is out, as Node ends one
 * it answered with `Connection: close`.
 */
function closeIfBodyUnread(res: ServerResponse): void {
  const req = res.req as IncomingMessage | undefined;
  if (req === undefined || req.complete) return;
  if (!res.headersSent) {
    res.setHeader('connection', 'close');
    return;
  }
  const socket = res.socket;
  if (socket !== null) res.once('finish', () => socket.end());
}

/**
 * The answer is complete, and the reader of its request's NDJSON body left
 * before the body's end (the stream it fed ended: by its idle timeout, say):
 * nothing will read the rest, so the connection is closed once the answer is
 * out, rather than kept while a client trickles a body (Node would read and
 * discard it until its requestTimeout).
 */
function closeIfBodyLeft(res: ServerResponse): void {
  const req = res.req as (IncomingMessage & { [kBodyLeft]?: boolean }) | undefined;
  const socket = res.socket;
  if (req === undefined || req.complete || socket === null) return;
  // (The response lets go of its socket at 'finish'.)
  res.once('finish', () => {
    if (req[kBodyLeft] === true && !req.complete) socket.end();
  });
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
 * The outputs as a byte Readable in `format` (for Fastify's `reply.send`, or
 * `pipeline`). Reading pulls outputs; destroying it (a client that left)
 * cancels the stream at once, even while the handler waits for input, and
 * the Readable closes once the handler has returned.
 */
export function toReadable<O>(outputs: Stoppable<O>, format: Format, opts?: ResponseOptions<O>): Readable {
  assertOutputs(outputs);
  checkResponseOptions(format, opts);
  const frame = frames<O>(format, opts ?? (NO_OPTIONS as ResponseOptions<O>));
  const it = outputs[Symbol.asyncIterator]();
  // The outputs are over (ended, or failed and reported): nothing to stop.
  let over = false;
  // Not Readable.from over a generator: a generator can only be returned from
  // at its next step, so a destroy would wait for the next output (forever,
  // for a handler waiting for input). This Readable stops the stream itself.
  const readable = new Readable({
    read() {
      void pull();
    },
    destroy(error, callback) {
      if (over) return callback(error);
      over = true;
      stop(outputs, it, 'response closed').then(
        () => callback(error),
        (stopError: unknown) => callback(error ?? (stopError as Error)),
      );
    },
  });
  const ready = ReadyTaker.of(outputs, frame, readable.readableHighWaterMark);
  /** One read: the next output and those ready with it, pushed together. */
  const pull = async (): Promise<void> => {
    let r: IteratorResult<O>;
    try {
      r = await it.next();
    } catch (error) {
      over = true;
      if (readable.destroyed) return;
      readable.push(frame.error(error));
      readable.push(null);
      return;
    }
    if (readable.destroyed) return;
    if (r.done) {
      over = true;
      readable.push(null);
      return;
    }
    let framed: Taken;
    try {
      framed = { text: frame.output(r.value) };
      // The outputs ready with it are pushed with it, as writeResponse writes them.
      if (ready !== undefined) {
        const taken = ready.take(framed.text);
        framed = taken instanceof Promise ? await taken : taken;
      }
    } catch (error) {
      framed = { text: '', failure: { error } };
    }
    if (readable.destroyed) return;
    if (framed.text !== '') readable.push(framed.text);
    if (framed.failure === undefined) return;
    // An output the serializer refused: the outputs before it went out, then its error line (as the other
    // writers do), and the stream, which would go on, is stopped.
    over = true;
    readable.push(frame.error(framed.failure.error));
    readable.push(null);
    stop(outputs, it, 'an output could not be serialized').catch(() => {});
  };
  return readable;
}

/** The content type of a format, for frameworks that set headers themselves. */
export function contentType(format: Format): string {
  return CONTENT_TYPE[format];
}

/** Size limits of `ndjsonEvents`. */
export interface NdjsonOptions {
  /**
   * Largest line, in bytes of UTF-8 without its line ending (default 102400,
   * 100 KiB, as Express's body parser). At most this much of one line is ever
   * held; a longer line is refused with `RequestTooLargeError`
   * (`ERR_VELO_NDJSON_LINE_TOO_LARGE`).
   */
  maxLineBytes?: number;
  /**
   * Largest body, in bytes (default: no limit; memory is bounded by
   * `maxLineBytes`, and a streamed body may rightly be long). A larger body is
   * refused with `RequestTooLargeError` (`ERR_VELO_BODY_TOO_LARGE`), before
   * reading when its Content-Length says so.
   */
  maxBodyBytes?: number;
}

const NDJSON_KEYS = new Set(['maxLineBytes', 'maxBodyBytes']);
/** A blank line: JSON's own whitespace only (`String#trim` would also skip a no-break space, which is not). */
const JSON_BLANK = /^[ \t\r]*$/;
/** A line is decoded to one string, so it may not be longer than V8's longest string (a UTF-8 byte decodes to at most one UTF-16 unit). */
const MAX_LINE_BYTES = bufferConstants.MAX_STRING_LENGTH;

function byteLimit(field: string, value: unknown, max: number, infinite: boolean): number {
  if (infinite && value === Infinity) return value;
  return integerOption(undefined, field, value, 1, max, `from 1 to ${max}${infinite ? ', or Infinity' : ''}`);
}

function resolveNdjsonOptions(opts: unknown): { maxLineBytes: number; maxBodyBytes: number } {
  if (opts === undefined) opts = {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw invalidType(`The "options" argument must be an object. Received ${describe(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!NDJSON_KEYS.has(key)) throw invalidValue(`Unknown option "${key}". Known options: ${[...NDJSON_KEYS].join(', ')}`);
  }
  const o = opts as NdjsonOptions;
  return {
    maxLineBytes: o.maxLineBytes === undefined ? 100 * 1024 : byteLimit('maxLineBytes', o.maxLineBytes, MAX_LINE_BYTES, false),
    maxBodyBytes:
      o.maxBodyBytes === undefined ? Infinity : byteLimit('maxBodyBytes', o.maxBodyBytes, Number.MAX_SAFE_INTEGER, true),
  };
}

/**
 * The events of an NDJSON request body, parsed line by line as they arrive
 * (lines end with `\n` or `\r\n`; blank lines, of spaces and tabs, are
 * skipped; a byte order mark opening the body is ignored; a last line
 * without a newline counts). Throws `RequestBodyError` (status 400) at the
 * first malformed line (not JSON, or not UTF-8), and `RequestTooLargeError` (status 413) at the first
 * line over `maxLineBytes` or when the body passes `maxBodyBytes`; the lines
 * before either are delivered first. Reading stops there (the request is
 * left unread, not destroyed, so that the error can still be answered).
 * Options are checked at the call. Pass it to `feed()` or `run()`.
 */
export function ndjsonEvents<E = unknown>(req: IncomingMessage | Readable, opts?: NdjsonOptions): AsyncGenerator<E> {
  if (!(req instanceof Readable)) {
    throw invalidType(`The "req" argument must be a Readable (an http.IncomingMessage). Received ${describe(req)}`);
  }
  const { maxLineBytes, maxBodyBytes } = resolveNdjsonOptions(opts);
  return new NdjsonBody<E>(req, maxLineBytes, maxBodyBytes) as unknown as AsyncGenerator<E>;
}

/** Set on a request whose NDJSON body's reader left before its end (see writeResponse). */
const kBodyLeft = Symbol('velo.bodyLeft');

/** A blank line's stand-in: nothing to deliver. */
const BLANK = Symbol('velo.blankLine');

/** Where an `NdjsonBody` is. */
const enum BodyState {
  /** Lines may still come from the request. */
  Reading,
  /** The body was read to its end: once its lines are taken, the iteration is done. */
  Ended,
  /** A line or the body was refused (or the request failed): once the lines before it are taken, its error. */
  Failed,
  /** Left (`return()`, `throw()`), or the error was delivered: every read is done. */
  Closed,
}

/** A read waiting for the next line (`next()`'s, or a stream's pull through `kReadTo`). */
type BodyReader = Pick<ReadTarget, 'resolve' | 'reject'>;

/** The request's events a body reader waits on: one listener for all, which looks at the request to tell them apart. */
const BODY_EVENTS = ['readable', 'end', 'error', 'close'] as const;

/**
 * `ndjsonEvents`: the body read synchronously, in paused mode (`req.read()`),
 * only when a read asks for a line and none is parsed: a chunk's lines are
 * parsed at once and kept here, given one by one (`next()`, `kReadTo`) or
 * taken along with the last one given (`kReadNow`). Backpressure is not
 * reading: the request's own buffer fills to its high-water mark and Node
 * stops reading the socket. The request's events are listened to from the
 * first read that waits (one listener for them all) until the body ends,
 * fails or is left.
 *
 * Invariants: `#lines[#next..]` are the parsed lines not given yet; the
 * request is read only while `#state` is `Reading` and they are all given;
 * `#held` bytes of an unfinished line are in `#pieces` (at most
 * `maxLineBytes` + 1); once `#state` is `Failed`, lines are given one per
 * read (`kReadNow` answers `NOT_NOW`), so each is taken in and answered before
 * the error comes, as it would be had it come in a chunk of its own.
 */
class NdjsonBody<E> {
  readonly #req: Readable;
  readonly #maxLineBytes: number;
  readonly #maxBodyBytes: number;
  #state = BodyState.Reading;
  #error: unknown = undefined;
  #lines: E[] = [];
  #next = 0;
  /** The unfinished line's bytes so far. */
  #pieces: Buffer[] | null = null;
  #held = 0;
  /** Lines parsed so far (blank ones included): the next line's number is `#line + 1`. */
  #line = 0;
  /** Bytes of the body that may still be parsed (`maxBodyBytes` less those read). */
  #room: number;
  /** Reads waiting, in order (made at the first wait). */
  #waiting: BodyReader[] | null = null;
  #listening = false;
  /** The listener of `BODY_EVENTS` (made at the first wait). */
  #onEvent: (() => void) | null = null;
  /** Waiting for `finished()` to tell how a request destroyed with no error ended (`#awaitClosed`). */
  #closing = false;

  constructor(req: Readable, maxLineBytes: number, maxBodyBytes: number) {
    this.#req = req;
    this.#maxLineBytes = maxLineBytes;
    this.#maxBodyBytes = maxBodyBytes;
    this.#room = maxBodyBytes;
    // Refused before reading, at the first read.
    const declared = Number((req as IncomingMessage).headers?.['content-length']);
    if (declared > maxBodyBytes) this.#fail(bodyTooLargeError(maxBodyBytes));
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<E>> {
    return new Promise((resolve, reject) => this[kReadTo]({ resolve, reject }));
  }

  /** Leaves the body: reading stops (the request is left to its response, not destroyed); any waiting read is done. */
  return(value?: unknown): Promise<IteratorResult<E>> {
    if (this.#state !== BodyState.Ended && this.#state !== BodyState.Closed) {
      (this.#req as Readable & { [kBodyLeft]?: boolean })[kBodyLeft] = true;
    }
    this.#close();
    const waiting = this.#waiting;
    if (waiting !== null) while (waiting.length > 0) (waiting.shift() as BodyReader).resolve(DONE);
    return Promise.resolve({ value, done: true } as IteratorResult<E>);
  }

  throw(error: unknown): Promise<IteratorResult<E>> {
    void this.return();
    return Promise.reject(error);
  }

  /** A line parsed and not given yet, or `NOT_NOW` (none, or a refusal is pending: see the class's invariants). */
  [kReadNow](): E | typeof NOT_NOW {
    if (this.#next < this.#lines.length && this.#state !== BodyState.Failed) return this.#lines[this.#next++];
    return NOT_NOW;
  }

  /** One read: answered now when a line, the end or the error is at hand (reading the request if need be), else on a later event of the request. */
  [kReadTo](reader: BodyReader): void {
    if (this.#waiting === null || this.#waiting.length === 0) {
      if (this.#answer(reader)) return;
      this.#waiting ??= [];
    }
    this.#waiting.push(reader);
    this.#listen();
  }

  /** Answers `reader` if it can be now. */
  #answer(reader: BodyReader): boolean {
    if (this.#next >= this.#lines.length && this.#state === BodyState.Reading) this.#fill();
    if (this.#next < this.#lines.length) {
      reader.resolve({ value: this.#lines[this.#next++], done: false });
      return true;
    }
    if (this.#state === BodyState.Reading) return false;
    if (this.#state === BodyState.Failed) {
      const error = this.#error;
      this.#close();
      reader.reject(error);
    } else reader.resolve(DONE);
    return true;
  }

  /** An event of the request: the waiting reads are answered as far as they can be. */
  #wake(): void {
    const waiting = this.#waiting;
    if (waiting === null) return;
    while (waiting.length > 0 && this.#answer(waiting[0])) waiting.shift();
    // (Kept while reading: a trickling body's every chunk would otherwise add and remove four listeners.)
    if (this.#state !== BodyState.Reading) this.#unlisten();
  }

  #listen(): void {
    if (this.#listening || this.#state !== BodyState.Reading) return;
    this.#listening = true;
    const on = (this.#onEvent ??= () => this.#wake());
    for (const name of BODY_EVENTS) this.#req.on(name, on);
  }

  #unlisten(): void {
    if (!this.#listening) return;
    this.#listening = false;
    const on = this.#onEvent as () => void;
    for (const name of BODY_EVENTS) this.#req.off(name, on);
  }

  /** Reads the request's chunks until one gives a line, the body ends or fails, or nothing more is there now. */
  #fill(): void {
    const req = this.#req;
    while (this.#state === BodyState.Reading) {
      const data: unknown = req.destroyed ? null : req.read();
      if (data === null) {
        // (A request whose message is complete has pushed its body's end already: with nothing left in its buffer,
        // the body is read, and its 'end' need not be waited for.)
        if (req.readableEnded || ((req as IncomingMessage).complete === true && req.readableLength === 0)) this.#ended();
        else if (req.destroyed) {
          if (req.errored !== null) this.#fail(req.errored);
          else this.#awaitClosed();
        }
        return;
      }
      this.#lines.length = 0;
      this.#next = 0;
      try {
        this.#chunk(typeof data === 'string' ? Buffer.from(data) : (data as Buffer));
      } catch (error) {
        this.#fail(error);
      }
      if (this.#lines.length > 0) return;
    }
  }

  /**
   * The request was destroyed before its end with no error of its own: a body cut short never looks complete. It
   * fails as Node's own reader of a Readable fails then, with the premature close `finished()` reports (on a
   * later tick), and the reads waiting are answered then.
   */
  #awaitClosed(): void {
    if (this.#closing) return;
    this.#closing = true;
    finished(this.#req, (error) => {
      if (this.#state !== BodyState.Reading) return;
      if (error === undefined || error === null) this.#ended();
      else this.#fail(error);
      this.#wake();
    });
  }

  /** The body's end: its last line, if it has no newline. */
  #ended(): void {
    try {
      if (this.#held > 0) this.#add(this.#parseBytes(Buffer.concat(this.#pieces as Buffer[], this.#held)));
    } catch (error) {
      this.#fail(error);
      return;
    }
    this.#pieces = null;
    this.#state = BodyState.Ended;
  }

  #fail(error: unknown): void {
    this.#state = BodyState.Failed;
    this.#error = error;
    this.#pieces = null;
  }

  /** Done for good: nothing more is read or given (reads waiting still are: `return()` answers them). */
  #close(): void {
    this.#state = BodyState.Closed;
    this.#error = undefined;
    this.#lines = [];
    this.#next = 0;
    this.#pieces = null;
    this.#unlisten();
  }

  #add(event: E | typeof BLANK): void {
    if (event !== BLANK) this.#lines.push(event);
  }

  /** Parses one chunk's lines into `#lines`; throws at a refused line or body, the lines before it kept. */
  #chunk(data: Buffer): void {
    let chunk = data;
    // Only bytes within maxBodyBytes are parsed, so which lines count does not
    // depend on how the body was cut into chunks.
    const over = chunk.length > this.#room;
    if (over) chunk = chunk.subarray(0, this.#room);
    this.#room -= chunk.length;
    let start = 0;
    const last = chunk.lastIndexOf(10);
    if (last !== -1 && this.#held > 0) {
      // The line begun in earlier chunks ends in this one.
      const pieces = this.#pieces as Buffer[];
      const nl = chunk.indexOf(10);
      pieces.push(chunk.subarray(0, nl));
      const bytes = Buffer.concat(pieces, this.#held + nl);
      pieces.length = 0;
      this.#held = 0;
      start = nl + 1;
      this.#add(this.#parseBytes(bytes));
    }
    if (start <= last) {
      // Whole lines, checked and decoded at once, then split as text.
      const region = chunk.subarray(start, last + 1);
      start = last + 1;
      if (isUtf8(region)) {
        const text = region.toString('utf8');
        // All ASCII: a line's length in UTF-16 units is its length in bytes.
        const ascii = text.length === region.length;
        const maxLineBytes = this.#maxLineBytes;
        for (let from = 0; from < text.length;) {
          const nl = text.indexOf('\n', from);
          let end = nl;
          if (end > from && text.charCodeAt(end - 1) === 13) end--;
          const lineText = text.slice(from, end);
          from = nl + 1;
          // (A UTF-16 unit is at most 3 bytes of UTF-8: most lines need no count.)
          const bytes = ascii || lineText.length * 3 <= maxLineBytes ? lineText.length : Buffer.byteLength(lineText);
          this.#add(this.#parse(lineText, bytes));
        }
      } else {
        // Some line is not UTF-8: line by line from the bytes, to name it.
        for (let from = 0, nl = region.indexOf(10); nl !== -1; from = nl + 1, nl = region.indexOf(10, from)) {
          this.#add(this.#parseBytes(region.subarray(from, nl)));
        }
      }
    }
    if (start < chunk.length) {
      this.#held += chunk.length - start;
      if (this.#held > this.#maxLineBytes + 1) throw lineTooLargeError(this.#maxLineBytes, this.#line + 1);
      (this.#pieces ??= []).push(chunk.subarray(start));
    }
    // (After the held line's check: with smaller chunks, that check would have come first.)
    if (over) throw bodyTooLargeError(this.#maxBodyBytes);
  }

  /** The next line's event, from its decoded text (`bytes`: its length in UTF-8, line ending excluded). */
  #parse(text: string, bytes: number): E | typeof BLANK {
    const line = ++this.#line;
    if (bytes > this.#maxLineBytes) throw lineTooLargeError(this.#maxLineBytes, line);
    // A byte order mark may open the body (RFC 8259 lets a parser ignore it); JSON.parse would not.
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const first = text.charCodeAt(0);
    // (Only a line that is empty or opens with JSON whitespace can be blank.)
    if ((text.length === 0 || first === 32 || first === 9 || first === 13) && JSON_BLANK.test(text)) return BLANK;
    try {
      return JSON.parse(text) as E;
    } catch (error) {
      throw new RequestBodyError(line, error);
    }
  }

  /** The next line's event, from its bytes (`\n` excluded). */
  #parseBytes(bytes: Buffer): E | typeof BLANK {
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length;
    if (end > this.#maxLineBytes) throw lineTooLargeError(this.#maxLineBytes, this.#line + 1);
    // Decoded only whole: a character split across chunks is joined first.
    const body = bytes.subarray(0, end);
    // JSON text is UTF-8 (RFC 8259); a decoder would turn bad bytes into U+FFFD silently.
    if (!isUtf8(body)) throw new RequestBodyError(this.#line + 1, new TypeError('The line is not valid UTF-8'));
    return this.#parse(body.toString('utf8'), end);
  }
}
