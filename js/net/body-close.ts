// Closing an HTTP/1 connection whose request body was not read to its end, without losing the answer: the writers
// of velo-stream/http and the NDJSON body reader (`ndjsonEvents`) share these.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** A request as looked at here: the mark its NDJSON body's reader leaves when it leaves before the body's end. */
type LeftRequest = IncomingMessage & { [kBodyLeft]?: boolean };

/** Set on a request whose NDJSON body's reader left before its end (ndjson-body.ts). */
export const kBodyLeft = Symbol('velo.bodyLeft');

/**
 * A request whose body is read to its end, or that has none: an HTTP/1 request
 * with neither `Transfer-Encoding` nor a `Content-Length` above 0 has no body
 * (RFC 9112, 6.3), though Node marks it complete only after the handler's
 * synchronous run.
 */
export function bodyRead(req: IncomingMessage): boolean {
  if (req.complete) return true;
  const headers = req.headers;
  if (headers === undefined || headers['transfer-encoding'] !== undefined) return false;
  const length = headers['content-length'];
  return length === undefined || Number(length) === 0;
}

/**
 * The response a server request is being answered with: Node's link from the
 * connection to the response it writes (`_httpMessage`), checked against the
 * request. Undefined when there is none (no socket, HTTP/2, a request built
 * by hand).
 */
export function responseOf(req: IncomingMessage): ServerResponse | undefined {
  const res = (req.socket as (Socket & { _httpMessage?: unknown }) | null | undefined)?._httpMessage as
    ServerResponse | undefined;
  return res !== undefined && res !== null && res.req === req ? res : undefined;
}

/**
 * Before an error is answered with nothing out yet: the next turn, if the
 * request's body is not known to be complete (HTTP/1; undefined when it is,
 * when there is none, or when the answer closes the connection already).
 * Node marks a body complete in a callback of its own after the body's last
 * bytes, which may come after a handler read them and failed: waiting a turn
 * lets a body sent whole keep its keep-alive connection (`closeIfBodyUnread`
 * looks at it then).
 */
export function bodyEndPending(res: ServerResponse): Promise<void> | undefined {
  const req = res.req as IncomingMessage | undefined;
  if (req === undefined || req.httpVersionMajor !== 1 || bodyRead(req) || res.getHeader('connection') === 'close')
    return undefined;
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * An error is answered before its request body was read to the end (a body
 * refused for its size, maybe by its Content-Length before any byte was
 * read): nothing will read the rest, so the connection is closed after the
 * answer. Before the headers, `Connection: close` tells Node and the client,
 * and the close is a lingering one (`lingerAtClose`); Node does that by
 * itself once a body was partly read, but a body never read at all it would
 * read to its end and discard, to keep the connection alive for a next
 * request. After the headers (outputs went out, then the error line), the
 * connection is closed once the answer is out, unless the body turns out
 * complete (see `endIfBodyUnread`). HTTP/1 only: an HTTP/2 stream is not a
 * connection.
 */
export function closeIfBodyUnread(res: ServerResponse): void {
  const req = res.req as IncomingMessage | undefined;
  if (req === undefined || req.httpVersionMajor !== 1 || bodyRead(req)) return;
  if (!res.headersSent) {
    res.setHeader('connection', 'close');
    lingerAtClose(req);
    return;
  }
  endIfBodyUnread(res, req, false);
}

/**
 * The answer is complete, and the reader of its request's NDJSON body left
 * before the body's end (the handler returned, or the stream it fed ended
 * by its idle timeout): nothing will read the rest. It is read and dropped
 * once the answer is out, as Node drops a body nobody read, so that a body
 * sent whole keeps its keep-alive connection, within the lingering bounds;
 * past them (a client that trickles its body) the connection is closed with
 * a lingering close.
 */
export function closeIfBodyLeft(res: ServerResponse): void {
  const req = res.req as IncomingMessage | undefined;
  if (req === undefined || req.httpVersionMajor !== 1 || bodyRead(req)) return;
  endIfBodyUnread(res, req, true);
}

/**
 * The reader of a request's NDJSON body left before its end with no answer in
 * flight on its connection (the request's answer went out already: nothing
 * links the connection to a response any more). The rest is read and dropped
 * now, as `closeIfBodyLeft` has it done once an answer is out: Node drops no
 * body that was read from, and the connection's next request would wait.
 */
export function dropBodyLeft(req: IncomingMessage): void {
  const socket = req.socket as (LingeringSocket & { _httpMessage?: unknown }) | null | undefined;
  if (!socket || socket.destroyed || req.httpVersionMajor !== 1 || bodyRead(req)) return;
  // (A pipelined request's answer waits for the one before it, which the connection is linked to: not out yet.)
  if ((socket._httpMessage ?? null) !== null || socket[kLingering] === true) return;
  dropRest(socket, req);
}

/** Set on a response whose connection is looked at once the answer is out (`endIfBodyUnread`): 1 to drop the rest of the body, 2 to close. */
const kAfterAnswer = Symbol('velo.afterAnswer');

type WatchedResponse = ServerResponse & { [kAfterAnswer]?: 1 | 2 };

/**
 * Once the answer is out, if the request's body is still not complete then
 * (and, with `left`, its NDJSON reader left it): the rest is dropped
 * (`left`, the connection kept if it ends within the bounds) or the
 * connection closed with a lingering close (a refused body). Looked at on
 * the turn after 'finish': Node tells a body's end in a callback of its own
 * after the body's last bytes. A refusal wins over a leaving, whichever was
 * told first.
 */
function endIfBodyUnread(res: WatchedResponse, req: LeftRequest, left: boolean): void {
  const socket = res.socket;
  if (socket === null) return;
  const seen = res[kAfterAnswer];
  res[kAfterAnswer] = left && seen !== 2 ? 1 : 2;
  if (seen !== undefined) return;
  // (The response lets go of its socket at 'finish'.)
  res.once('finish', () => {
    setImmediate(() => {
      if (req.complete || socket.destroyed || (socket as LingeringSocket)[kLingering] === true) return;
      if (res[kAfterAnswer] === 2) linger(socket, req);
      else if (req[kBodyLeft] === true) dropRest(socket, req);
    });
  });
}

/** How long a lingering close reads and drops the rest of a body, ms. */
const LINGER_MS = 2000;
/** How much of the rest of a body a lingering close reads and drops, bytes. */
const LINGER_BYTES = 4 * 1024 * 1024;
/** Set on a socket being closed with a lingering close. */
const kLingering = Symbol('velo.lingering');

/** A server's socket as looked at here: Node's parser of its requests (`parser.incoming`: the request being read). */
type LingeringSocket = Socket & { [kLingering]?: true; parser?: { incoming?: IncomingMessage | null } | null };

/**
 * A connection that is not kept alive (the client sent `Connection: close`
 * or speaks HTTP/1.0, or the answer says `Connection: close`): Node closes
 * its socket as soon as the answer is written (`destroySoon()`, called at
 * the response's 'finish'). A client still sending its body then gets a
 * reset, which discards the answer it has not read yet. That call becomes a
 * lingering close (`linger`) for this socket. Set when a request's body is
 * to be read (by `ndjsonEvents`) or refused: the answer may start before the
 * body ends. The socket holds no request for it: at the close, the body
 * still arriving is the one Node's parser is reading, and a keep-alive
 * socket lets its requests go once they are answered.
 */
export function lingerAtClose(req: IncomingMessage): void {
  const socket = req.socket as LingeringSocket | null | undefined;
  if (!socket || req.httpVersionMajor !== 1 || typeof socket.destroySoon !== 'function') return;
  if (socket.destroySoon !== lingeringDestroySoon) socket.destroySoon = lingeringDestroySoon;
}

/**
 * `destroySoon()` of a socket set by `lingerAtClose` (one function for all). Node calls it after it let go of the
 * answered request (`clearIncoming`): its parser keeps the request only while its body has not ended.
 */
function lingeringDestroySoon(this: LingeringSocket): void {
  // (Back to the prototype's, for any later call.)
  Reflect.deleteProperty(this, 'destroySoon');
  linger(this, this.parser?.incoming ?? undefined);
}

/**
 * A lingering close: the answer goes out, then the end of this side (the
 * client reads both whenever it reads); the rest of the body is read and
 * dropped until it ends, or for at most `LINGER_BYTES` and `LINGER_MS`, and
 * the socket is destroyed then. Destroying it at once with body bytes unread
 * would send a reset, and a client still sending would lose the answer.
 */
function linger(socket: LingeringSocket, req: IncomingMessage | undefined): void {
  if (socket.destroyed || socket[kLingering] === true) return;
  socket[kLingering] = true;
  socket.end();
  if (req === undefined || req.complete || req.readableEnded || req.destroyed) {
    closeWhenWritten(socket);
    return;
  }
  readRest(
    socket,
    req,
    () => closeWhenWritten(socket),
    () => socket.destroy(),
  );
}

/**
 * The answer is out and its request's body is not wanted: it is read and
 * dropped, and the connection kept if it ends within the lingering bounds
 * (Node goes on to the next request); past them it is closed (`linger`).
 */
function dropRest(socket: LingeringSocket, req: IncomingMessage): void {
  if (req.readableEnded || req.destroyed) return;
  readRest(
    socket,
    req,
    () => {},
    () => linger(socket, req),
  );
}

/** Reads and drops the rest of `req`'s body: `ended` at its end, `over` past `LINGER_BYTES` or `LINGER_MS`. */
function readRest(socket: Socket, req: IncomingMessage, ended: () => void, over: () => void): void {
  let room = LINGER_BYTES;
  const done = (): void => {
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', onEnd);
    socket.off('close', done);
  };
  const cut = (): void => {
    done();
    over();
  };
  const onData = (chunk: Buffer | string): void => {
    room -= chunk.length;
    if (room < 0) cut();
  };
  const onEnd = (): void => {
    done();
    ended();
  };
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  req.on('data', onData);
  req.once('end', onEnd);
  socket.once('close', done);
  req.resume();
}

/** Destroys `socket` once what was written to it is out (its end sent). */
function closeWhenWritten(socket: Socket): void {
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', () => socket.destroy());
}
