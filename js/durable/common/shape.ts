// What every process of one function must agree on, whatever its backend: the function's name (typed with its
// events and outputs), the partition count, the codec and the largest encoded event.
import { describe, invalidType, invalidValue } from '../../errors';
import { integerOption } from '../../validate';
import type { Codec } from './codec';

/** The brand's key: declared only, so no value has it and a plain string still fits a `FunctionName`. */
declare const kTypes: unique symbol;

/**
 * A function's name (`options.name`) that says which events `I` it takes and which outputs `O` it makes: a plain
 * string at run time. Passed as `name`, it lets the producer, the worker and the readers infer (and check) the types
 * of the one function they all serve. A plain string is still a valid name.
 */
export type FunctionName<I = unknown, O = unknown> = string & {
  /** Never present: the types only (events in contravariant position, so a name of wider events does not fit). */
  readonly [kTypes]?: {
    /** The events: a parameter, so a name of other events does not fit. */
    readonly event: (event: I) => void;
    /** The outputs. */
    readonly output: O;
  };
};

/** The options that shape a function's log: every process of the function must give the same ones. */
export interface ShapeOptions<T = unknown> {
  /** The function's name in the log. 1-200 characters without `{`, `}` or whitespace. */
  name: string;
  /** Partitions (K). Fixed for the life of the data: a key's partition is `fnv1a(key) mod K`. Default 64. */
  partitions?: number;
  /** Encodes events and outputs. Default `jsonCodec`. */
  codec?: Codec<T>;
  /** Largest encoded event or output, bytes; larger ones are refused with `ERR_VELO_EVENT_TOO_LARGE`. Default 1 MiB. */
  maxEventBytes?: number;
}

/** Checks the options that shape the log (also those of `velo-stream/testing`, which runs on one in memory). */
export function checkShape(what: string, partitions: unknown, codec: unknown, maxEventBytes: unknown): void {
  integerOption(what, 'partitions', partitions, 1, 16384);
  const c = codec as Partial<Codec<unknown>> | null;
  if (c === null || typeof c !== 'object' || typeof c.encode !== 'function' || typeof c.decode !== 'function') {
    throw invalidType(`${what}: options.codec must have encode() and decode(), not ${describe(codec)}`);
  }
  integerOption(what, 'maxEventBytes', maxEventBytes, 1, 512 << 20);
}

/** Options of one backend's entry points that the other's have not: named as such when given to the other. */
const ONLY_ON = {
  Postgres: new Set(['pool', 'schema', 'effects', 'listen', 'pollInterval']),
  Redis: new Set(['maxLag', 'lagInterval', 'group', 'consumer', 'claimIdle']),
};

/** The error for option `key` of `what` on `backend`, which knows `known`: one of the other backend's named so. */
export function unknownOption(what: string, key: string, known: readonly string[], backend: 'Redis' | 'Postgres'): Error {
  const other = backend === 'Redis' ? 'Postgres' : 'Redis';
  const elsewhere = ONLY_ON[other].has(key) ? ` (an option on ${other}, not on ${backend})` : '';
  return invalidValue(`${what}: unknown option "${key}"${elsewhere}. Known options: ${known.join(', ')}`);
}
