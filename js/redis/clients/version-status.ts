// Versions from outside the workers (an orchestrator, a deploy script): live sessions per version, the live workers
// and what they run, and an awaitable "drained" for a version, read from what the workers keep in Redis (the
// partitions' `:versions` counts, their leases, the function's `:workers` and `:adverts`; docs/redis/storage.md).
import type { Versions as AnyVersions } from '../../durable/common/clients';
import { send } from '../log/connection';
import { type RedisOptions, type Resolved, resolveOptions } from '../log/options';
import { parseAdvert } from '../../durable/common/stored';
import { type VersionStatus, versionStatus } from '../../durable/rules/versions';
import { type DrainedOptions, waitDrained } from '../../durable/common/drained';
import { checkVersionName } from '../../durable/engine/versions';

/** Options of `redisVersions`: those every entry point shares (the function's name, partitions). */
export interface RedisVersionsOptions extends RedisOptions<unknown> {
  /** The function's name in Redis. */
  name: string;
}

export type { DrainedOptions } from '../../durable/common/drained';

/** The versions of a function's sessions and workers; see `redisVersions`. */
export interface RedisVersions extends AnyVersions {
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
    await waitDrained(() => this.status(), version, options);
  }
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
 * hook): give the function's `client`, `name` and `partitions` as its producer does. See docs/durable/versions.md.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for options the other entry points refuse.
 */
export function redisVersions(options: RedisVersionsOptions): RedisVersions {
  return versionsOf(options, 'redisVersions()');
}

/** `redisVersions` for the entry point `what` (named in its errors). */
export function versionsOf(options: RedisVersionsOptions, what: string): RedisVersions {
  return new Versions(resolveOptions(options, what, []));
}
