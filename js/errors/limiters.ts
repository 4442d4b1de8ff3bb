// Limiters: refusals (answered over HTTP with their status) and failures, and a session's permits.

import { HTTP_ANSWERS, retryAfterHeaders } from './answers';
import { coded } from './make';

/** The errors `refusal` made: a limiter's refusals, as opposed to failures (a throwing key function, a bad cost). */
const refusals = new WeakSet<Error>();

/** Whether `error` is a limiter's refusal (no permit now, a full line, a closed limiter, a cost over the burst). */
export function isRefusal(error: unknown): boolean {
  return error instanceof Error && refusals.has(error);
}

/** The HTTP fields of a refusal: `status` from `HTTP_ANSWERS`, and `headers` (`Retry-After`) whenever `retryAfter` is set. */
function refusal<E extends Error>(error: E, code: keyof typeof HTTP_ANSWERS): E & { status: number } {
  refusals.add(error);
  Object.defineProperty(error, 'status', {
    value: HTTP_ANSWERS[code].status,
    enumerable: true,
    configurable: true,
    writable: true,
  });
  // A getter, so that a `retryAfter` set later (the fleet limiters assign theirs) is answered too.
  if (HTTP_ANSWERS[code].retryAfter)
    Object.defineProperty(error, 'headers', { get: retryAfterHeaders, enumerable: false, configurable: true });
  return error as E & { status: number };
}

/**
 * A limiter in reject mode had no permit now (`limiter`: its name). `retryAfter`: the wait, ms, when the limiter
 * knows it (its rate holds the acquire back); answered as `Retry-After` (429).
 */
export function rateLimitedError(
  limiter: string,
  what: string,
  retryAfter?: number,
): Error & { code: 'ERR_VELO_RATE_LIMITED'; limiter: string; status: number; retryAfter?: number } {
  const wait = retryAfter === undefined ? '' : `; the rate allows one in ${Math.ceil(retryAfter)} ms`;
  const error = coded(
    new Error(`${what}: limiter "${limiter}" has no permit now (mode 'reject')${wait}`),
    'ERR_VELO_RATE_LIMITED',
    retryAfter === undefined ? { limiter } : { limiter, retryAfter },
  );
  return refusal(error, 'ERR_VELO_RATE_LIMITED');
}

/** A throttling limiter's line is full (503). */
export function limitQueueFullError(
  limiter: string,
  maxWaiting: number,
): Error & { code: 'ERR_VELO_LIMIT_QUEUE_FULL'; limiter: string; status: number } {
  const error = coded(
    new Error(`Limiter "${limiter}": ${maxWaiting} acquires wait already (maxWaiting)`),
    'ERR_VELO_LIMIT_QUEUE_FULL',
    { limiter },
  );
  return refusal(error, 'ERR_VELO_LIMIT_QUEUE_FULL');
}

/** An acquire after (or waiting at) a limiter's close() (503). */
export function limiterClosedError(
  limiter: string,
): Error & { code: 'ERR_VELO_LIMITER_CLOSED'; limiter: string; status: number } {
  return refusal(
    coded(new Error(`Limiter "${limiter}" is closed`), 'ERR_VELO_LIMITER_CLOSED', { limiter }),
    'ERR_VELO_LIMITER_CLOSED',
  );
}

/** A cost function's result that cannot be used: the server's own failure (no `status`: 500). */
export function limitCostError(message: string, cause?: unknown): RangeError & { code: 'ERR_VELO_LIMIT_COST' } {
  return coded(cause === undefined ? new RangeError(message) : new RangeError(message, { cause }), 'ERR_VELO_LIMIT_COST');
}

/** A cost above the rate's burst, which could never be granted (413): `cost` and `burst` say by how much. */
export function costOverBurstError(
  limiter: string,
  cost: number,
  burst: number,
): RangeError & { code: 'ERR_VELO_LIMIT_COST'; limiter: string; cost: number; burst: number; status: number } {
  const error = coded(
    new RangeError(`Limiter "${limiter}": the cost ${cost} is above the rate's burst (${burst}), so it could never be granted`),
    'ERR_VELO_LIMIT_COST',
    { limiter, cost, burst },
  );
  return refusal(error, 'ERR_VELO_LIMIT_COST');
}

/** A key function that threw or returned no usable key. */
/** `ERR_VELO_LIMIT_TENANT`: a limiter's `fairness.by(item)` or `fairness.weight(tenant)` gave no usable answer. */
export function limitTenantError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_LIMIT_TENANT' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_LIMIT_TENANT');
}

/** `ERR_VELO_LIMIT_PRIORITY`: a limiter's `priority(item)` gave no usable answer. */
export function limitPriorityError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_LIMIT_PRIORITY' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_LIMIT_PRIORITY');
}

export function limitKeyError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_LIMIT_KEY' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_LIMIT_KEY');
}

/** A `sessionWorker` could not get a limiter's permit for a session or a step (`cause`: the limiter's error); it asks again. */
export function sessionPermitError(
  limiter: string,
  per: 'session' | 'step',
  message: string,
  cause: unknown,
): Error & { code: 'ERR_VELO_SESSION_PERMIT'; limiter: string; per: 'session' | 'step' } {
  return coded(new Error(message, { cause }), 'ERR_VELO_SESSION_PERMIT', { limiter, per });
}
