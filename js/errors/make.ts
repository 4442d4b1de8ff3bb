// What every maker of an error uses: a code set on an error, a value described for a message, and JavaScript's
// own error classes by name.

import type { ErrorCode } from './codes';

/** `error` with a string `code` of the table. (An own data property, so DOMException's numeric getter is shadowed.) */
export function coded<E extends Error, C extends ErrorCode, X extends object = object>(
  error: E,
  code: C,
  extra?: X,
): E & { code: C } & X {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, configurable: true, writable: true });
  return Object.assign(error, extra) as E & { code: C } & X;
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') {
    try {
      return `an instance of ${value.constructor?.name ?? 'Object'}`;
    } catch {
      return 'an object that cannot be read (a revoked Proxy?)';
    }
  }
  if (typeof value === 'string') return `type string (${JSON.stringify(value.length > 28 ? value.slice(0, 25) + '...' : value)})`;
  // Only primitives are left here (and symbols, which String() describes).
  const primitive = value as number | boolean | bigint | symbol | undefined;
  return `type ${typeof value} (${String(primitive)})`;
}

/** JavaScript's own error classes, by name. */
const BUILT_IN_ERRORS: Readonly<Record<string, ErrorConstructor>> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** JavaScript's error class named `name` (`TypeError`, `RangeError`, ...), else `Error`: an error rebuilt as itself. */
export function builtInErrorClass(name: unknown): ErrorConstructor {
  return (typeof name === 'string' && Object.hasOwn(BUILT_IN_ERRORS, name) && BUILT_IN_ERRORS[name]) || Error;
}
