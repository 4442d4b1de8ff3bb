// Options shared by the producer, the worker and the output reader of one
// distributed stream function: they must agree on the name, the partition
// count and the codec.
import { describe, invalidType, invalidValue } from '../../errors';
import { callTimeoutOption as checkCallTimeout } from '../../validate';
import { isWellFormed } from '../../text';
import { type Codec, jsonCodec } from '../../durable/common/codec';
import { type ShapeOptions, checkShape, unknownOption } from '../../durable/common/shape';
import type { RedisClientLike } from './connection';
import { KeySpace } from './redis-log';

/** The options every entry point of `velo-stream/redis` shares; every process of a function must agree on them. */
export interface RedisOptions<T = unknown> extends ShapeOptions<T> {
  /** A connected node-redis client (v5 or v6); its settings (TLS, auth, reconnects) are yours. Not closed by velo-stream. */
  client: RedisClientLike;
  /** The function's name in Redis keys (`velo:{<name>:p<N>}`). No `{`, `}` or whitespace. */
  name: string;
}

/**
 * The Redis part of the options of every entry point of `velo-stream/durable`: a node-redis client (which picks
 * Redis). Redis has no schema: `schema` is refused.
 */
export interface RedisClientOption {
  /** A connected node-redis client (v5 or v6); its settings (TLS, auth, reconnects) are yours. Not closed by velo-stream. */
  client: RedisClientLike;
  /** Postgres only: a Redis client takes none. */
  schema?: never;
}

export interface Resolved<T> {
  client: RedisClientLike;
  keys: KeySpace;
  partitions: number;
  codec: Codec<T>;
  maxEventBytes: number;
}

/** The options every entry point takes. */
const SHARED_KEYS = ['client', 'name', 'partitions', 'codec', 'maxEventBytes'];

/** Checks the options shared by every entry point; `ownKeys`: the entry point's other options (any other name is refused, as a misspelt one would be ignored). */
export function resolveOptions<T>(options: RedisOptions<T>, what: string, ownKeys: readonly string[]): Resolved<T> {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  let given: string[];
  try {
    given = Object.keys(options);
  } catch (error) {
    throw invalidType(`${what}: options cannot be read (${describe(options)})`, error);
  }
  for (const key of given) {
    if (!SHARED_KEYS.includes(key) && !ownKeys.includes(key)) {
      throw unknownOption(what, key, [...SHARED_KEYS, ...ownKeys], 'Redis');
    }
  }
  const { client, name, partitions = 64, codec = jsonCodec as Codec<T>, maxEventBytes = 1 << 20 } = options;
  if (
    client === null ||
    typeof client !== 'object' ||
    typeof client.sendCommand !== 'function' ||
    typeof client.duplicate !== 'function'
  ) {
    throw invalidType(`${what}: options.client must be a connected node-redis client, not ${describe(client)}`);
  }
  // node-redis clients say whether they are open: one not connected yet would fail every command later, with
  // errors that read as Redis' (a send "not known to be written").
  if ((client as { isOpen?: unknown }).isOpen === false) {
    throw invalidValue(`${what}: options.client is not connected: await client.connect() first`);
  }
  checkName(what, name);
  checkShape(what, partitions, codec, maxEventBytes);
  return { client, keys: new KeySpace(name), partitions, codec, maxEventBytes };
}

/** Checks a function's name in Redis: a well-formed string of 1-200 characters without braces or whitespace. */
export function checkName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string') throw invalidType(`${what}: the "name" option must be a string. Received ${describe(name)}`);
  if (!/^[^{}\s]{1,200}$/.test(name) || !isWellFormed(name)) {
    throw invalidValue(
      `${what}: the "name" option must be 1-200 characters without braces, whitespace or lone surrogates. Received ${describe(name)}`,
    );
  }
}

/** Checks a consumer group's or a consumer's name (`option`): a non-empty, well-formed string. */
export function checkGroupName(what: string, option: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw invalidType(`${what}: options.${option} must be a string, not ${describe(value)}`);
  if (value.length === 0 || !isWellFormed(value)) {
    throw invalidValue(`${what}: options.${option} must be a non-empty string without lone surrogates, not ${describe(value)}`);
  }
}

/** `callTimeout`'s default, ms: as long as `redisClientOptions`' socket timeout, which bounds a call on an idle connection. */
export const CALL_TIMEOUT_MS = 5000;

/** Checks a `callTimeout` option of `fn` (validate.ts), `CALL_TIMEOUT_MS` when not given. */
export function callTimeoutOption(fn: string, value: unknown = CALL_TIMEOUT_MS): number {
  return checkCallTimeout(fn, value);
}

export { MAX_KEY_BYTES, checkKey, fnv1a } from '../../durable/common/keys';
export { checkShape } from '../../durable/common/shape';
