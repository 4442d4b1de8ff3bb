// What an HTTP client is told of an error: one fixed shape, made from a few fields read with care, for the answer
// before any output (a status and a JSON body) and for the error line or event after outputs alike. An error's
// own `toJSON()` never goes out (an HTTP client library's error would carry its request's headers and a stack),
// and reading an error never throws (getters that throw, revoked proxies, null prototypes): the answer is made
// whatever was thrown.
import { STATUS_CODES } from 'node:http';
import { HTTP_ANSWERS, retryAfterSeconds } from '../errors';

/** The most of an error's message that goes out, in UTF-16 units (a longer one is cut, with an ellipsis). */
export const MAX_ERROR_MESSAGE = 1024;
/** The longest `code` that goes out (a longer one is left out). */
const MAX_ERROR_CODE = 128;

/** The JSON body of an error answer, and the object of an error line or event: `code` only when a string. */
export interface ErrorBody {
  error: {
    message: string;
    code?: string;
    /** The library's request body errors: the line's number, from 1. */
    line?: number;
    /** The library's size errors: the limit passed, bytes. */
    limit?: number;
    /** A refused resume cursor (`ERR_VELO_BAD_CURSOR`): why. */
    reason?: string;
    /** Trimmed outputs (`ERR_VELO_RESUME_TRIMMED`): the partition. */
    partition?: number;
    /** A refusal of a limiter or of admission (`HTTP_ANSWERS`): the status, which an answer under way can no longer send. */
    status?: number;
    /** A refusal whose wait is known: `Retry-After`, seconds. */
    retryAfter?: number;
  };
}

/** An error answered: its status (400 to 599), its body, and `Retry-After` (seconds) when the error knows its wait. */
export interface ErrorAnswer {
  status: number;
  body: ErrorBody;
  retryAfter?: number;
}

/** The refusal codes (limiters, admission): their body carries `status` and `retryAfter`, as no header can after outputs. */
const REFUSALS: ReadonlySet<string> = new Set(
  Object.entries(HTTP_ANSWERS)
    .filter(([, a]) => a.refusal)
    .map(([code]) => code),
);

/**
 * The wait an error knows, as `Retry-After` (`retryAfterSeconds`: whole seconds, rounded up and bounded): its
 * `retryAfter` (ms, a finite number from 0), for a 429 or a 503; else undefined.
 */
export function errorRetryAfter(error: unknown, status: number): number | undefined {
  return status === 429 || status === 503 ? retryAfterSeconds(field(error, 'retryAfter')) : undefined;
}

/**
 * The fields of the library's own errors that go out beside `message` and `code`, by code: numbers that are
 * safe integers, and the cursor's reason, a short string. (Codes are compared, not classes: a copy of the module
 * under Jest has classes of its own.)
 */
const OWN_FIELDS: Readonly<Record<string, readonly ('line' | 'limit' | 'reason' | 'partition')[]>> = Object.freeze({
  ERR_VELO_BAD_NDJSON: ['line'],
  ERR_VELO_NDJSON_LINE_TOO_LARGE: ['limit', 'line'],
  ERR_VELO_BODY_TOO_LARGE: ['limit'],
  ERR_VELO_BODY_TIMEOUT: ['line'],
  ERR_VELO_BAD_CURSOR: ['reason'],
  ERR_VELO_RESUME_TRIMMED: ['partition'],
});

/** `value[key]`, or undefined when it cannot be read (not an object, a getter or a proxy trap that throws). */
function field(value: unknown, key: string): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  try {
    return (value as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/**
 * The status an error asks for: its `status`, an integer from 400 to 599; else 504 for a deadline that passed: a
 * `DOMException` named `TimeoutError` (what an `AbortSignal.timeout()` that fired gives: `fetch` rejects with it),
 * or an error whose `cause` is one (Node's `AbortError` of `http.get`, `timers/promises` or `events.once`, a stream
 * cancelled by its `open()` signal); else 500.
 */
export function errorStatus(error: unknown): number {
  const status = field(error, 'status');
  if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599) return status;
  return isTimeout(error) || isTimeout(field(error, 'cause')) ? 504 : 500;
}

/** Whether `error` is a `DOMException` named `TimeoutError`; false for what cannot be asked (a revoked Proxy). */
function isTimeout(error: unknown): boolean {
  try {
    return error instanceof DOMException && error.name === 'TimeoutError';
  } catch {
    return false;
  }
}

/** `text` cut to `MAX_ERROR_MESSAGE` units (not inside a surrogate pair). */
function bounded(text: string): string {
  if (text.length <= MAX_ERROR_MESSAGE) return text;
  let end = MAX_ERROR_MESSAGE - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

/**
 * The answer to `error`: its status (`errorStatus`), its `Retry-After` (`errorRetryAfter`), and
 * `{ error: { message, code? } }`, plus `line`, `limit`, `reason` or `partition` for the library's own errors that
 * have them, and `status` and `retryAfter` for its refusals (`HTTP_ANSWERS`). The message is the error's own (cut to
 * `MAX_ERROR_MESSAGE`) when it is exposed, as http-errors has it: `expose: true`, or a status under 500 and no
 * `expose: false`; else the status's reason phrase ("Internal Server Error"). `code` only when it is a string.
 * Never throws.
 */
export function errorAnswer(error: unknown): ErrorAnswer {
  const status = errorStatus(error);
  const retryAfter = errorRetryAfter(error, status);
  const expose = field(error, 'expose');
  const message = field(error, 'message');
  const exposed = expose === true || (expose !== false && status < 500);
  const generic = STATUS_CODES[status] ?? 'Error';
  const out: ErrorBody['error'] = {
    message: exposed && typeof message === 'string' && message !== '' ? bounded(message) : generic,
  };
  const code = field(error, 'code');
  if (typeof code === 'string' && code !== '' && code.length <= MAX_ERROR_CODE) {
    out.code = code;
    const own = Object.prototype.hasOwnProperty.call(OWN_FIELDS, code) ? OWN_FIELDS[code] : undefined;
    if (own !== undefined) {
      for (const key of own) {
        const value = field(error, key);
        if (key === 'reason') {
          if (typeof value === 'string' && value.length <= MAX_ERROR_CODE) out.reason = value;
        } else if (Number.isSafeInteger(value)) out[key] = value as number;
      }
    }
    if (REFUSALS.has(code)) {
      out.status = status;
      if (retryAfter !== undefined) out.retryAfter = retryAfter;
    }
  }
  return retryAfter === undefined ? { status, body: { error: out } } : { status, body: { error: out }, retryAfter };
}

/** `errorAnswer(error).body` as JSON text (never throws: every field is a string or a number). */
export function errorJSON(error: unknown): string {
  return JSON.stringify(errorAnswer(error).body);
}
