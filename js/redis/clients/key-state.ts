// Per-key state beyond a session (the worker's `keyState` option), from outside the worker: read a key's kept state,
// or delete it. Each key's state is a key of its own in its partition's slot, `velo:{<name>:p<N>}:state:<key>` (see
// docs/redis/storage.md), written by the owner's fenced commit that ended the key's last session, with an expiry.
import type { KeyStates as AnyKeyStates } from '../../durable/common/clients';
import { decodeError } from '../../errors';
import { type RedisClientLike, send } from '../log/connection';
import { type RedisOptions, type Resolved, checkKey, fnv1a, resolveOptions } from '../log/options';
import { type KeyState, parseKept } from '../../durable/common/stored';

export type { KeyState };

/** Options of `redisKeyState`: those every entry point shares (the function's name, partitions, codec). */
export interface RedisKeyStateOptions extends RedisOptions<unknown> {
  /** The function's name in Redis. */
  name: string;
}

/** Reads and deletes the states a function's keys keep after their sessions (`keyState`); see `redisKeyState`. */
export interface RedisKeyStates<S> extends AnyKeyStates<S> {
  /** The function's partition count. */
  readonly partitions: number;
  /**
   * The state `key` keeps now, decoded with the function's codec; undefined if it keeps none (its sessions never
   * checkpointed, it expired, it was deleted, or the worker runs without `keyState`). A live session's own
   * checkpoints are not it: the key's state changes when a session ends. One round trip (two commands).
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a key that is not a non-empty, well-formed
   * string; `ERR_VELO_DECODE` (rejects) when the codec cannot decode the stored state.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` for a key longer than 1024 bytes (UTF-8).
   */
  readState(key: string): Promise<KeyState<S> | undefined>;
  /**
   * Deletes the state `key` keeps: its next session starts without it. Resolves with true if there was one. It does
   * not reach a session of the key that is live now: that session goes on with the state it started from and its
   * own checkpoints, and its end keeps its state again (docs/durable/key-state.md). The same errors as `readState`.
   */
  deleteState(key: string): Promise<boolean>;
}

/** Redis' buffer replies (a state is bytes). */
const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };

/** The key argument of `call`, checked as producers check keys (`checkKey`: coded errors, a revoked Proxy too). */
function keyArgument(call: string, key: unknown): string {
  try {
    return checkKey(key);
  } catch (error) {
    (error as Error).message = `${call}: ${(error as Error).message}`;
    throw error;
  }
}

class KeyStates<S> implements RedisKeyStates<S> {
  readonly partitions: number;
  readonly #o: Resolved<unknown>;
  readonly #client: RedisClientLike;

  constructor(o: Resolved<unknown>) {
    this.#o = o;
    this.#client = o.client;
    this.partitions = o.partitions;
  }

  #name(key: string): string {
    return this.#o.keys.state(fnv1a(key) % this.partitions, key);
  }

  async readState(key: string): Promise<KeyState<S> | undefined> {
    const name = this.#name(keyArgument('readState()', key));
    // (Two commands sent together: a state that expires between them reads as expiring now.)
    const [value, ttl] = (await Promise.all([
      send(this.#client, name, ['GET', name], BUFFERS),
      send(this.#client, name, ['PTTL', name]),
    ])) as [Buffer | null, number];
    if (value === null) return undefined;
    const stored = parseKept(value);
    let state: S;
    try {
      if (stored.unreadable !== undefined) throw stored.unreadable as Error;
      state = this.#o.codec.decode(stored.state) as S;
    } catch (error) {
      throw decodeError(`readState(): the codec could not decode the state kept for key ${JSON.stringify(key)}`, error);
    }
    return { state, sid: stored.sid, expiresIn: Number(ttl) === -2 ? 0 : Number(ttl) };
  }

  async deleteState(key: string): Promise<boolean> {
    const name = this.#name(keyArgument('deleteState()', key));
    return Number(await send(this.#client, name, ['DEL', name])) === 1;
  }
}

/**
 * The kept states of a function's keys (the worker's `keyState` option), to read or delete from any process: give
 * the function's `client`, `name`, `partitions` and `codec` as its producer does. `S` is the state's type (the
 * handler's `StreamContext<S>`; a function's type does not carry it).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for options the other entry points refuse.
 */
export function redisKeyState<S = unknown>(options: RedisKeyStateOptions): RedisKeyStates<S> {
  return keyStatesOf<S>(options, 'redisKeyState()');
}

/** `redisKeyState` for the entry point `what` (named in its errors). */
export function keyStatesOf<S>(options: RedisKeyStateOptions, what: string): RedisKeyStates<S> {
  return new KeyStates<S>(resolveOptions(options, what, []));
}
