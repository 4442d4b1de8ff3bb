// The NDJSON request body as events (`ndjsonEvents`, part of velo-stream/http): read synchronously in paused mode,
// a chunk's lines parsed with the checks (UTF-8, line and body limits) and handed to a stream's pull as one run.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as bufferConstants, isUtf8 } from 'node:buffer';
import { Readable, finished } from 'node:stream';
import { onNextTurn } from '../addon/addon';
import { doneResult, NOT_NOW, type ReadTarget, kLeftCut, kReadNow, kReadTo, kRefusesInput, kUnreadWatch } from '../core/protocol';
import {
  RequestBodyError,
  RequestBodyTimeoutError,
  bodyTooLargeError,
  bodyAlreadyReadError,
  describe,
  invalidType,
  invalidValue,
  lineTooLargeError,
} from '../errors';
import {
  bodyEndPending,
  kBodyLeft,
  closeIfBodyLeft,
  closeIfBodyUnread,
  dropBodyLeft,
  lingerAtClose,
  responseOf,
} from '../net/body-close';
import { integerOption } from '../validate';
import { assertOptionsObject } from '../config';

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

/** `ndjsonEvents` given no options (one shared answer, where each call made two objects and a key list). */
const DEFAULT_LIMITS: { readonly maxLineBytes: number; readonly maxBodyBytes: number } = Object.freeze({
  maxLineBytes: 100 * 1024,
  maxBodyBytes: Infinity,
});

function resolveNdjsonOptions(opts: unknown): { readonly maxLineBytes: number; readonly maxBodyBytes: number } {
  if (opts === undefined) return DEFAULT_LIMITS;
  assertOptionsObject(opts, 'options', '{ maxLineBytes, maxBodyBytes }');
  for (const key of Object.keys(opts)) {
    if (!NDJSON_KEYS.has(key)) throw invalidValue(`Unknown option "${key}". Known options: ${[...NDJSON_KEYS].join(', ')}`);
  }
  const o = opts as NdjsonOptions;
  return {
    maxLineBytes:
      o.maxLineBytes === undefined
        ? DEFAULT_LIMITS.maxLineBytes
        : byteLimit('maxLineBytes', o.maxLineBytes, MAX_LINE_BYTES, false),
    maxBodyBytes:
      o.maxBodyBytes === undefined
        ? DEFAULT_LIMITS.maxBodyBytes
        : byteLimit('maxBodyBytes', o.maxBodyBytes, Number.MAX_SAFE_INTEGER, true),
  };
}

/**
 * The events of an NDJSON request body, parsed line by line as they arrive
 * (lines end with `\n` or `\r\n`; blank lines, of spaces and tabs, are
 * skipped; a byte order mark opening the body is ignored; a last line
 * without a newline counts). Throws `RequestBodyError` (status 400) at the
 * first malformed line (not JSON, or not UTF-8), and `RequestTooLargeError` (status 413) at the first
 * line over `maxLineBytes` or when the body passes `maxBodyBytes`; the lines
 * before either are delivered first: a stream fed from it has its input end
 * there, and reports the error after its outputs. Reading stops there (the request is
 * left unread, not destroyed, so that the error can still be answered).
 * A stream that stops reading it while a line is arriving (its idle end, or
 * `end()`) fails after its outputs with `RequestBodyTimeoutError` (status
 * 408): never a success over a cut body.
 * Options are checked at the call. Pass it to `feed()` or `run()`.
 */
export function ndjsonEvents<E = unknown>(req: IncomingMessage | Readable, opts?: NdjsonOptions): AsyncGenerator<E> {
  if (!(req instanceof Readable)) {
    throw invalidType(`The "req" argument must be a Readable (an http.IncomingMessage). Received ${describe(req)}`);
  }
  const { maxLineBytes, maxBodyBytes } = resolveNdjsonOptions(opts);
  return new NdjsonBody<E>(req, maxLineBytes, maxBodyBytes) as unknown as AsyncGenerator<E>;
}

/**
 * Set on a request whose NDJSON body's reader was left while a read waited on a line still arriving (the stream's
 * input ended by its idle timeout, or `end()`): a `RequestBodyTimeoutError`, which the writers answer in place of
 * a silent success over a cut body.
 */
export const kBodyCut = Symbol('velo.bodyCut');

/** What `feed()` gives a body it is to read (`kUnreadWatch`): its cancel. */
interface UnreadFeed {
  cancel(reason?: unknown): Promise<void>;
}

/** Bodies a feed is to read, looked at on the next turn (`NdjsonBody.watchUnread`). */
let toWatch: NdjsonBody<unknown>[] = [];

function watchUnread(): void {
  const bodies = toWatch;
  toWatch = [];
  for (let i = 0; i < bodies.length; i++) bodies[i].watchUnread();
}

/** A byte order mark, in UTF-8. */
const BOM = [0xef, 0xbb, 0xbf];

/** A blank line's stand-in: nothing to deliver. */
const BLANK = Symbol('velo.blankLine');

/** Where an `NdjsonBody` is. */
const enum BodyState {
  /** Lines may still come from the request. */
  Reading,
  /** The body was read to its end: once its lines are taken, the iteration is done. */
  Ended,
  /** The request failed: once the lines before it are taken, its error. */
  Failed,
  /**
   * A line or the body was refused: once the lines before it are taken, its error. Until a read takes that error,
   * the refusal is nobody's: a reader that leaves first leaves the body as at any line.
   */
  Refused,
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
 * `maxLineBytes` + 1); once `#state` is `Failed` or `Refused`, lines are
 * given one per read (`kReadNow` answers `NOT_NOW`), so each is taken in and
 * answered before the error comes, as it would be had it come in a chunk of
 * its own; a refusal closes the connection (`closeIfBodyUnread`) only when a
 * read takes it, so that how the body was cut into chunks does not decide
 * the connection's fate.
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
  /** Left while a line was arriving: the error of that loss (`kLeftCut`). */
  #cut: unknown = undefined;
  /** Read from (a read asked for a line): the reader hears of a client that leaves from the request itself. */
  #read = false;
  /** The feed to read this body, until it reads (`kUnreadWatch`). */
  #feed: UnreadFeed | null = null;
  /** The response to the request, as the feed was made (`kUnreadWatch`), until the feed reads or is cancelled. */
  #res: ServerResponse | undefined = undefined;
  /**
   * Its error is a refusal of the rest of the body (a line or the body over its bound, a malformed line): the
   * stream it feeds delivers the outputs of the lines before, then the error (`kRefusesInput`). Any other error (the
   * client left mid-body, a body read before it) fails the stream as a source that throws does.
   */
  #refusal = false;

  constructor(req: Readable, maxLineBytes: number, maxBodyBytes: number) {
    this.#req = req;
    this.#maxLineBytes = maxLineBytes;
    this.#maxBodyBytes = maxBodyBytes;
    this.#room = maxBodyBytes;
    // Refused before reading, at the first read.
    const declared = Number((req as IncomingMessage).headers?.['content-length']);
    if (declared > maxBodyBytes) this.#refuse(bodyTooLargeError(maxBodyBytes));
    // Read before (a body parser took the bytes): not a body refused, whose lines before are the input, but a source
    // that fails at its first read, so that the stream fails before its handler takes an empty input for whole.
    else if (req.readableDidRead === true || req.readableEnded) {
      this.#fail(bodyAlreadyReadError());
    }
    // The answer may start, and end, while the body still arrives: a connection closed then closes lingering.
    lingerAtClose(req as IncomingMessage);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Whether its error (read when its reader fails) refuses the rest of the body or fails the stream: `#refusal`. */
  get [kRefusesInput](): boolean {
    return this.#refusal;
  }

  /**
   * `feed()` is to read this body. If nothing has by the next turn (an HTTP writer not called yet), the response's
   * close cancels the feed, and so the stream: a client that leaves, or an answer written without the feed, frees
   * its slot then, not at the writer's call or the idle end.
   */
  [kUnreadWatch](feed: UnreadFeed): void {
    this.#feed = feed;
    this.#res = responseOf(this.#req as IncomingMessage);
    if (toWatch.push(this) === 1) onNextTurn(watchUnread);
  }

  /** The turn after `kUnreadWatch`: unread still, the response's close is listened to (the request's, with none). */
  watchUnread(): void {
    const res = this.#res;
    if (this.#read || this.#feed === null || this.#state === BodyState.Closed) {
      this.#res = undefined;
      return;
    }
    if (res !== undefined) {
      if (res.closed) this.#unreadLeft(true);
      else res.once('close', () => this.#unreadLeft(true));
    } else if (this.#req.destroyed) this.#unreadLeft(false);
    else this.#req.once('close', () => this.#unreadLeft(false));
  }

  /**
   * The response closed (`answered`: its answer is over, or its client left), or, with no response known, the
   * request: if nothing read the body, the feed never will, and it is cancelled. (A request that closed with its
   * body read to its end by another reader is no client that left.)
   */
  #unreadLeft(answered: boolean): void {
    const feed = this.#feed;
    this.#feed = null;
    this.#res = undefined;
    if (feed === null || this.#read || this.#state === BodyState.Closed) return;
    if (answered || (this.#state === BodyState.Reading && this.#req.readableEnded !== true)) void feed.cancel();
  }

  /** Left while a line was arriving (see `return()`): `feed()` and `run()` fail with this after the outputs. */
  get [kLeftCut](): unknown {
    return this.#cut;
  }

  next(): Promise<IteratorResult<E>> {
    return new Promise((resolve, reject) => this[kReadTo]({ resolve, reject }));
  }

  /** Leaves the body: reading stops (the request is left to its response, not destroyed); any waiting read is done. */
  return(value?: unknown): Promise<IteratorResult<E>> {
    if (this.#state !== BodyState.Ended && this.#state !== BodyState.Closed) {
      const req = this.#req as Readable & { [kBodyLeft]?: boolean; [kBodyCut]?: unknown };
      req[kBodyLeft] = true;
      // Left while a read waited and part of a line was in: that line, and the body after it, are lost. (A
      // reader that stops taking lines leaves with no read waiting; one whose client is silent between lines
      // loses nothing sent.)
      const waiting = this.#waiting !== null && this.#waiting.length > 0;
      if (this.#state === BodyState.Reading && waiting && (this.#held > 0 || req.readableLength > 0)) {
        this.#cut = req[kBodyCut] ??= new RequestBodyTimeoutError(this.#line + 1, this.#held + req.readableLength);
      }
      // Nothing reads the rest of the body: it is dropped once the answer is out, whoever writes it (now, if it is).
      const res = responseOf(req as IncomingMessage);
      if (res !== undefined) closeIfBodyLeft(res);
      else dropBodyLeft(req as IncomingMessage);
    }
    this.#close();
    const waiting = this.#waiting;
    if (waiting !== null) while (waiting.length > 0) (waiting.shift() as BodyReader).resolve(doneResult());
    return Promise.resolve({ value, done: true } as IteratorResult<E>);
  }

  throw(error: unknown): Promise<IteratorResult<E>> {
    void this.return();
    return Promise.reject(error);
  }

  /** A line parsed and not given yet, or `NOT_NOW` (none, or a refusal is pending: see the class's invariants). */
  [kReadNow](): E | typeof NOT_NOW {
    if (this.#next < this.#lines.length && this.#state < BodyState.Failed) return this.#lines[this.#next++];
    return NOT_NOW;
  }

  /** One read: answered now when a line, the end or the error is at hand (reading the request if need be), else on a later event of the request. */
  [kReadTo](reader: BodyReader): void {
    this.#read = true;
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
    const state = this.#state;
    if (state === BodyState.Reading) return false;
    if (state === BodyState.Failed || state === BodyState.Refused) {
      const error = this.#error;
      this.#close();
      // A refusal taken: nothing reads the rest of the body, so its connection closes once answered, whoever
      // writes the answer (`Connection: close` if the headers are not out yet), unless the body turns out to have
      // all arrived (Node marks it complete a turn after its last bytes came with the headers).
      if (state === BodyState.Refused) {
        const res = responseOf(this.#req as IncomingMessage);
        if (res !== undefined) {
          const pending = bodyEndPending(res);
          if (pending === undefined) closeIfBodyUnread(res);
          else void pending.then(() => closeIfBodyUnread(res));
        }
      }
      reader.reject(error);
    } else reader.resolve(doneResult());
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
        // (A body read as text, `req.setEncoding(...)`: its bytes back, as it decoded them.)
        this.#chunk(typeof data === 'string' ? Buffer.from(data, req.readableEncoding ?? 'utf8') : (data as Buffer));
      } catch (error) {
        this.#refuse(error);
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
      this.#refuse(error);
      return;
    }
    this.#pieces = null;
    this.#state = BodyState.Ended;
  }

  /** A line or the body refused: its error comes after the lines before it (see `#answer` for the connection). */
  #refuse(error: unknown): void {
    this.#fail(error);
    this.#state = BodyState.Refused;
    this.#refusal = true;
  }

  /** The body failed: a client that left before its end, or a body read before (no refusal: `#refusal`). */
  #fail(error: unknown): void {
    this.#refusal = false;
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
      (this.#pieces ??= []).push(chunk.subarray(start));
      const excess = this.#held - this.#maxLineBytes - 1;
      if (excess > 0 && excess > this.#bomOf(this.#pieces)) {
        throw lineTooLargeError(this.#maxLineBytes, this.#line + 1);
      }
    }
    // (After the held line's check: with smaller chunks, that check would have come first.)
    if (over) throw bodyTooLargeError(this.#maxBodyBytes);
  }

  /** The next line's event, from its decoded text (`bytes`: its length in UTF-8, line ending excluded). */
  #parse(text: string, bytes: number): E | typeof BLANK {
    const line = ++this.#line;
    // A byte order mark may open the body (RFC 8259 lets a parser ignore it); JSON.parse would not, and its
    // 3 bytes are not the line's.
    if (line === 1 && text.charCodeAt(0) === 0xfeff) {
      text = text.slice(1);
      bytes -= 3;
    }
    if (bytes > this.#maxLineBytes) throw lineTooLargeError(this.#maxLineBytes, line);
    const first = text.charCodeAt(0);
    // (Only a line that is empty or opens with JSON whitespace can be blank.)
    if ((text.length === 0 || first === 32 || first === 9 || first === 13) && JSON_BLANK.test(text)) return BLANK;
    try {
      return JSON.parse(text) as E;
    } catch (error) {
      throw new RequestBodyError(line, error);
    }
  }

  /**
   * The bytes of a byte order mark opening the body at the start of `pieces`, the first line's bytes so far (3 or
   * 0): not counted against `maxLineBytes`. Only looked at for a line that would be over it otherwise.
   */
  #bomOf(pieces: readonly Buffer[]): number {
    if (this.#line !== 0) return 0;
    let at = 0;
    for (const piece of pieces) {
      for (let i = 0; i < piece.length; i++, at++) {
        if (at === 3) return 3;
        if (piece[i] !== BOM[at]) return 0;
      }
    }
    return at === 3 ? 3 : 0;
  }

  /** The next line's event, from its bytes (`\n` excluded). */
  #parseBytes(bytes: Buffer): E | typeof BLANK {
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length;
    if (end > this.#maxLineBytes && end - this.#maxLineBytes > this.#bomOf([bytes])) {
      throw lineTooLargeError(this.#maxLineBytes, this.#line + 1);
    }
    // Decoded only whole: a character split across chunks is joined first.
    const body = bytes.subarray(0, end);
    // JSON text is UTF-8 (RFC 8259); a decoder would turn bad bytes into U+FFFD silently.
    if (!isUtf8(body)) throw new RequestBodyError(this.#line + 1, new TypeError('The line is not valid UTF-8'));
    return this.#parse(body.toString('utf8'), end);
  }
}
