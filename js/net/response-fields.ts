// The checks of the options every HTTP writer of velo-stream takes (`serialize`, `event`, `headers`): the writers of
// velo-stream/http and the key readers' of velo-stream/redis (redisSse, redisNdjson) refuse the same values the
// same way.
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { assertOptionsObject } from '../config';
import { describe, invalidType, invalidValue } from '../errors';

/** The fields checked. */
export interface ResponseFields {
  serialize?: unknown;
  event?: unknown;
  headers?: unknown;
}

/** Checks `serialize` (a function), `event` (a string without CR or LF) and `headers` (names and values Node takes). */
export function checkResponseFields(opts: ResponseFields): void {
  const { serialize, event, headers } = opts;
  if (serialize !== undefined && typeof serialize !== 'function') {
    throw invalidType(`The "serialize" option must be a function. Received ${describe(serialize)}`);
  }
  if (event !== undefined) {
    if (typeof event !== 'string') throw invalidType(`The "event" option must be a string. Received ${describe(event)}`);
    // A line break would end the event: line and the rest would go out as fields of their own (injected frames).
    if (/[\r\n]/.test(event)) {
      throw invalidValue(
        `The "event" option must not contain a carriage return or a line feed. Received ${JSON.stringify(event)}`,
      );
    }
  }
  if (headers !== undefined) {
    assertOptionsObject(headers, 'headers', "{ 'cache-control': 'no-store' }");
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
      const ok =
        typeof value === 'string' ||
        typeof value === 'number' ||
        (Array.isArray(value) && value.every((v) => typeof v === 'string'));
      if (!ok)
        throw invalidType(
          `The "headers" option's "${name}" must be a string, a number or an array of strings. Received ${describe(value)}`,
        );
      // Node's own rules for a header (a token as name, no CR or LF in a value), at the call rather than at the
      // first output, when outputs were already read.
      try {
        validateHeaderName(name);
        for (const v of Array.isArray(value) ? value : [value]) validateHeaderValue(name, String(v));
      } catch (error) {
        throw Object.assign(invalidValue(`The "headers" option's "${name}" is not a valid header: ${(error as Error).message}`), {
          cause: error,
        });
      }
    }
  }
}
