// The backends' connections and calls: Redis and Postgres answering late or not at all, and the pools and
// schema a Postgres backend is given.

import { coded } from './make';

/**
 * Reported to `onError` when a connection to Redis failed (refused, reset, timed out, closed) or the server is still
 * loading its data after a restart (`LOADING`): the client's error
 * is its `cause`. The worker goes on: its calls are retried, and the client reconnects by its own settings.
 */
export class RedisConnectionError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_REDIS_CONNECTION' as const;
  constructor(cause: unknown, advice?: string) {
    super(`A connection to Redis failed: ${connectionCauseText(cause)}${advice === undefined ? '' : `. ${advice}`}`, { cause });
    this.name = 'RedisConnectionError';
  }
}

// node-redis 6 rejects a command still queued (not yet written) when its `commandOptions.timeout` (5000 ms by
// default) runs out with a `TimeoutError` that has no message: name it, so the report says what happened.
function connectionCauseText(cause: unknown): string {
  const message = (cause as { message?: unknown } | null)?.message;
  if (message !== '') return String(message ?? cause);
  const name = (cause as { constructor?: { name?: unknown } }).constructor?.name;
  if (name === 'TimeoutError')
    return "TimeoutError: the client's command timeout (node-redis' commandOptions.timeout, 5000 ms by default) ran out before the command was written (a busy process or a slow server); the worker retries";
  return typeof name === 'string' && name !== '' ? name : 'an error with no message';
}

/**
 * A connection to Postgres that node-postgres reports ended or unmade without a code of its own ("Connection
 * terminated unexpectedly", a connect timeout): `cause` is its error. (One with a code, `ECONNREFUSED` or a
 * SQLSTATE, is reported as it is.)
 */
export function postgresConnectionError(cause: unknown): Error & { code: 'ERR_VELO_POSTGRES_CONNECTION' } {
  const message = (cause as { message?: unknown } | null)?.message;
  return coded(
    new Error(`A connection to Postgres failed: ${typeof message === 'string' && message !== '' ? message : String(cause)}`, {
      cause,
    }),
    'ERR_VELO_POSTGRES_CONNECTION',
  );
}

/** A `postgresLimiter` call not answered within `callTimeout` ms (`what`: the call). */
export function postgresTimeoutError(ms: number, what: string): Error & { code: 'ERR_VELO_POSTGRES_TIMEOUT'; timeout: number } {
  return coded(new Error(`${what}: Postgres did not answer within callTimeout (${ms} ms)`), 'ERR_VELO_POSTGRES_TIMEOUT', {
    timeout: ms,
  });
}

/** A call to Redis not answered within `callTimeout` ms (`what`: the call, when the message names it). */
export function redisTimeoutError(ms: number, what?: string): Error & { code: 'ERR_VELO_REDIS_TIMEOUT'; timeout: number } {
  const message = `Redis did not answer within callTimeout (${ms} ms)`;
  return coded(new Error(what === undefined ? message : `${what}: ${message}`), 'ERR_VELO_REDIS_TIMEOUT', { timeout: ms });
}

/**
 * `ERR_VELO_POOL_ENDED`: the user's pool was ended (`pool.end()`) while velo-stream still used it: every later call
 * fails. `cause` is node-postgres' error ("Cannot use a pool after calling end on the pool").
 */
export function poolEndedError(cause: unknown): Error & { code: 'ERR_VELO_POOL_ENDED' } {
  return coded(
    new Error(
      'The Postgres pool was ended (pool.end()) while velo-stream still used it: every call fails. Close the workers, producers and readers on it first, then end the pool.',
      { cause },
    ),
    'ERR_VELO_POOL_ENDED',
  );
}

/** `ERR_VELO_POOL_TOO_SMALL`: the pool's `max` is too small for a worker that listens. */
export function poolTooSmallError(message: string): RangeError & { code: 'ERR_VELO_POOL_TOO_SMALL' } {
  return coded(new RangeError(message), 'ERR_VELO_POOL_TOO_SMALL');
}

/** `ERR_VELO_POOL_EXHAUSTED`: the pool gave no connection within a bound. */
export function poolExhaustedErrorOf(message: string, cause?: unknown): Error & { code: 'ERR_VELO_POOL_EXHAUSTED' } {
  return coded(new Error(message, cause === undefined ? undefined : { cause }), 'ERR_VELO_POOL_EXHAUSTED');
}

/** `ERR_VELO_NOT_A_POOL`: the `pool` option is one connection, not a pool. */
export function notAPoolError(message: string): TypeError & { code: 'ERR_VELO_NOT_A_POOL' } {
  return coded(new TypeError(message), 'ERR_VELO_NOT_A_POOL');
}

/** `ERR_VELO_TRANSACTION_IDLE`: the server ended a transaction for its idle timeout (`cause`: the connection's error). */
export function transactionIdleError(message: string, cause: unknown): Error & { code: 'ERR_VELO_TRANSACTION_IDLE' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_TRANSACTION_IDLE');
}

/** `ERR_VELO_EFFECTS_CLIENT`: a call on the `effects` client that would break the commit's transaction. */
export function effectsClientError(message: string): Error & { code: 'ERR_VELO_EFFECTS_CLIENT' } {
  return coded(new Error(message), 'ERR_VELO_EFFECTS_CLIENT');
}

/** `ERR_VELO_SCHEMA_VERSION`: the Postgres schema is at `found`, this release expects `expected` (`live`: the workers registered on an older schema). */
export function schemaVersionError(
  message: string,
  found: number,
  expected: number,
  live: readonly string[] = [],
): Error & { code: 'ERR_VELO_SCHEMA_VERSION'; found: number; expected: number; live: readonly string[] } {
  return coded(new Error(message), 'ERR_VELO_SCHEMA_VERSION', { found, expected, live });
}
