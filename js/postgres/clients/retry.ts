// Which errors of the user's pg.Pool are a lost or refused connection (the server restarting, a network cut), and
// a call retried over them: the readers' reads, which are made again from the same positions.
import { poolEndedError, poolExhaustedErrorOf, postgresConnectionError } from '../../errors';
import { pause } from '../../watch-abort';

/** Socket errors, and SQLSTATEs of a server shutting down or of a connection failure (class 08, 57P01-57P03). */
const CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
]);
/**
 * node-postgres' own words for a connection that ended under a query or could not be made (pg-pool's
 * `connectionTimeoutMillis` passed: "timeout exceeded when trying to connect").
 */
const MESSAGES =
  /Connection terminated|connection timeout|Client has encountered a connection error|Connection ended|timeout exceeded when trying to connect/i;

/** Whether `error` says the connection to Postgres was lost or refused (not that a statement failed). */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown; errors?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  if (typeof e.code === 'string' && CODES.has(e.code)) return true;
  // (A postgresLimiter call cut short by its callTimeout: Postgres away, as a lost connection.)
  if (e.code === 'ERR_VELO_POSTGRES_TIMEOUT' || e.code === 'ERR_VELO_POSTGRES_CONNECTION') return true;
  // (Node's connect to "localhost" tries each address: an AggregateError of ECONNREFUSEDs.)
  if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(isConnectionError)) return true;
  return typeof e.message === 'string' && MESSAGES.test(e.message);
}

/**
 * The error as a worker reports it to `onError`: a lost connection that node-postgres gave no code (its words only)
 * as `ERR_VELO_POSTGRES_CONNECTION`, its error the `cause`; any other as it is.
 */
export function reportableError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return error;
  if (isPoolEnded(error)) return poolEndedError(error);
  // pg-pool's words when a call waited `connectionTimeoutMillis` in its queue: every connection was checked out (or
  // opening), not Postgres away. (A connection that could not open in time says "Connection terminated due to
  // connection timeout".)
  if ((error as { message?: unknown } | null)?.message === 'timeout exceeded when trying to connect')
    return poolExhaustedErrorOf(
      'The pool gave velo-stream no connection within its "connectionTimeoutMillis": every connection is checked out, or still opening. Give the pool a larger "max" (docs/postgres.md: pool sizing); velo-stream tries again.',
      error,
    );
  return isConnectionError(error) ? postgresConnectionError(error) : error;
}

/** pg-pool's words for a call on a pool after its `end()`. */
export function isPoolEnded(error: unknown): boolean {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message.startsWith('Cannot use a pool after calling end on the pool');
}

/** First and longest wait before a call retried after a lost connection, ms. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;

/**
 * `call()`, again after a wait (growing from 50 ms to 1 s) each time it fails with a lost connection, until it
 * succeeds or `signal` aborts (then the failure is thrown). Other errors are thrown at once, a call on an ended pool
 * as `ERR_VELO_POOL_ENDED`.
 */
export async function retriedOnConnection<T>(call: () => Promise<T>, signal: AbortSignal): Promise<T> {
  let wait = RETRY_MIN_MS;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (isPoolEnded(error)) throw poolEndedError(error);
      if (signal.aborted || !isConnectionError(error)) throw error;
    }
    await pause(wait, signal);
    if (signal.aborted) throw new Error('The reader was closed');
    wait = Math.min(wait * 2, RETRY_MAX_MS);
  }
}
