// Which errors of the user's Redis client are a lost connection: those reach `onError` as a RedisConnectionError.
import { RedisConnectionError } from '../../errors';

/** node-redis' errors of a connection (by class name: the client is the user's, and its package is not imported). */
const CONNECTION_ERRORS = new Set([
  'ConnectionTimeoutError',
  'SocketTimeoutError',
  'ClientClosedError',
  'ClientOfflineError',
  'DisconnectsClientError',
  'SocketClosedUnexpectedlyError',
  'ReconnectStrategyError',
  'TimeoutError',
]);
/** Socket errors of Node's own. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND']);

/** The error as it goes to `onError`: a connection error of the client wrapped in a RedisConnectionError. */
export function reportable(error: unknown): unknown {
  const e = error as { constructor?: { name?: unknown }; code?: unknown } | null;
  if (e === null || typeof e !== 'object') return error;
  const byClass = typeof e.constructor?.name === 'string' && CONNECTION_ERRORS.has(e.constructor.name);
  const byCode = typeof e.code === 'string' && SOCKET_CODES.has(e.code);
  // A server that restarted answers LOADING until its data is read back: not there yet, as a lost connection.
  const loading = String((e as { message?: unknown }).message).startsWith('LOADING');
  return byClass || byCode || loading ? new RedisConnectionError(error) : error;
}
