// A function's name in Redis that carries the function's event and output
// types: at run time it is the name string itself; in the types it lets
// `redisProducer`, `redisWorker`, `redisOutputs` and `redisMaterialize` infer
// (and check) the types of the one function they all serve.
import type { StreamFn } from '../../types';
import { describe, invalidType } from '../../errors';
import { checkName } from './options';
import { kOpen } from '../../core/protocol';

/** The brand's key: declared only, so no value has it and a plain string still fits a `RedisName`. */
declare const kTypes: unique symbol;

/**
 * A function's name in Redis (`options.name`) that says which events `I` it takes and which outputs `O` it makes:
 * a plain string at run time. Pass it as `name` and the entry points infer their types from it: `redisProducer`
 * sends `I`, `redisOutputs` and `redisMaterialize` read `O`, and `redisWorker` refuses a function of other types.
 * A plain string is still a valid name (the types are then given or `unknown`, as before). Make one with
 * `redisName(fn, 'orders')`, or in a process that does not load the handler, `'orders' as RedisName<Order, Receipt>`.
 */
export type RedisName<I = unknown, O = unknown> = string & {
  /** Never present: the types only (events in contravariant position, so a name of wider events does not fit). */
  readonly [kTypes]?: {
    /** The events: a parameter, so a name of other events does not fit. */
    readonly event: (event: I) => void;
    /** The outputs. */
    readonly output: O;
  };
};

/**
 * `name`, typed with `fn`'s event and output types, for the `name` option of every entry point of the function.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or `name` not a string;
 * `ERR_INVALID_ARG_VALUE` for a name that is not 1-200 characters without braces, whitespace or lone surrogates.
 */
export function redisName<I, O>(fn: StreamFn<I, O>, name: string): RedisName<I, O> {
  if (typeof (fn as { [kOpen]?: unknown } | null)?.[kOpen] !== 'function') {
    throw invalidType(`redisName(): fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  }
  checkName('redisName()', name);
  return name;
}
