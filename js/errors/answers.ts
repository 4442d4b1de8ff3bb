// How an error is answered over HTTP: the one table of statuses, and `Retry-After`.

import type { ErrorCode } from './codes';

/** How an HTTP answer tells an error of one code: its status, and what it is answered for. */
export interface HttpAnswerInfo {
  /** The HTTP status the writers of velo-stream/http (and Express, Fastify, which read `status`) answer. */
  readonly status: number;
  /**
   * A refusal of a limiter or of a stream's admission (the server refused the work: nothing of it ran), as opposed
   * to a request the client got wrong. Every refusal code is in this table (__test__/error-codes.test.mjs).
   */
  readonly refusal: boolean;
  /** Whether the answer carries `Retry-After` (seconds, rounded up) when the error knows the wait (`retryAfter`, ms). */
  readonly retryAfter: boolean;
  /** When the code is answered so (docs/errors.md, "HTTP answers"). */
  readonly when: string;
}

/**
 * The one table of HTTP statuses: the errors of these codes carry `status` from it (and a refusal that knows its
 * wait, `retryAfter` in ms and `headers` with `Retry-After`), which `sendError` and the writers of
 * velo-stream/http answer before the first output, and put in the error line or event after it. docs/errors.md's
 * "HTTP answers" is generated from it. A code not here is answered 500 (the server's own failure).
 */
export const HTTP_ANSWERS = {
  ERR_VELO_STREAM_LIMIT: {
    status: 503,
    refusal: true,
    retryAfter: false,
    when: '`maxConcurrent` streams of the function are open: the server is full.',
  },
  ERR_VELO_RATE_LIMITED: {
    status: 429,
    refusal: true,
    retryAfter: true,
    when: "A limiter in `mode: 'reject'` has no permit now (for the key, when keyed). `Retry-After` when its rate holds the acquire back (the wait is known); none when its `concurrency` is full (a release frees it).",
  },
  ERR_VELO_LIMIT_QUEUE_FULL: {
    status: 503,
    refusal: true,
    retryAfter: false,
    when: "A throttling limiter's line is full (`maxWaiting`): the server is full.",
  },
  ERR_VELO_LIMIT_COST: {
    status: 413,
    refusal: true,
    retryAfter: false,
    when: "The cost is above the rate's burst: it could never be granted, so the work is too large. (A `cost` function that threw or gave no whole number is the server's own failure: 500.)",
  },
  ERR_VELO_LIMITER_CLOSED: {
    status: 503,
    refusal: true,
    retryAfter: false,
    when: 'The limiter is closed (the server is shutting down).',
  },
  ERR_VELO_BAD_NDJSON: { status: 400, refusal: false, retryAfter: false, when: 'A request body line that is not JSON.' },
  ERR_VELO_NDJSON_LINE_TOO_LARGE: {
    status: 413,
    refusal: false,
    retryAfter: false,
    when: 'A request body line over `maxLineBytes`.',
  },
  ERR_VELO_BODY_TOO_LARGE: { status: 413, refusal: false, retryAfter: false, when: 'A request body over `maxBodyBytes`.' },
  ERR_VELO_SOURCE_STALLED: {
    status: 504,
    refusal: false,
    retryAfter: false,
    when: 'The source a stream was fed from (a model) gave nothing for `idleTimeout`: the upstream stopped answering.',
  },
  ERR_VELO_BODY_TIMEOUT: {
    status: 408,
    refusal: false,
    retryAfter: false,
    when: 'The stream stopped reading the request body while a line of it was arriving.',
  },
  ERR_VELO_BAD_CURSOR: {
    status: 400,
    refusal: false,
    retryAfter: false,
    when: 'A resume cursor no reader of these keys wrote.',
  },
  ERR_VELO_RESUME_TRIMMED: {
    status: 410,
    refusal: false,
    retryAfter: false,
    when: 'Outputs after a resume cursor were trimmed.',
  },
} as const satisfies Partial<Record<ErrorCode, HttpAnswerInfo>>;

/** The longest wait `Retry-After` says, in seconds (about 68 years): the header is digits only, whatever the wait. */
export const MAX_RETRY_AFTER = 2 ** 31 - 1;

/** `Retry-After` for a wait of `ms`: a whole number of seconds, rounded up, at most `MAX_RETRY_AFTER`; undefined for no wait known. */
export function retryAfterSeconds(ms: unknown): number | undefined {
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? Math.min(Math.ceil(ms / 1000), MAX_RETRY_AFTER) : undefined;
}

/** `Retry-After` for the error's wait (`retryAfterSeconds`), as an error's `headers` carry it. */
export function retryAfterHeaders(this: { retryAfter?: unknown }): Record<string, string> | undefined {
  const seconds = retryAfterSeconds(this.retryAfter);
  return seconds === undefined ? undefined : { 'retry-after': String(seconds) };
}
