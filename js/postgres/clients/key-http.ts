// Serving the outputs of one key (or of a set of keys) of a distributed stream function on Postgres over HTTP,
// resumable: as Server-Sent Events or NDJSON lines, each output with its cursor, as `redisSse` and `redisNdjson`
// serve them on Redis. The writing is the common layer's (redis/common/key-http.ts), the reading key-outputs.ts'.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type KeyNdjsonOptions, type KeyServing, type KeySseOptions, serveKeyOutputs } from '../../durable/common/key-http';
import { KeyReader } from '../../durable/common/key-reader';
import { PgKeySource, type PostgresKeyOutputsOptions, pgKeySettings } from './key-outputs';
import type { PoolKey } from './options';

/** Options of `postgresNdjson`: those of `postgresKeyOutputs`, and the writer's. */
export interface PostgresNdjsonOptions<O = unknown> extends PostgresKeyOutputsOptions<O>, KeyNdjsonOptions<O> {}

/** Options of `postgresSse`: those of `postgresNdjson`, and SSE's own. */
export interface PostgresSseOptions<O = unknown> extends PostgresNdjsonOptions<O>, KeySseOptions<O> {}

function serving<O>(options: PostgresSseOptions<O>, what: string, poolKey: PoolKey): KeyServing<O> {
  return {
    what,
    shape: `{ ${poolKey}, name, key }`,
    extra: ['pollInterval'],
    open: (from, resumed, own) => {
      // A cursor the client sent (Last-Event-ID) is refused naming that header, not `options.from`.
      // (A key with a NUL, which Postgres cannot store, is refused at the reader's open: 400, as the request's.)
      const settings = resumed
        ? lastEventIdSettings(options, from, what, own, poolKey)
        : pgKeySettings({ ...options, from }, what, own, false, poolKey);
      settings.resumed = resumed;
      return new KeyReader(settings, new PgKeySource(settings));
    },
  };
}

/**
 * Serves the outputs of `options.key` (or of the set `options.keys`) of the function `options.name` on Postgres
 * as Server-Sent Events on `res`, each with its cursor as the event's `id:`, as `redisSse` does on Redis: a client
 * that reconnects with `Last-Event-ID` goes on exactly after the last event it got; without one, after
 * `options.from` (an empty one is none), else from `options.start`. With `sessionEnd`, the response ends at the
 * followed session's end (`event: end`), and a client that comes back after it gets 204. A bad key or cursor is
 * answered 400 (`ERR_VELO_BAD_CURSOR` for a cursor), a cursor whose outputs after it were trimmed away 410
 * (`ERR_VELO_RESUME_TRIMMED`), with a JSON body. Reads on the pool, polling every `pollInterval` once caught up; a
 * full socket stops the reading until it has room. Resolves when the response is over; rejects only for arguments
 * that are wrong (not for the client).
 */
export function postgresSse<O = unknown>(
  req: IncomingMessage,
  res: ServerResponse,
  options: PostgresSseOptions<O>,
): Promise<void> {
  return servePgSse(req, res, options, 'postgresSse()', 'pool');
}

/**
 * `postgresSse` as NDJSON: one line per output, `{"id":<cursor>,"value":…}` (with `"key"` for a set of keys, and
 * `"error"` in place of `"value"` for a failure), `{"end":{key,sid,reason}}` at a followed session's end. The
 * client goes on after a line by passing its `id` back as `options.from`.
 */
export function postgresNdjson<O = unknown>(
  req: IncomingMessage,
  res: ServerResponse,
  options: PostgresNdjsonOptions<O>,
): Promise<void> {
  return servePgNdjson(req, res, options, 'postgresNdjson()', 'pool');
}

/** pgKeySettings for a `from` sent by the client as `Last-Event-ID`: a refusal of it names the header. */
function lastEventIdSettings<O>(
  options: PostgresKeyOutputsOptions<O>,
  from: string | null | undefined,
  what: string,
  own: readonly string[],
  poolKey: PoolKey,
): ReturnType<typeof pgKeySettings<O>> {
  try {
    return pgKeySettings({ ...options, from }, what, own, false, poolKey);
  } catch (error) {
    if (error instanceof Error && (error as { code?: unknown }).code === 'ERR_VELO_BAD_CURSOR') {
      error.message = error.message.replace('options.from', 'the Last-Event-ID header');
    }
    throw error;
  }
}

/** `postgresSse` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export function servePgSse<O>(
  req: IncomingMessage,
  res: ServerResponse,
  options: PostgresSseOptions<O>,
  what: string,
  poolKey: PoolKey,
): Promise<void> {
  return serveKeyOutputs(req, res, 'sse', options, serving(options, what, poolKey));
}

/** `postgresNdjson` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export function servePgNdjson<O>(
  req: IncomingMessage,
  res: ServerResponse,
  options: PostgresNdjsonOptions<O>,
  what: string,
  poolKey: PoolKey,
): Promise<void> {
  return serveKeyOutputs(req, res, 'ndjson', options, serving(options, what, poolKey));
}
