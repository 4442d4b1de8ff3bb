// The options of `acquire(item, options)`, checked the same way by every limiter of the package (in-process and
// on Redis): an object with at most a `signal`, an AbortSignal. Anything else is a coded error, never a crash or a
// silent acceptance.
import { describe, invalidType, invalidValue } from '../errors';

/** The `signal` of `options`, checked (undefined: none given). */
export function acquireSignal(options: unknown, what: string): AbortSignal | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: the options must be an object { signal }. Received ${describe(options)}`);
  let keys: string[];
  let signal: unknown;
  try {
    keys = Object.keys(options);
    signal = (options as { signal?: unknown }).signal;
  } catch (error) {
    // A revoked Proxy, a getter that throws.
    throw invalidType(`${what}: the options could not be read (${describe(error)})`, error);
  }
  for (const key of keys) {
    if (key !== 'signal') throw invalidValue(`${what}: unknown option "${key}". Known options: signal`);
  }
  if (signal === undefined) return undefined;
  let isSignal = false;
  try {
    isSignal = signal instanceof AbortSignal;
  } catch {
    // A revoked Proxy: not a signal.
  }
  if (!isSignal) throw invalidType(`${what}: the "signal" option must be an AbortSignal. Received ${describe(signal)}`);
  return signal as AbortSignal;
}
