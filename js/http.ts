// velo-stream/http: stream outputs to an HTTP response as NDJSON or
// Server-Sent Events, and read an NDJSON request body as events.
//
// Works with Node's http.ServerResponse, so with Express's `res` and
// Fastify's `reply.raw`; `toReadable` gives a Readable for `reply.send`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { describe, invalidType } from './errors';

/** Output formats. */
export type Format = 'ndjson' | 'sse';

export interface ResponseOptions<O> {
  /** How one output becomes text (default: JSON.stringify). */
  serialize?: (output: O) => string;
  /** SSE only: the `event:` name of outputs (default: none, i.e. "message"). */
  event?: string;
  /** Extra response headers (set before the first byte). */
  headers?: Record<string, string>;
}

/** Something that can be stopped early: a velo-stream `Stream`, or any async iterable. */
type Outputs<O> = AsyncIterable<O> & { cancel?: (reason?: unknown) => Promise<void> };

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

function frames<O>(format: Format, opts: ResponseOptions<O>) {
  const serialize = opts.serialize ?? ((o: O) => JSON.stringify(o));
  return {
    output: (o: O) => (format === 'ndjson' ? `${serialize(o)}\n` : sseFrame(serialize(o), opts.event)),
    error: (e: unknown) =>
      format === 'ndjson' ? `${JSON.stringify(errorPayload(e))}\n` : sseFrame(JSON.stringify(errorPayload(e)), 'error'),
  };
}

/** Stops the producer: cancels the stream when there is one (a pending read ends, the handler's `finally` runs), else closes the iterator. */
function stop<O>(outputs: Outputs<O>, it: AsyncIterator<O>, why: string): Promise<unknown> {
  if (typeof outputs.cancel === 'function') return outputs.cancel(new Error(why));
  return it.return?.() ?? Promise.resolve();
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
 * malformed request body, else 500) and a JSON error body instead. If the
 * client goes away first, the stream is cancelled (so the handler's `finally`
 * runs and its slot frees at once). Resolves when done; never rejects because
 * of the client.
 */
export async function writeResponse<O>(
  res: ServerResponse,
  outputs: Outputs<O>,
  format: Format,
  opts: ResponseOptions<O> = {},
): Promise<void> {
  assertOutputs(outputs);
  const frame = frames(format, opts);
  // Headers go out with the first output, so that an error before any output
  // (a malformed request body, say) can still be answered with its own status.
  const start = () => {
    if (res.headersSent) return;
    res.statusCode = 200;
    res.setHeader('content-type', CONTENT_TYPE[format]);
    if (format === 'sse') {
      res.setHeader('cache-control', 'no-cache');
      res.setHeader('connection', 'keep-alive');
    }
    for (const [k, v] of Object.entries(opts.headers ?? {})) res.setHeader(k, v);
  };
  const it = outputs[Symbol.asyncIterator]();
  let gone = res.destroyed || res.writableEnded;
  const onClose = () => {
    if (res.writableFinished) return;
    gone = true;
    void stop(outputs, it, 'client disconnected');
  };
  res.once('close', onClose);
  try {
    for (;;) {
      let r: IteratorResult<O>;
      try {
        r = await it.next();
      } catch (error) {
        if (gone) break;
        if (!res.headersSent) {
          const e = error as { status?: unknown; toJSON?: () => unknown };
          res.statusCode = typeof e?.status === 'number' && e.status >= 400 && e.status < 600 ? e.status : 500;
          res.setHeader('content-type', 'application/json; charset=utf-8');
          res.write(JSON.stringify(typeof e?.toJSON === 'function' ? e.toJSON() : errorPayload(error)));
        } else res.write(frame.error(error));
        break;
      }
      if (r.done || gone) break;
      start();
      if (!res.write(frame.output(r.value))) {
        // The socket is full: wait for room, or for the client to leave.
        await Promise.race([once(res, 'drain'), once(res, 'close')]);
      }
    }
  } finally {
    res.off('close', onClose);
    if (gone) await it.return?.();
    else {
      start();
      res.end();
    }
  }
}

/** NDJSON: one JSON document per line. */
export function sendNdjson<O>(res: ServerResponse, outputs: Outputs<O>, opts?: ResponseOptions<O>): Promise<void> {
  return writeResponse(res, outputs, 'ndjson', opts);
}

/** Server-Sent Events: one `data:` event per output. */
export function sendSse<O>(res: ServerResponse, outputs: Outputs<O>, opts?: ResponseOptions<O>): Promise<void> {
  return writeResponse(res, outputs, 'sse', opts);
}

/**
 * The outputs as a byte Readable in `format` (for Fastify's `reply.send`, or
 * `pipeline`). Reading pulls outputs; destroying it (a client that left)
 * cancels the stream.
 */
export function toReadable<O>(outputs: Outputs<O>, format: Format, opts: ResponseOptions<O> = {}): Readable {
  assertOutputs(outputs);
  const frame = frames(format, opts);
  const it = outputs[Symbol.asyncIterator]();
  async function* text(): AsyncGenerator<string> {
    try {
      for (;;) {
        let r: IteratorResult<O>;
        try {
          r = await it.next();
        } catch (error) {
          yield frame.error(error);
          return;
        }
        if (r.done) return;
        yield frame.output(r.value);
      }
    } finally {
      // On every exit: a no-op once the outputs ended; stops the producer
      // when the Readable was destroyed early (a client that left).
      await stop(outputs, it, 'response closed');
    }
  }
  return Readable.from(text(), { objectMode: false });
}

/** The content type of a format, for frameworks that set headers themselves. */
export function contentType(format: Format): string {
  return CONTENT_TYPE[format];
}

/** A malformed request body: answer with `status` and `toJSON()`. */
export class RequestBodyError extends Error {
  readonly status = 400;
  readonly code = 'ERR_BAD_NDJSON' as const;
  /** 1-based line number of the malformed line. */
  readonly line: number;
  constructor(line: number, cause: unknown) {
    super(`Line ${line} of the request body is not valid JSON: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'RequestBodyError';
    this.line = line;
  }
  /** The body of a 400 response. */
  toJSON(): { error: { message: string; code: string; line: number } } {
    return { error: { message: this.message, code: this.code, line: this.line } };
  }
}

/**
 * The events of an NDJSON request body, parsed line by line as they arrive
 * (Node's own line reader; blank lines skipped). Throws `RequestBodyError`
 * (status 400) at the first malformed line. Pass it to `feed()` or `run()`.
 */
export async function* ndjsonEvents<E = unknown>(req: IncomingMessage | Readable): AsyncGenerator<E> {
  const lines = createInterface({ input: req, crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    let event: E;
    try {
      event = JSON.parse(line) as E;
    } catch (error) {
      throw new RequestBodyError(n, error);
    }
    yield event;
  }
}
