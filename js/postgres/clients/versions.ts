// Versions from outside the workers on Postgres (an orchestrator, a deploy script): live sessions per version, the
// live workers and what they run, and an awaitable "drained" for a version, as `redisVersions` gives them on Redis.
// Read in one statement (one snapshot) from what the workers keep: each partition's `versions` counts (the
// sessions' openings, log/openings.ts) and its lease, and the function's live `workers` with their adverts.
import type { Versions as AnyVersions } from '../../durable/common/clients';
import { type DrainedOptions, waitDrained } from '../../durable/common/drained';
import { parseAdvert } from '../../durable/common/stored';
import { checkVersionName } from '../../durable/engine/versions';
import type { WorkerAdvert } from '../../durable/rules/versions';
import { type VersionStatus, versionStatus } from '../../durable/rules/versions';
import { NOW, run, str } from '../log/sql';
import { type PgResolved, type PoolKey, type PostgresOptions, resolvePgOptions } from './options';

/** Options of `postgresVersions`: those every entry point shares (the pool, the schema, the function's name, partitions). */
export type PostgresVersionsOptions = PostgresOptions<unknown>;

/** The versions of a function's sessions and workers on Postgres; see `postgresVersions`. */
export interface PostgresVersions extends AnyVersions {
  /** The function's partition count. */
  readonly partitions: number;
  /** Reads live sessions per version, live workers and what they own: one statement. */
  status(): Promise<VersionStatus>;
  /**
   * Resolves once `version` is drained: no live session runs on it, and no live worker whose version it is owns a
   * partition. Reads `status()` every `interval` ms until then; rejects as `redisVersions`' `drained()` does.
   */
  drained(version: string, options?: DrainedOptions): Promise<void>;
}

class Versions implements PostgresVersions {
  readonly partitions: number;
  readonly #o: PgResolved<unknown>;

  constructor(o: PgResolved<unknown>) {
    this.#o = o;
    this.partitions = o.partitions;
  }

  async status(): Promise<VersionStatus> {
    await this.#o.prepare();
    const { S, fn } = this.#o.space;
    // Live: a worker registered, a lease held, until after now (the log's rules: heartbeat, acquire).
    const { rows } = await run(
      this.#o.pool,
      `WITH t AS (SELECT ${NOW} AS now)
       SELECT 'w' AS kind, NULL::integer AS p, w.worker AS a, w.advert AS b, NULL::bigint AS n, NULL::bigint AS pos
         FROM ${S}.workers w, t WHERE w.fn = $1 AND w.until_ms > t.now
       UNION ALL
       SELECT 'l', l.p, l.token, NULL, NULL, NULL FROM ${S}.leases l, t
        WHERE l.fn = $1 AND l.token IS NOT NULL AND l.until_ms > t.now AND l.p < $2
       UNION ALL
       SELECT 'v', v.p, v.version, NULL, v.count, v.pos FROM ${S}.versions v WHERE v.fn = $1 AND v.count > 0 AND v.p < $2
       ORDER BY 1, 2, 6`,
      [fn, this.partitions],
    );
    const live = new Set<string>();
    const adverts = new Map<string, WorkerAdvert>();
    const parts = Array.from({ length: this.partitions }, () => ({
      counts: [] as [string, number][],
      holder: null as string | null,
    }));
    for (const r of rows) {
      const a = str(r.a);
      if (r.kind === 'w') {
        live.add(a);
        adverts.set(a, parseAdvert(str(r.b)));
      } else if (r.kind === 'l') parts[Number(r.p)].holder = a.slice(0, Math.max(0, a.lastIndexOf(':')));
      else parts[Number(r.p)].counts.push([a, Number(r.n)]);
    }
    return versionStatus(parts, live, adverts);
  }

  async drained(version: string, options: DrainedOptions = {}): Promise<void> {
    checkVersionName('drained(): version', version);
    await waitDrained(() => this.status(), version, options);
  }
}

/**
 * The versions of a function's live sessions and workers on Postgres, from any process (a deploy script, an
 * orchestrator's hook): give the function's `pool`, `schema`, `name` and `partitions` as its producer does.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` for options the other entry points refuse.
 */
export function postgresVersions(options: PostgresVersionsOptions): PostgresVersions {
  return pgVersionsOf(options, 'postgresVersions()', 'pool');
}

/** `postgresVersions` for the entry point `what` (named in its errors), its pool in the option `poolKey`. */
export function pgVersionsOf(options: PostgresVersionsOptions, what: string, poolKey: PoolKey): PostgresVersions {
  return new Versions(resolvePgOptions(options, what, [], poolKey));
}
