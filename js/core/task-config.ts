// The settings of task and batch stages (`task(fn, config)`, `batch(fn, config)`): checked at the call, split into
// the stream's own settings and the task window's (crates/velo-core/src/task.rs), with the call wrapped for its
// limiters (js/limits/use.ts). The stages themselves run in task.ts.
import { assertOptionsObject, checkKeys, readingOptions } from '../config';
import { describe, invalidType, invalidValue, outOfRange } from '../errors';
import { integerOption, numberOption } from '../validate';
import type { BatchConfig, RetryConfig, StreamConfig, TaskContext } from '../types';
import type { TaskPolicy } from './native-stream';
import { checkLimiters, limitedCall, windowPermits } from '../limits/use';
import type { WindowPermits } from '../limits/local';

export type Call<I, O> = (item: I, ctx: TaskContext) => O | Promise<O>;
export type OnError<I, O> =
  'fail' | 'skip' | ((error: unknown, item: I, ctx: TaskContext) => O | undefined | Promise<O | undefined>);

export const MAX_COUNT = 2 ** 32 - 1;
/** Node's own ceiling for timers (about 24.8 days). */
const MAX_MS = 2 ** 31 - 1;

const TASK_KEYS = ['concurrency', 'ordered', 'retry', 'onError', 'limiter'];
const AsyncGeneratorFunction = (Object.getPrototypeOf(async function* () {}) as { constructor: FunctionConstructor }).constructor;
const GeneratorFunction = (Object.getPrototypeOf(function* () {}) as { constructor: FunctionConstructor }).constructor;
const BATCH_KEYS = [...TASK_KEYS, 'maxSize', 'minSize', 'maxWait'];
const RETRY_KEYS = new Set(['attempts', 'delay', 'factor', 'maxDelay']);

/** A task or batch stage's checked settings. */
export interface TaskSpec<I, O> {
  /** The call (with limiters: wrapped, so that it first holds a permit of each: js/limits/use.ts). */
  fn: Call<I, O>;
  /** `fn` is wrapped with limiters. */
  limited: boolean;
  /** With a limiter the window takes permits from (`policy.limiter`): the call unwrapped, for calls granted there. */
  direct: { fn: Call<I, O>; permits: WindowPermits } | undefined;
  onError: OnError<I, O>;
  policy: TaskPolicy;
}

const positiveInt = (field: string, value: unknown): number => integerOption(undefined, field, value, 1, MAX_COUNT);

const millis = (field: string, value: unknown): number =>
  numberOption(undefined, field, value, 0, MAX_MS, `a finite number of milliseconds from 0 to ${MAX_MS}`);

function checkRetry(value: unknown): Required<RetryConfig> {
  const retry = { attempts: 1, delay: 100, factor: 2, maxDelay: 30_000 };
  if (value === undefined) return retry;
  assertOptionsObject(value, 'retry', '{ attempts: 3 }');
  for (const key of Object.keys(value)) {
    if (!RETRY_KEYS.has(key)) throw invalidValue(`Unknown retry option "${key}". Known options: ${[...RETRY_KEYS].join(', ')}`);
  }
  const r = value as RetryConfig;
  if (r.attempts !== undefined) retry.attempts = positiveInt('retry.attempts', r.attempts);
  if (r.delay !== undefined) retry.delay = millis('retry.delay', r.delay);
  if (r.maxDelay !== undefined) retry.maxDelay = millis('retry.maxDelay', r.maxDelay);
  if (r.factor !== undefined) {
    retry.factor = numberOption(undefined, 'retry.factor', r.factor, 1, Number.MAX_VALUE, 'a finite number of at least 1');
  }
  return retry;
}

/** The task settings checked, and the stream's (`checkTaskConfig`). */
type CheckedTask<I, O> = { spec: Omit<TaskSpec<I, O>, 'policy'> & { policy: Omit<TaskPolicy, 'buffer'> }; stream: StreamConfig };

/** Splits a task or batch config into the stream settings and the checked task settings. Throws at the call. */
export function checkTaskConfig<I, O>(kind: 'task' | 'batch', fn: unknown, config: unknown): CheckedTask<I, O> {
  return readingOptions('config', () => checkTaskRead<I, O>(kind, fn, config));
}

function checkTaskRead<I, O>(kind: 'task' | 'batch', fn: unknown, config: unknown): CheckedTask<I, O> {
  if (typeof fn !== 'function') {
    throw invalidType(`The "fn" argument of ${kind}() must be a function. Received ${describe(fn)}`);
  }
  // A generator function's result is a generator object: one output per call, never its yields. A stage whose
  // calls yield several outputs is a stream function (streamFn), not a task.
  if ((fn as unknown) instanceof AsyncGeneratorFunction || (fn as unknown) instanceof GeneratorFunction) {
    throw invalidType(
      `The "fn" argument of ${kind}() must return its result (or a promise of it), not be a generator function: for a stage that yields several outputs per input, use streamFn()`,
    );
  }
  if (kind === 'batch' && config === undefined) {
    throw invalidType(`batch() needs a config with "maxSize", such as batch(fn, { maxSize: 100 })`);
  }
  if (config === undefined) config = {};
  assertOptionsObject(config, 'config', kind === 'task' ? '{ concurrency: 8 }' : '{ maxSize: 100 }');
  const own = kind === 'task' ? TASK_KEYS : BATCH_KEYS;
  checkKeys(config, own);
  const c = config as BatchConfig<unknown, unknown>;
  const stream: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (!own.includes(key)) stream[key] = value;
  }
  const concurrency = c.concurrency === undefined ? 16 : positiveInt('concurrency', c.concurrency);
  let ordered = true;
  if (c.ordered !== undefined) {
    if (typeof c.ordered !== 'boolean')
      throw invalidType(`The "ordered" option must be a boolean. Received ${describe(c.ordered)}`);
    ordered = c.ordered;
  }
  const retry = checkRetry(c.retry);
  const onError: unknown = c.onError === undefined ? 'fail' : c.onError;
  if (onError !== 'fail' && onError !== 'skip' && typeof onError !== 'function') {
    throw invalidValue(`The "onError" option must be 'fail', 'skip' or a function. Received ${describe(onError)}`);
  }
  let maxSize = 0;
  let minSize = 1;
  let maxWait = 0;
  if (kind === 'batch') {
    maxSize = positiveInt('maxSize', c.maxSize);
    if (c.minSize !== undefined) minSize = positiveInt('minSize', c.minSize);
    if (minSize > maxSize) {
      throw outOfRange(`The "minSize" option (${minSize}) must not be larger than "maxSize" (${maxSize})`);
    }
    if (c.maxWait !== undefined) maxWait = millis('maxWait', c.maxWait);
  }
  // Each call (each attempt) first holds a permit of every limiter (js/limits/use.ts); a batch's item is its array.
  // A per-item stage's one limiter() without per-item options: the window takes each call's permit as it starts it
  // and gives it back as it settles it, in its own native calls (a retry attempt, and a call refused there, ask the
  // limiter through the wrapped call).
  const limiters = checkLimiters(c.limiter, `${kind}()`);
  const permits = limiters === undefined || kind !== 'task' ? undefined : windowPermits(limiters);
  return {
    spec: {
      fn: limiters === undefined ? (fn as Call<I, O>) : limitedCall(fn as Call<I, O>, limiters),
      limited: limiters !== undefined,
      direct: permits === undefined ? undefined : { fn: fn as Call<I, O>, permits },
      onError: onError as OnError<I, O>,
      policy: {
        concurrency,
        ordered,
        attempts: retry.attempts,
        delayMs: retry.delay,
        factor: retry.factor,
        maxDelayMs: retry.maxDelay,
        maxSize,
        minSize,
        maxWaitMs: maxWait,
        limiter: permits?.handle,
      },
    },
    stream,
  };
}
