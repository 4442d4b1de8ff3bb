// Versions from outside the workers (an orchestrator, a deploy script): live sessions per version, the live workers
// and what they run, and an awaitable "drained" for a version, read from what the workers keep in Redis (the
// partitions' `:versions` counts, their leases, the function's `:workers` and `:adverts`; docs/redis/storage.md).
import { describe, invalidType, invalidValue, outOfRange, versionUnknownError } from '../../errors';
import { send } from '../log/connection';
import { type RedisOptions, type Resolved, resolveOptions } from '../log/options';
import { parseAdvert } from '../common/stored';
import { type VersionStatus, drainedIn, versionStatus } from '../rules/versions';
import { checkVersionName } from '../engine/versions';

/** Options of `redisVersions`: those every entry point shares (the function's name, partitions). */
export interface RedisVersionsOptions extends RedisOptions<unknown> {
  /** The function's name in Redis. */
  name: string;
}

/** The options `drained()` knows. */
const DRAINED_OPTIONS = ['signal', 'interval', 'ifUnknown'];

/** Options of `drained()`. */
export interface DrainedOptions {
  /** Stops waiting: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** How often the status is read, ms (each read is one round trip per partition, and two). Default 1000. */
  readonly interval?: number;
  /**
   * What a version is taken for that, at the first read, no live worker runs and no live session is on (a
   * misspelt name, or a version long gone): `'reject'` (the default) rejects with `ERR_VELO_VERSION_UNKNOWN`,
   * `'resolve'` takes it as drained.
   */
  readonly ifUnknown?: 'reject' | 'resolve';
}

/** The versions of a function's sessions and workers; see `redisVersions`. */
export interface RedisVersions {
  /** The function's partition count. */
  readonly partitions: number;
  /** Reads live sessions per version, live workers and what they own: one round trip per partition, and two. */
  status(): Promise<VersionStatus>;
  /**
   * Resolves once `version` is drained: no live session runs on it, and no live worker whose version it is owns a
   * partition (such a worker would open new sessions on it). Then the workers of that version may stop. It reads
   * `status()` every `interval` ms until then (it keeps the process alive meanwhile). A version that, at the
   * first read, no live worker runs and no live session is on rejects with `ERR_VELO_VERSION_UNKNOWN` (a
   * misspelt name must not pass for a drained one), unless `ifUnknown: 'resolve'`.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for a version that is not a version name
   * (1-64 letters, digits, `.`, `_` or `-`) or bad options; rejects with the error of a read that failed.
   */
  drained(version: string, options?: DrainedOptions): Promise<void>;
}

class Versions implements RedisVersions {
  readonly partitions: number;
  readonly #o: Resolved<unknown>;

  constructor(o: Resolved<unknown>) {
    this.#o = o;
    this.partitions = o.partitions;
  }

  async status(): Promise<VersionStatus> {
    const { client, keys } = this.#o;
    const workersKey = keys.workers();
    const advertsKey = keys.adverts();
    const time = (await send(client, workersKey, ['TIME'])) as unknown[];
    const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
    const [registered, advertList, ...parts] = (await Promise.all([
      // Live: registered until after now (heartbeat.lua's rule).
      send(client, workersKey, ['ZRANGEBYSCORE', workersKey, `(${now}`, '+inf']),
      send(client, advertsKey, ['HGETALL', advertsKey]),
      // Per partition its lease, then its counts: a session an owner of the version writes (its first output, in the
      // commit of a hand-over, say) before it lets the lease go is in the counts read after that lease.
      ...Array.from({ length: this.partitions }, async (_, p) => {
        const lease = await send(client, keys.lease(p), ['GET', keys.lease(p)]);
        return [await send(client, keys.versions(p), ['HGETALL', keys.versions(p)]), lease];
      }),
    ])) as [unknown[], unknown, ...[unknown, string | null][]];
    const live = new Set(registered.map(String));
    const adverts = new Map(
      pairs(advertList)
        .filter(([id]) => live.has(id))
        .map(([id, value]) => [id, parseAdvert(value)]),
    );
    return versionStatus(
      parts.map(([counts, lease]) => ({
        counts: pairs(counts).map(([version, n]) => [version, Number(n)] as const),
        holder: lease === null ? null : lease.slice(0, Math.max(0, lease.lastIndexOf(':'))),
      })),
      live,
      adverts,
    );
  }

  async drained(version: string, options: DrainedOptions = {}): Promise<void> {
    checkVersionName('drained(): version', version);
    let signal: AbortSignal | undefined;
    let interval: number;
    let ifUnknown: unknown;
    try {
      if (options === null || typeof options !== 'object')
        throw invalidType(`drained(): options must be an object, not ${describe(options)}`);
      for (const key of Object.keys(options))
        if (!DRAINED_OPTIONS.includes(key))
          throw invalidValue(`drained(): unknown option ${JSON.stringify(key)}. Known options: ${DRAINED_OPTIONS.join(', ')}`);
      ({ signal, interval = 1000, ifUnknown = 'reject' } = options);
    } catch (error) {
      if ((error as { code?: unknown }).code !== undefined) throw error;
      throw invalidType(`drained(): the options could not be read (${describe(error)})`, error);
    }
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw invalidType(`drained(): options.signal must be an AbortSignal, not ${describe(signal)}`);
    if (typeof interval !== 'number')
      throw invalidType(`drained(): options.interval must be a number of ms, not ${describe(interval)}`);
    if (!(interval >= 10 && interval <= 3_600_000))
      throw outOfRange(`drained(): options.interval must be from 10 to 3600000 ms. Received ${describe(interval)}`);
    if (ifUnknown !== 'reject' && ifUnknown !== 'resolve')
      throw invalidValue(`drained(): options.ifUnknown must be 'reject' or 'resolve', not ${describe(ifUnknown)}`);
    for (let first = true; ; first = false) {
      if (signal?.aborted === true) throw signal.reason;
      const s = await this.status();
      if (first && !Object.hasOwn(s.sessions, version) && !s.workers.some((w) => w.runs.includes(version))) {
        if (ifUnknown === 'resolve') return;
        const known = [...new Set([...Object.keys(s.sessions), ...s.workers.flatMap((w) => w.runs)])].filter((v) => v !== '');
        throw versionUnknownError(
          `drained(): no live worker runs version ${JSON.stringify(version)} and no live session is on it (a misspelt name?). Versions there now: ${known.length === 0 ? 'none' : known.map((v) => JSON.stringify(v)).join(', ')}. Pass { ifUnknown: 'resolve' } to take a version that is gone as drained`,
        );
      }
      if (drainedIn(s, version)) return;
      await pause(interval, signal);
    }
  }
}

/** Waits `ms`, or until `signal` aborts (resolves then: the caller's loop throws its reason). */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  // (Aborted during the status read: an abort listener added now would never fire.)
  if (signal?.aborted === true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `[field, value]` pairs of a HGETALL reply (a flat list, or a map by RESP3). */
function pairs(reply: unknown): [string, string][] {
  if (Array.isArray(reply)) {
    const out: [string, string][] = [];
    for (let j = 0; j + 1 < reply.length; j += 2) out.push([String(reply[j]), String(reply[j + 1])]);
    return out;
  }
  if (reply !== null && typeof reply === 'object')
    return Object.entries(reply as Record<string, unknown>).map(([k, v]) => [k, String(v)]);
  return [];
}

/**
 * The versions of a function's live sessions and workers, from any process (a deploy script, an orchestrator's
 * hook): give the function's `client`, `name` and `partitions` as its producer does. See docs/redis/versions.md.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for options the other entry points refuse.
 */
export function redisVersions(options: RedisVersionsOptions): RedisVersions {
  return new Versions(resolveOptions(options, 'redisVersions()', []));
}
