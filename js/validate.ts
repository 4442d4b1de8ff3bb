// The library's checks of number options, in one message style:
//   `[<function>: t]he "<option>" option must be <what>. Received <value>`
// A number option given anything but a number in its range (a string, NaN, a fraction where an integer is
// needed) is ERR_OUT_OF_RANGE, as it has been at every entry point since 0.1 (docs/errors.md); the checks of
// other kinds of option throw ERR_INVALID_ARG_TYPE or ERR_INVALID_ARG_VALUE through js/errors/.
import { describe, outOfRange } from './errors';

/** The start of a message about option `name` of `fn` (none: the function is the one being configured). */
function subject(fn: string | undefined, name: string): string {
  return `${fn === undefined ? 'The' : `${fn}: the`} "${name}" option`;
}

/**
 * `value` if it is an integer from `min` to `max`; else an ERR_OUT_OF_RANGE naming `range` (by default "from
 * <min> to <max>"; "of at least <min>" without a maximum).
 */
export function integerOption(
  fn: string | undefined,
  name: string,
  value: unknown,
  min: number,
  max = Infinity,
  range?: string,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const bounds = range ?? (max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`);
    throw outOfRange(`${subject(fn, name)} must be an integer ${bounds}. Received ${describe(value)}`);
  }
  return value;
}

/** The longest `callTimeout` short of none, ms (Node's longest timer). */
export const MAX_CALL_TIMEOUT_MS = 2 ** 31 - 1;

/** A `callTimeout` option of `fn`: an integer from 1 to 2^31-1 ms, or Infinity (no bound); else ERR_OUT_OF_RANGE. */
export function callTimeoutOption(fn: string, value: unknown): number {
  if (value === Infinity) return value;
  return integerOption(fn, 'callTimeout', value, 1, MAX_CALL_TIMEOUT_MS, `from 1 to ${MAX_CALL_TIMEOUT_MS} (ms), or Infinity`);
}

/** `value` if it is an integer from `min` to `max`, as argument `name` of `fn`; else an ERR_OUT_OF_RANGE. */
export function integerArgument(fn: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(`${fn}: the ${name} must be an integer from ${min} to ${max}. Received ${describe(value)}`);
  }
  return value;
}

/** `value` if it is a finite number from `min` to `max`; else an ERR_OUT_OF_RANGE saying it must be `what`. */
export function numberOption(
  fn: string | undefined,
  name: string,
  value: unknown,
  min: number,
  max: number,
  what: string,
): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw outOfRange(`${subject(fn, name)} must be ${what}. Received ${describe(value)}`);
  }
  return value;
}
