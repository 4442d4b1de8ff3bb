// `ctx.run` and `ctx.stream` as a handler calls them: checked here, then given to the session's hooks (a durable
// session journals them: durable/engine/journal.ts), or, in-process, called as they are.
import { describe, invalidType, invalidValue } from '../errors';
import { isWellFormed } from '../text';
import type { JournalCall, JournalStreamCall } from '../types';
import type { CallSignal, SessionHooks } from './protocol';

/** Most characters of a journaled call's name. */
const MAX_NAME = 200;
/** What a name may not hold: control characters (line breaks among them, NUL) and Unicode's line and paragraph separators. */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const NOT_IN_NAME = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** The last name found good (at first one that is): a handler calls the same few names again and again. */
let goodName = 'run';

/** Checks a journaled call's name and body (`what`: `ctx.run()`, `ctx.stream()`; `arg`: the body's name). */
export function checkCall(what: string, name: unknown, body: unknown, arg: string): asserts name is string {
  if (typeof name !== 'string') throw invalidType(`${what}: the "name" argument must be a string. Received ${describe(name)}`);
  if (name !== goodName && (name.length === 0 || name.length > MAX_NAME || NOT_IN_NAME.test(name) || !isWellFormed(name)))
    throw invalidValue(
      `${what}: the "name" argument must be 1-${MAX_NAME} characters without control characters, line breaks or lone surrogates. Received ${describe(name)}`,
    );
  if (typeof body !== 'function')
    throw invalidType(`${what}: the "${arg}" argument must be a function. Received ${describe(body)}`);
  goodName = name;
}

/** What a call needs of its handler's context: its id and signal, and a count of its in-process calls. */
export interface CallSite extends CallSignal {
  readonly id: string;
  /** The place of the next in-process call (1, 2, ...). */
  nextCall(): number;
}

/**
 * What a body gets (`JournalCall`): its key and the handler's signal, own data properties (a body may spread it, or
 * wrap it in a proxy, and keep both).
 */
export class BodyCall implements JournalCall {
  readonly signal: AbortSignal;
  constructor(
    readonly key: string,
    site: CallSignal,
  ) {
    this.signal = site.signal;
  }
}

/** What a stream's factory gets (`JournalStreamCall`): a `BodyCall` with the chunks recorded before. */
export class FactoryCall extends BodyCall implements JournalStreamCall {
  constructor(
    key: string,
    site: CallSignal,
    readonly chunks: readonly unknown[],
  ) {
    super(key, site);
  }
}

/** `ctx.run(name, body)`: a promise, also for what is refused or thrown at once (not an async function: no layer more). */
export function runCall(
  hooks: SessionHooks | undefined,
  site: CallSite,
  name: unknown,
  body: (call: JournalCall) => unknown,
): Promise<unknown> {
  try {
    checkCall('ctx.run()', name, body, 'body');
    if (hooks?.run !== undefined) return hooks.run(name, body, site);
    return Promise.resolve(body(new BodyCall(`${site.id}/${site.nextCall()}`, site)));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** `ctx.stream(name, factory)`. */
export function streamCall(
  hooks: SessionHooks | undefined,
  site: CallSite,
  name: unknown,
  factory: (call: JournalStreamCall) => AsyncIterable<unknown> | Iterable<unknown>,
): AsyncIterable<unknown> {
  checkCall('ctx.stream()', name, factory, 'factory');
  if (hooks?.stream !== undefined) return hooks.stream(name, factory, site);
  const source = factory(new FactoryCall(`${site.id}/${site.nextCall()}`, site, []));
  if (source === null || typeof source !== 'object' || (!(Symbol.asyncIterator in source) && !(Symbol.iterator in source)))
    throw invalidType(`ctx.stream(): the factory must return an iterable or async iterable. Received ${describe(source)}`);
  return source as AsyncIterable<unknown>;
}
