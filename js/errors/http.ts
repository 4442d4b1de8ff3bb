// HTTP (velo-stream/http): request bodies and their limits, and values that cannot be serialized.

import { HTTP_ANSWERS } from './answers';

/**
 * An output the serializer refused: it threw (a BigInt, a cycle), or gave no
 * text (JSON has none for `undefined`, a function or a symbol). Every writer
 * treats it the same way: the outputs before it go out, then its error line
 * or event, and the stream is stopped.
 */
export class SerializeError extends TypeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_SERIALIZE';
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'SerializeError';
  }
}

/** The JSON body of a 400 answer to a malformed request body (`RequestBodyError.toJSON()`). */
export interface RequestBodyErrorJSON {
  /** What was wrong. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_BAD_NDJSON`. */
    code: string;
    /** The malformed line's number, from 1. */
    line: number;
  };
}

/** The JSON body of a 413 answer (`RequestTooLargeError.toJSON()`). */
export interface RequestTooLargeErrorJSON {
  /** What was too large. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_NDJSON_LINE_TOO_LARGE` or `ERR_VELO_BODY_TOO_LARGE`. */
    code: string;
    /** The limit passed, bytes. */
    limit: number;
    /** The line's number, from 1, for a line too long. */
    line?: number;
  };
}

/** A malformed request body: answer with `status` and `toJSON()`. */
export class RequestBodyError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BAD_NDJSON.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_BAD_NDJSON' as const;
  /** 1-based line number of the malformed line. */
  readonly line: number;
  constructor(line: number, cause: unknown) {
    super(`Line ${line} of the request body is not valid JSON: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'RequestBodyError';
    this.line = line;
  }
  /** The body of a 400 response. */
  toJSON(): RequestBodyErrorJSON {
    return { error: { message: this.message, code: this.code, line: this.line } };
  }
}

/** A request body over a size limit of `ndjsonEvents`: answer with `status` (413) and `toJSON()`. */
export class RequestTooLargeError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BODY_TOO_LARGE.status;
  /** `ERR_VELO_NDJSON_LINE_TOO_LARGE` (one line over `maxLineBytes`) or `ERR_VELO_BODY_TOO_LARGE` (the body over `maxBodyBytes`). */
  readonly code: 'ERR_VELO_NDJSON_LINE_TOO_LARGE' | 'ERR_VELO_BODY_TOO_LARGE';
  /** The limit that was exceeded, in bytes. */
  readonly limit: number;
  /** 1-based number of the line over `maxLineBytes` (line errors only). */
  readonly line: number | undefined;
  constructor(code: RequestTooLargeError['code'], limit: number, line?: number) {
    super(
      code === 'ERR_VELO_BODY_TOO_LARGE'
        ? `The request body is larger than maxBodyBytes (${limit} bytes)`
        : `Line ${line} of the request body is larger than maxLineBytes (${limit} bytes)`,
    );
    this.name = 'RequestTooLargeError';
    this.code = code;
    this.limit = limit;
    this.line = line;
  }
  /** The response body: `{ error: { message, code, limit, line? } }` (`limit` in bytes; `line` for a line too long). */
  toJSON(): RequestTooLargeErrorJSON {
    const error = { message: this.message, code: this.code, limit: this.limit };
    return { error: this.line === undefined ? error : { ...error, line: this.line } };
  }
}

/**
 * The stream fed by `ndjsonEvents` stopped reading the request body (its idle timeout, or `end()`) while a line
 * of it was arriving: the rest of the body is not read. Answered with `status` (408) by the HTTP writers.
 */
export class RequestBodyTimeoutError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BODY_TIMEOUT.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_BODY_TIMEOUT' as const;
  /** 1-based number of the line that was arriving. */
  readonly line: number;
  constructor(line: number, bytes: number) {
    super(
      `The stream stopped reading the request body (its idleTimeout passed, or its input was ended) while line ${line} was arriving (${bytes} bytes of it in): the rest of the body is not read`,
    );
    this.name = 'RequestBodyTimeoutError';
    this.line = line;
  }
}

/** A request body over `maxBodyBytes`. */
export function bodyTooLargeError(limit: number): RequestTooLargeError {
  return new RequestTooLargeError('ERR_VELO_BODY_TOO_LARGE', limit);
}

/** Line `line` (from 1) of a request body over `maxLineBytes`. */
export function lineTooLargeError(limit: number, line: number): RequestTooLargeError {
  return new RequestTooLargeError('ERR_VELO_NDJSON_LINE_TOO_LARGE', limit, line);
}
