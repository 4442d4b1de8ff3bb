// Serving the outputs of one key (or of a set of keys) of a distributed stream function over HTTP, on any backend,
// so that a client can come back and go on exactly where it was: as Server-Sent Events, each output's cursor its
// `id:` (an EventSource that reconnects sends the last one back as `Last-Event-ID`), or as NDJSON lines that carry
// it (the client passes it back as `from`). The reading is a backend's `KeyReader` (key-reader.ts); this file
// writes it, with the rules of velo-stream/http's writers: a full socket stops the reading, a client that leaves
// stops it at once.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { assertOptionsObject } from '../../config';
import { ResumeCursorError, SerializeError, describe, invalidType, invalidValue } from '../../errors';
import { drainOrClose } from '../../net/drain';
import { errorAnswer, errorJSON } from '../../net/error-answer';
import { checkResponseFields } from '../../net/response-fields';
import { integerOption } from '../../validate';
import { watchAbort } from '../../watch-abort';
import { checkKey } from './keys';
import { KEY_OPTIONS, MAX_KEYS, type KeyOutput, type KeyReadOptions, KeyReader, type SessionEndInfo } from './key-reader';

/** The writer's options of the NDJSON helpers, with the key readers'. */
export interface KeyNdjsonOptions<O = unknown> extends KeyReadOptions<O> {
  /** An output's JSON text (default `JSON.stringify`): the line's `value`. */
  serialize?: (value: O) => string;
  /** Extra response headers, set before the first byte (as `res.setHeader` takes them). */
  headers?: Record<string, string | number | readonly string[]>;
}

/** The options of the SSE helpers: the NDJSON ones, and SSE's own. */
export interface KeySseOptions<O = unknown> extends KeyNdjsonOptions<O> {
  /** The `retry:` field written first (ms): how long a client waits before it reconnects. Default: none written. */
  retry?: number;
  /** A comment line (`:`) after this many ms without a write, for proxies that close quiet connections; 0: none. Default 15000. */
  heartbeat?: number;
  /** The `event:` name of outputs (default none: `message`). Failures go out as `event: error`, a session's end as `event: end`. */
  event?: string;
}

/**
 * Makes the reader of a response: checks the options with `from` (the client's or the application's) and the
 * entry point's own option names (`own`); `resumed`: `from` is the client's own position (`Last-Event-ID`).
 */
export type OpenKeyReader<O> = (from: string | null | undefined, resumed: boolean, own: readonly string[]) => KeyReader<O>;

/** The option names the NDJSON and the SSE helpers take besides a backend's shared ones (and `extra`, a backend's). */
export function httpKeyOptions(format: 'sse' | 'ndjson', extra: readonly string[] = []): string[] {
  const ndjson = [...KEY_OPTIONS, ...extra, 'serialize', 'headers'];
  return format === 'sse' ? [...ndjson, 'retry', 'heartbeat', 'event'] : ndjson;
}
/** The longest `retry` and `heartbeat`, ms (Node's longest timer). */
const MAX_MS = 2 ** 31 - 1;
const HEARTBEAT_MS = 15_000;

/** The frames of one format. */
interface Frames<O> {
  output(output: KeyOutput<O>): string;
  end(info: SessionEndInfo): string;
  error(error: unknown): string;
}

/** SSE data may not hold a line break: each line becomes a `data:` field of its own. */
function sseData(text: string): string {
  let out = '';
  for (const line of text.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return out;
}

/** The text of an output's value, by `serialize`: a SerializeError when there is none. */
function valueText<O>(serialize: (value: O) => string, value: O): string {
  let text: unknown;
  try {
    text = serialize(value);
  } catch (error) {
    const reason = typeof (error as { message?: unknown })?.message === 'string' ? (error as Error).message : String(error);
    throw new SerializeError(`An output could not be serialized: ${reason}`, { cause: error });
  }
  if (typeof text !== 'string')
    throw new SerializeError(`An output could not be serialized: the serializer returned ${describe(text)}, not a string`);
  return text;
}

/**
 * The payload of an output: its value's text for one key; `{"key","value"}` for a set of keys (the value's text
 * must then be JSON); a failure as `{"error":{name,message,code}}` (with `key` for a set).
 */
function payload<O>(output: KeyOutput<O>, serialize: (value: O) => string, many: boolean): string {
  const key = many ? `"key":${JSON.stringify(output.key)},` : '';
  if ('error' in output) return `{${key}"error":${JSON.stringify(output.error)}}`;
  const text = valueText(serialize, output.value);
  return many ? `{${key}"value":${text}}` : text;
}

function sseFrames<O>(options: KeySseOptions<O>, many: boolean): Frames<O> {
  const serialize = options.serialize ?? ((value: O) => JSON.stringify(value));
  const event = options.event === undefined ? '' : `event: ${options.event}\n`;
  return {
    output: (output) =>
      `id: ${output.cursor}\n${'error' in output ? 'event: error\n' : event}${sseData(payload(output, serialize, many))}\n`,
    end: (info) => `event: end\ndata: ${JSON.stringify(info)}\n\n`,
    error: (error) => `event: error\n${sseData(errorJSON(error))}\n`,
  };
}

function ndjsonFrames<O>(options: KeyNdjsonOptions<O>, many: boolean): Frames<O> {
  const serialize = options.serialize ?? ((value: O) => JSON.stringify(value));
  return {
    output: (output) => {
      const key = many ? `,"key":${JSON.stringify(output.key)}` : '';
      const body =
        'error' in output ? `"error":${JSON.stringify(output.error)}` : `"value":${valueText(serialize, output.value)}`;
      return `{"id":${JSON.stringify(output.cursor)}${key},${body}}\n`;
    },
    end: (info) => `${JSON.stringify({ end: info })}\n`,
    error: (error) => `${errorJSON(error)}\n`,
  };
}

function assertResponse(res: unknown): asserts res is ServerResponse {
  const r = res as Partial<ServerResponse> | null;
  if (r === null || typeof r !== 'object' || typeof r.write !== 'function' || typeof r.setHeader !== 'function') {
    throw invalidType(`The "res" argument must be an http.ServerResponse. Received ${describe(res)}`);
  }
}

/** A request's `Last-Event-ID` (an empty one is none, as a browser sends none then). */
function lastEventId(req: IncomingMessage): string | undefined {
  const value = (req as Partial<IncomingMessage> | null)?.headers?.['last-event-id'];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * Why `options.key` or `options.keys`, as a request gives them, names no key: missing, of another type (a repeated
 * query parameter is an array, a parser's nested one an object), a string no key can be, or too few or too many
 * keys; else undefined. (Both given is the caller's mistake, refused as by the reader.)
 */
function requestKeyError(what: string, options: { key?: unknown; keys?: unknown }): Error | undefined {
  const { key, keys } = options;
  if (key !== undefined && keys !== undefined) return undefined;
  if (key === undefined && keys === undefined)
    return invalidValue(`${what}: options.key (or options.keys) is required: the key whose outputs to read`);
  if (keys === undefined && typeof key !== 'string')
    return invalidType(`${what}: options.key must be a string, not ${describe(key)}`);
  if (key === undefined && !(Array.isArray(keys) && keys.every((k) => typeof k === 'string')))
    return invalidType(`${what}: options.keys must be an array of strings, not ${describe(keys)}`);
  const list = (key === undefined ? keys : [key]) as readonly string[];
  if (list.length === 0 || list.length > MAX_KEYS)
    return invalidValue(`options.keys must hold 1 to ${MAX_KEYS} keys, not ${list.length}`);
  for (const k of list) {
    try {
      checkKey(k);
    } catch (error) {
      return error as Error;
    }
  }
  return undefined;
}

/**
 * Answers with an error before any output: its `status` (400, 410; else 500) and the one error shape of
 * velo-stream/http (`errorAnswer`: never the error's own `toJSON()`, a 5xx's message not shown).
 */
function answer(res: ServerResponse, error: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const { status, body } = errorAnswer(error);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

/** How a backend's HTTP helper serves: its name in messages, the shape of its options (for a message), its reader. */
export interface KeyServing<O> {
  what: string;
  shape: string;
  /** The entry point's option names besides the HTTP helpers' (a backend's own, as `pollInterval`). */
  extra?: readonly string[];
  open: OpenKeyReader<O>;
}

/**
 * Writes the outputs of the keys to `res` until the client leaves, `signal` aborts, the followed session ends
 * (`sessionEnd`) or the reading fails (see `redisSse`). Options are checked in this order: `res`, the options
 * object, the writer's, the keys from the request (400), then the backend's and `from` (a bad cursor: 400).
 */
export async function serveKeyOutputs<O>(
  req: IncomingMessage,
  res: ServerResponse,
  format: 'sse' | 'ndjson',
  options: KeySseOptions<O>,
  serving: KeyServing<O>,
): Promise<void> {
  const { what } = serving;
  assertResponse(res);
  assertOptionsObject(options, 'options', serving.shape);
  checkResponseFields({
    serialize: options.serialize,
    headers: options.headers,
    ...(format === 'sse' ? { event: options.event } : {}),
  });
  const retry =
    format === 'sse' && options.retry !== undefined ? integerOption(what, 'retry', options.retry, 0, MAX_MS) : undefined;
  const heartbeat = format === 'sse' ? integerOption(what, 'heartbeat', options.heartbeat ?? HEARTBEAT_MS, 0, MAX_MS) : 0;
  // The client's own position (a reconnecting EventSource's) comes before the one the application passes.
  const resumed = format === 'sse' ? lastEventId(req) : undefined;
  // Keys come from the request (a path or query parameter): one missing or of another type, a string no key can be,
  // or a number of keys out of range, is the client's mistake, answered 400 as a bad cursor is.
  const badKey = requestKeyError(what, options);
  if (badKey !== undefined) {
    answer(res, Object.assign(badKey, { status: 400 }));
    return;
  }
  let reader: KeyReader<O>;
  try {
    // An empty `from` (a bare `?from=`) is no cursor, as an empty `Last-Event-ID` is none.
    const from = resumed ?? (options.from === '' ? undefined : options.from);
    reader = serving.open(from, resumed !== undefined, httpKeyOptions(format, serving.extra));
  } catch (error) {
    // A cursor that is none of these keys' is the client's mistake: 400. Any other refusal is the caller's.
    if (!(error instanceof ResumeCursorError)) throw error;
    answer(res, error);
    return;
  }
  const many = reader.plan.keys.size > 1;
  const frames = format === 'sse' ? sseFrames(options, many) : ndjsonFrames(options, many);
  const { signal } = reader.plan;
  // The client left (its connection closed before the answer was complete): the reading stops at once.
  let gone = res.destroyed || res.writableEnded;
  const onClose = () => {
    if (res.writableFinished) return;
    gone = true;
    reader.close();
  };
  res.on('close', onClose);
  // (One listener per signal however many clients share it: watchAbort.)
  const unwatch = signal === undefined ? undefined : watchAbort(signal, () => reader.close());
  let beat: NodeJS.Timeout | undefined;
  try {
    if (gone || signal?.aborted) return;
    let opened: boolean;
    try {
      opened = await reader.open();
    } catch (error) {
      if (!gone && !signal?.aborted) answer(res, error);
      return;
    }
    if (gone || signal?.aborted) return;
    if (!opened) {
      // The followed session had ended at the client's position: nothing more will come. 204 tells an
      // EventSource not to reconnect.
      res.statusCode = 204;
      return;
    }
    res.statusCode = 200;
    res.setHeader('content-type', format === 'sse' ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
    res.setHeader('cache-control', 'no-cache');
    if (format === 'sse') res.setHeader('connection', 'keep-alive');
    if (options.headers !== undefined) for (const [k, v] of Object.entries(options.headers)) res.setHeader(k, v);
    // The headers go out now, before any output: the client knows it is connected while it waits.
    if (retry !== undefined) res.write(`retry: ${retry}\n\n`);
    else res.flushHeaders();
    let wrote = performance.now();
    if (heartbeat > 0) {
      beat = setInterval(
        () => {
          // Not while the socket is full: the reading waits for room, and so does this.
          if (gone || res.writableNeedDrain || performance.now() - wrote < heartbeat) return;
          res.write(':\n\n');
          wrote = performance.now();
        },
        Math.max(1, Math.floor(heartbeat / 2)),
      );
      beat.unref();
    }
    for (;;) {
      let text = '';
      // The last write of the response: the reading is over (a session's end, a failure).
      let last = false;
      try {
        const batch = await reader.next();
        if (gone || signal?.aborted) break;
        if (batch !== null) for (const output of batch) text += frames.output(output);
        // The end goes out with the session's last outputs, in the same write.
        if (batch === null || reader.ended !== null) {
          if (reader.ended !== null) text += frames.end(reader.ended);
          last = true;
        }
      } catch (error) {
        // The client left or the server stops: the reading was closed under it.
        if (gone || signal?.aborted) break;
        // The reading failed (outputs trimmed while it was behind, the server lost data, an output the codec or the
        // serializer refused): the outputs before it go out (a serializer's failure keeps the frames of its
        // batch's earlier outputs in `text`), then the error, and the response ends.
        text += frames.error(error);
        last = true;
      }
      if (text !== '') {
        wrote = performance.now();
        // The socket is full: no more is read from the server until it has room, or the client leaves.
        if (!res.write(text) && !last) await drainOrClose(res);
      }
      if (last || gone) break;
    }
  } finally {
    clearInterval(beat);
    res.off('close', onClose);
    unwatch?.();
    reader.close();
    if (!gone && !res.writableEnded && !res.destroyed) res.end();
  }
}
