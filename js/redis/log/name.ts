// A function's name in Redis that carries the function's event and output
// types: at run time it is the name string itself; in the types it lets
// `redisProducer`, `redisWorker`, `redisOutputs` and `redisMaterialize` infer
// (and check) the types of the one function they all serve.
import type { StreamFn } from '../../types';
import type { FunctionName } from '../../durable/common/shape';
import { describe, invalidType } from '../../errors';
import { checkName } from './options';
import { kOpen } from '../../core/protocol';

/**
 * A function's name in Redis (`options.name`) that says which events `I` it takes and which outputs `O` it makes
 * (`FunctionName`): a plain string at run time. Make one with `redisName(fn, 'orders')`, or in a process that does not
 * load the handler, `'orders' as RedisName<Order, Receipt>`.
 */
export type RedisName<I = unknown, O = unknown> = FunctionName<I, O>;

/**
 * `name`, typed with `fn`'s event and output types, for the `name` option of every entry point of the function.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function or `name` not a string;
 * `ERR_INVALID_ARG_VALUE` for a name that is not 1-200 characters without braces, whitespace or lone surrogates.
 */
export function redisName<I, O>(fn: StreamFn<I, O>, name: string): RedisName<I, O> {
  return typedName('redisName()', fn, name);
}

/**
 * `redisName` for the entry point `what` (named in its errors). The name's rule is Redis': a name that passes it is
 * one on Postgres too (which allows braces).
 */
export function typedName<I, O>(what: string, fn: StreamFn<I, O>, name: string): FunctionName<I, O> {
  if (typeof (fn as { [kOpen]?: unknown } | null)?.[kOpen] !== 'function') {
    throw invalidType(`${what}: fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  }
  checkName(what, name);
  return name;
}
