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

/**
 * Redis' answers that it ran none of a call (a script's, whole): loading its data after a restart, busy with a
 * script, a replica or a cluster refusing a write, a slot moved. And node-redis' refusals to send one (a closed
 * or offline client; its `commandOptions.timeout` run out, a `TimeoutError`, which node-redis gives only to a
 * command still waiting to be written), and a refused connection.
 */
const UNRUN_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|MOVED|ASK) /;
const UNSENT_ERRORS = new Set(['ClientClosedError', 'ClientOfflineError', 'TimeoutError']);

/** Whether a call that failed with `error` surely wrote nothing (else, with no answer, it may have). */
export function ranNothing(error: unknown): boolean {
  const e = error as { constructor?: { name?: unknown }; code?: unknown; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  if (typeof e.constructor?.name === 'string' && UNSENT_ERRORS.has(e.constructor.name)) return true;
  return e.code === 'ECONNREFUSED' || (typeof e.message === 'string' && UNRUN_REPLY.test(e.message));
}

/** node-redis' error for a command sent on a client that was closed (`close()`, `quit()`, `destroy()`). */
export function isClientClosed(error: unknown): boolean {
  return (error as { constructor?: { name?: unknown } } | null)?.constructor?.name === 'ClientClosedError';
}

/**
 * What a worker reports when its client was closed under it: the first such error, with what to do; later ones
 * are counted but not reported while the client stays closed (its loops would report one per call, many a
 * second). Reported again once the client was seen open (`isOpen`) at a balance, then closed again.
 */
export class ClosedClientReports {
  #reported = false;
  readonly #client: unknown;

  constructor(client: unknown) {
    this.#client = client;
  }

  /** At each balance: a client open again (reconnected) has its next closing reported. */
  check(): void {
    if ((this.#client as { isOpen?: unknown } | null)?.isOpen === true) this.#reported = false;
  }

  /** The error to report for `error` (a connection error of a closed client), or null: already reported. */
  filter(error: unknown): unknown {
    const open = (this.#client as { isOpen?: unknown } | null)?.isOpen === true;
    if (!isClientClosed(error)) {
      if (open) this.#reported = false;
      return reportable(error);
    }
    if (this.#reported && !open) return null;
    this.#reported = !open;
    return new RedisConnectionError(
      error,
      'The client was closed while the worker runs: close the worker first (await worker.close()), then the client. Reported once while the client stays closed; the worker retries',
    );
  }
}
