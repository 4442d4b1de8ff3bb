// Serving the outputs of one key (or of a set of keys) of a distributed stream function on Redis over HTTP, so
// that a client can come back and go on exactly where it was: as Server-Sent Events or NDJSON lines, each output
// with its cursor. The writing is the common layer's (common/key-http.ts), the reading key-outputs.ts'.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type KeyNdjsonOptions, type KeyServing, type KeySseOptions, serveKeyOutputs } from '../../durable/common/key-http';
import { KeyReader } from '../../durable/common/key-reader';
import { RedisKeySource, type RedisKeyOutputsOptions, keySettings } from './key-outputs';

/** Options of `redisNdjson`: those of `redisKeyOutputs`, and the writer's. */
export interface RedisNdjsonOptions<O = unknown> extends RedisKeyOutputsOptions<O>, KeyNdjsonOptions<O> {}

/** Options of `redisSse`: those of `redisNdjson`, and SSE's own. */
export interface RedisSseOptions<O = unknown> extends RedisNdjsonOptions<O>, KeySseOptions<O> {}

/** How the Redis helpers read: a key reader on a connection of its own. */
function serving<O>(options: RedisSseOptions<O>, what: string): KeyServing<O> {
  return {
    what,
    shape: '{ client, name, key }',
    open: (from, resumed, own) => {
      const settings = keySettings({ ...options, from }, what, own);
      settings.resumed = resumed;
      return new KeyReader(settings, new RedisKeySource(settings));
    },
  };
}

/**
 * Serves the outputs of `options.key` (or of the set `options.keys`) of the function `options.name` as
 * Server-Sent Events on `res`, each with its cursor as the event's `id:`. A client that reconnects with
 * `Last-Event-ID` (an EventSource does) goes on exactly after the last event it got; without one, after
 * `options.from` (say, a `?from=` query parameter; an empty one is none), else from `options.start`. The response stays open (outputs
 * of later sessions too) until the client leaves or `signal` aborts; with `sessionEnd`, until the followed
 * session's end, written as `event: end`, and a client that comes back after it gets 204 (an EventSource then
 * stops). A cursor that is no cursor of these keys is answered 400 (`ERR_VELO_BAD_CURSOR`), one whose outputs
 * after it were trimmed away 410 (`ERR_VELO_RESUME_TRIMMED`), with a JSON body. Reads on a Redis connection of
 * its own, closed when the response ends; a full socket stops the reading until it has room. Resolves when the
 * response is over; rejects only for arguments that are wrong (not for the client).
 */
export function redisSse<O = unknown>(req: IncomingMessage, res: ServerResponse, options: RedisSseOptions<O>): Promise<void> {
  return serveSse(req, res, options, 'redisSse()');
}

/**
 * `redisSse` as NDJSON: one line per output, `{"id":<cursor>,"value":…}` (with `"key"` for a set of keys, and
 * `"error"` in place of `"value"` for a failure), `{"end":{key,sid,reason}}` at a followed session's end. The
 * client goes on after a line by passing its `id` back as `options.from` (no header is read).
 */
export function redisNdjson<O = unknown>(
  req: IncomingMessage,
  res: ServerResponse,
  options: RedisNdjsonOptions<O>,
): Promise<void> {
  return serveNdjson(req, res, options, 'redisNdjson()');
}

/** `redisSse` for the entry point `what` (named in its errors). */
export function serveSse<O>(req: IncomingMessage, res: ServerResponse, options: RedisSseOptions<O>, what: string): Promise<void> {
  return serveKeyOutputs(req, res, 'sse', options, serving(options, what));
}

/** `redisNdjson` for the entry point `what` (named in its errors). */
export function serveNdjson<O>(
  req: IncomingMessage,
  res: ServerResponse,
  options: RedisNdjsonOptions<O>,
  what: string,
): Promise<void> {
  return serveKeyOutputs(req, res, 'ndjson', options, serving(options, what));
}
