import { describe, invalidType, invalidValue } from './errors';
import { integerOption, numberOption } from './validate';
import type { StreamConfig } from './types';

const DEFAULTS = { buffer: 256, idleTimeout: 30_000, maxConcurrent: 10_000 } as const;

/** Largest `buffer` and `maxConcurrent`: both cross into the core as u32. */
const MAX_COUNT = 2 ** 32 - 1;
/** Largest `idleTimeout`: the same ceiling as Node's own timers (about 24.8 days). */
const MAX_IDLE_MS = 2 ** 31 - 1;

const KEYS = new Set(['buffer', 'idleTimeout', 'maxConcurrent', 'name']);

function count(field: string, value: unknown): number {
  return integerOption(undefined, field, value, 1, MAX_COUNT);
}

/**
 * Throws unless `value` is an options object: a plain object (or a class
 * instance, or one without prototype), not an AbortSignal, Map, array or other
 * built-in whose fields would be silently ignored. The check reads the
 * built-in tag, so objects from other realms (Jest's vm contexts) pass.
 */
export function assertOptionsObject(value: unknown, name: string, example: string): asserts value is object {
  let tag: string | undefined;
  let unread: { error: unknown } | undefined;
  if (value !== null && typeof value === 'object') {
    try {
      tag = Object.prototype.toString.call(value);
    } catch (error) {
      // (A Proxy whose trap throws, or a revoked one: refused below, its error the cause.)
      unread = { error };
    }
  }
  if (tag !== '[object Object]') {
    const hint = tag !== undefined && value instanceof AbortSignal ? ` (to pass a signal, write { signal })` : '';
    throw invalidType(
      `The "${name}" argument must be an options object such as ${example}. Received ${describe(value)}${hint}`,
      unread?.error,
    );
  }
}

/**
 * `read()`, which reads options named `name`: a throw without a string `code` (a getter's or a Proxy trap's, as an
 * option is read; the checks' own errors have codes) is ERR_INVALID_ARG_TYPE, its error as `cause`, as limiters
 * refuse one.
 */
export function readingOptions<T>(name: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    let code: unknown;
    try {
      code = (error as { code?: unknown } | null)?.code;
    } catch {
      // (A thrown revoked Proxy: no code.)
    }
    if (typeof code === 'string') throw error;
    throw invalidType(`The "${name}" argument could not be read (${describe(error)})`, error);
  }
}

/**
 * Throws ERR_INVALID_ARG_VALUE at a key of `config` that is neither a stream option nor one of `own` (the entry
 * point's own options: a task stage's, a workerFn's), naming every option the entry point knows.
 */
export function checkKeys(config: object, own: readonly string[]): void {
  for (const key of Object.keys(config)) {
    if (!KEYS.has(key) && !own.includes(key)) {
      throw invalidValue(`Unknown option "${key}". Known options: ${[...own, ...KEYS].join(', ')}`);
    }
  }
}

/** Checks a config object and fills in the defaults. Throws at the call, never later. */
export function resolveConfig(config: unknown, defaultName: string): Readonly<Required<StreamConfig>> {
  return readingOptions('config', () => resolveRead(config, defaultName));
}

function resolveRead(config: unknown, defaultName: string): Readonly<Required<StreamConfig>> {
  if (config === undefined) config = {};
  assertOptionsObject(config, 'config', '{ buffer: 64 }');
  checkKeys(config, []);
  const c = config as StreamConfig;
  const buffer = c.buffer === undefined ? DEFAULTS.buffer : count('buffer', c.buffer);
  const maxConcurrent = c.maxConcurrent === undefined ? DEFAULTS.maxConcurrent : count('maxConcurrent', c.maxConcurrent);
  let idleTimeout: number = DEFAULTS.idleTimeout;
  if (c.idleTimeout !== undefined) {
    idleTimeout = numberOption(
      undefined,
      'idleTimeout',
      c.idleTimeout,
      0,
      MAX_IDLE_MS,
      `a finite number of milliseconds from 0 (never) to ${MAX_IDLE_MS}`,
    );
  }
  let name = defaultName;
  if (c.name !== undefined) {
    if (typeof c.name !== 'string') {
      throw invalidType(`The "name" option must be a string. Received ${describe(c.name)}`);
    }
    name = c.name;
  }
  return Object.freeze({ buffer, idleTimeout, maxConcurrent, name });
}

/** `open()` with no options (one shared answer: an object per open was most of this call's cost). */
const NO_OPEN_OPTIONS = Object.freeze({ signal: undefined, label: undefined, key: undefined, cost: undefined });
const OPEN_KEYS = ['signal', 'label', 'key', 'cost'];
/** The largest cost a limiter takes (the core's u32). */
const MAX_COST = 2 ** 32 - 1;

/** The options of `open()` and `run()`, checked. */
export interface ResolvedOpen {
  signal: AbortSignal | undefined;
  label: string | undefined;
  /** For the function's limiters (`AdmissionItem.key`): a non-empty string. */
  key: string | undefined;
  /** For the function's limiters (`AdmissionItem.cost`): a whole number from 0 to 2^32 - 1. */
  cost: number | undefined;
}

/** Checks `{ signal, label, key, cost }` options of `open()` and `run()`. */
export function resolveOpen(opts: unknown): ResolvedOpen {
  if (opts === undefined) return NO_OPEN_OPTIONS;
  assertOptionsObject(opts, 'options', '{ signal }');
  let keys: string[];
  let given: { signal?: unknown; label?: unknown; key?: unknown; cost?: unknown };
  try {
    // (Read once, here: no copy, as open() takes them per stream.)
    keys = Object.keys(opts);
    const { signal, label, key, cost } = opts as typeof given;
    given = { signal, label, key, cost };
  } catch (error) {
    throw invalidType(`The "options" argument could not be read (${describe(error)})`, error);
  }
  for (const key of keys) {
    if (!OPEN_KEYS.includes(key)) throw invalidValue(`Unknown option "${key}". Known options: ${OPEN_KEYS.join(', ')}`);
  }
  const { signal, label, key, cost } = given;
  // (`instanceof` reads the prototype: a Proxy whose trap throws is refused as an unreadable option.)
  if (signal !== undefined && !readingOptions('signal', () => signal instanceof AbortSignal)) {
    throw invalidType(`The "signal" option must be an AbortSignal. Received ${describe(signal)}`);
  }
  if (label !== undefined && typeof label !== 'string') {
    throw invalidType(`The "label" option must be a string. Received ${describe(label)}`);
  }
  if (key !== undefined && typeof key !== 'string') {
    throw invalidType(
      `The "key" option must be a non-empty string (a tenant id, say: the function's limiters get it as item.key). Received ${describe(key)}`,
    );
  }
  if (key === '') throw invalidValue(`The "key" option must be a non-empty string (a tenant id, say). Received ""`);
  if (cost !== undefined) integerOption(undefined, 'cost', cost, 0, MAX_COST);
  return { signal: signal as AbortSignal | undefined, label, key, cost: cost as number | undefined };
}
