// The fleet view of velo-stream/dashboard: every process's dashboard publishes its latest sample to a store (Redis
// or Postgres: redis/common/fleet-store.ts, picked by dashboard-fleet-store.ts) under its member id, where it lives
// `ttl` after its last publish by the server's clock (a member's own clock never decides whether it is shown), and
// any dashboard of the fleet reads them all and adds them up. What a store holds is checked here: a value that is
// not a member's sample (written by something else) is ignored, and its member forgotten.
import { hostname } from 'node:os';
import { describe, invalidType, invalidValue, reporterOf } from '../errors';
import type { FleetStore } from '../durable/common/fleet-store';
import { integerOption } from '../validate';
import { type FleetClient, fleetStoreOf } from './dashboard-fleet-store';
import type { FnSample, Sample, WorkerSample } from './dashboard-sample';

/** `dashboard()`'s `fleet` option: where the fleet's samples meet, in Redis or in Postgres. */
export interface FleetOptions {
  /**
   * A connected node-redis client (v5 or v6, single server or Cluster), or a node-postgres `pg.Pool`. Not closed
   * by the dashboard.
   */
  client: FleetClient;
  /** The fleet's name (in Redis keys `velo:dash:{<name>}:…`, in Postgres the rows' `fleet`): one per fleet. Default `'default'`. */
  name?: string;
  /** With a pg.Pool: the schema of velo-stream's tables, made (and migrated) if missing. Default `'velo_stream'`. Not with Redis. */
  schema?: string;
  /** This process's name among the members. Default `<hostname>-<pid>`. Unique per process. */
  id?: string;
  /**
   * Publish this dashboard's sample every `interval` (its sampler then runs all the time, not only while a page
   * is open). Default true; false for a dashboard that only reads the fleet.
   */
  publish?: boolean;
  /** ms a published sample lives (by the server's clock): a member that stops publishing leaves the view this long after. Default 3 × `interval`. */
  ttl?: number;
  /**
   * Called with a failed publish or read (a lost connection): the next one is tried at the next interval. Default:
   * `process.emitWarning`. A throw of it, or a rejection, is a process warning (`ERR_VELO_ON_ERROR`).
   */
  onError?: (error: unknown) => void;
}

/** One member of the fleet as the `fleet` route answers it: its id, when it published, and its sample. */
export interface FleetMember {
  /** Its `fleet.id`. */
  id: string;
  /** When its sample was taken (its clock), ms since the Unix epoch. */
  at: number;
  /**
   * Its latest sample, as its own feed sent it; `workers` and `redis` both hold its workers, whichever one a member
   * of the release before sent (`redis` only).
   */
  sample: Sample;
}

/** One function summed over the fleet's members that show it (by name). */
export interface FleetFnTotals {
  /** The function's name. */
  name: string;
  /** Members showing it. */
  members: number;
  /** Streams open now, summed. */
  open: number;
  /** Streams opened per second, summed. */
  opened: number;
  /** Streams completed per second, summed. */
  completed: number;
  /** Streams failed per second, summed. */
  failed: number;
  /** Streams cancelled per second, summed. */
  cancelled: number;
  /** Opens refused at `maxConcurrent` per second, summed. */
  rejected: number;
  /** Events accepted per second, summed. */
  eventsIn: number;
  /** Outputs yielded per second, summed. */
  eventsOut: number;
  /** The highest member's queue-wait p99, µs (null: no member's events waited in the sample). */
  queueWaitP99Us: number | null;
}

/** One distributed function (by its backend and name) summed over the workers the members show. */
export interface FleetWorkerTotals {
  /** The function's name. */
  name: string;
  /** The backend its workers run on; null for workers shown by a member of the release before, which did not say. */
  backend: WorkerSample['backend'] | null;
  /** Workers shown for it, over all members. */
  workers: number;
  /** Partitions owned by them (each counted once, whichever worker reported it). */
  owned: number;
  /** Entries not yet read, summed. */
  lag: number;
  /** Live sessions, summed. */
  sessions: number;
  /** Events held in memory for a session slot, summed. */
  held: number;
  /** Events read and not yet taken by handlers, summed. */
  buffered: number;
  /** Keys waiting in the log for a slot, summed. */
  waitingKeys: number;
  /** Entries replayed after takeovers, summed. */
  replayed: number;
  /** Calls refused because a lease was gone, summed. */
  fenced: number;
  /** Partitions lost to another worker, summed. */
  lost: number;
  /** Errors passed to `onError`, summed. */
  errors: number;
  /** The highest worker's round-trip p99, ms. */
  roundTripP99Ms: number;
  /** Workers per `version` (`''`: none set). */
  versions: Record<string, number>;
  /** Workers superseded by a newer version (they hand their partitions over; stop them once the old version is drained). */
  superseded: number;
}

/**
 * A distributed function's fleet totals, under their old name.
 * @deprecated Use `FleetWorkerTotals`; `FleetRedisTotals` goes in the next major release.
 */
export type FleetRedisTotals = FleetWorkerTotals;

/** What the `fleet` route answers: every member's latest sample, and their figures summed. */
export interface FleetView {
  /** The fleet's name. */
  fleet: string;
  /** When it was read (this process's clock), ms since the Unix epoch. */
  at: number;
  /** Each member with a live sample, by id. */
  members: FleetMember[];
  /** Each function, by name, summed over the members. */
  functions: FleetFnTotals[];
  /** Each distributed function, by backend and name, summed over its workers. */
  workers: FleetWorkerTotals[];
  /**
   * The same rows as `workers`, under their old name.
   * @deprecated Read `workers`; `redis` goes in the next major release.
   */
  redis: FleetWorkerTotals[];
  /** The fleet has more members than a read returns (`MAX_MEMBERS`, by id order): the sums are of those shown. */
  truncated: boolean;
}

const FLEET_KEYS = ['client', 'name', 'schema', 'id', 'publish', 'ttl', 'onError'];
/** Members a read returns at most (a bigger fleet is cut, by id order). */
export const MAX_MEMBERS = 1000;

/** A fleet's store, and this process's part in it. */
export class Fleet {
  readonly name: string;
  readonly id: string;
  readonly publish: boolean;
  /** The server, as messages name it. */
  readonly server: string;
  readonly #store: FleetStore;
  readonly #ttl: number;
  readonly #onError: (error: unknown) => void;
  /** A publish under way: one at a time (a slow server skips samples rather than queueing them). */
  #publishing = false;
  /** The store's calls under way (each bounded by its `callTimeout`): `leave()` waits for them. */
  readonly #calls = new Set<Promise<unknown>>();
  /** `leave()` was called: nothing more is published. */
  #left = false;
  /** `leave()` resolved: no store call starts and nothing is reported after it (a call still hanging is abandoned). */
  #gone = false;

  constructor(options: FleetOptions, interval: number) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw invalidType(`dashboard(): the "fleet" option must be an object ({ client }). Received ${describe(options)}`);
    }
    for (const key of Object.keys(options)) {
      if (!FLEET_KEYS.includes(key)) {
        throw invalidValue(`dashboard(): unknown fleet option "${key}". Known options: ${FLEET_KEYS.join(', ')}`);
      }
    }
    const { client, name = 'default', schema, id = `${hostname()}-${process.pid}`, publish = true } = options;
    const { ttl = 3 * interval, onError } = options;
    for (const [what, value] of [
      ['name', name],
      ['id', id],
    ] as const) {
      if (typeof value !== 'string')
        throw invalidType(`dashboard(): fleet.${what} must be a string. Received ${describe(value)}`);
      if (!/^[^{}\s\p{Cc}]{1,200}$/u.test(value)) {
        throw invalidValue(
          `dashboard(): fleet.${what} must be 1-200 characters without braces, whitespace or control characters. Received ${describe(value)}`,
        );
      }
    }
    if (typeof publish !== 'boolean')
      throw invalidType(`dashboard(): fleet.publish must be a boolean. Received ${describe(publish)}`);
    integerOption('dashboard()', 'fleet.ttl', ttl, interval, 3_600_000, `from interval (${interval}) to 3600000 (ms)`);
    if (onError !== undefined && typeof onError !== 'function') {
      throw invalidType(`dashboard(): fleet.onError must be a function. Received ${describe(onError)}`);
    }
    this.#store = fleetStoreOf(client, name, schema);
    this.name = name;
    this.id = id;
    this.publish = publish;
    this.server = this.#store.server;
    this.#ttl = ttl;
    this.#onError = reporterOf(onError);
  }

  /** Hands `error` to `onError` (`reporterOf`: a throw there is a warning, and the dashboard goes on). */
  report(error: unknown): void {
    if (!this.#gone) this.#onError(error);
  }

  /** Writes `sample` as this member's latest (a no-op while the previous write is under way). */
  publishSample(sample: Sample): void {
    if (this.#publishing || this.#left) return;
    this.#publishing = true;
    const json = JSON.stringify({ id: this.id, at: sample.at, sample });
    // (A store that throws rather than rejects is reported as a rejection.)
    this.#held(Promise.resolve().then(() => this.#store.publish(this.id, json, this.#ttl))).then(
      () => {
        this.#publishing = false;
      },
      (error: unknown) => {
        this.#publishing = false;
        this.report(error);
      },
    );
  }

  /** Every member's latest sample, and the sums. */
  async read(): Promise<FleetView> {
    const members: FleetMember[] = [];
    const gone: string[] = [];
    // One more than is shown: whether the fleet is larger.
    const rows = await this.#store.read(MAX_MEMBERS + 1);
    const truncated = rows.length > MAX_MEMBERS;
    for (const row of truncated ? rows.slice(0, MAX_MEMBERS) : rows) {
      const member = parse(row.id, row.value);
      if (member === undefined) gone.push(row.id);
      else members.push(member);
    }
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    // Unreadable values: their members are forgotten. One that publishes again comes back.
    if (gone.length > 0) this.#held(this.#store.remove(gone)).catch((e: unknown) => this.report(e));
    const [functions, workers] = [sumFunctions(members), sumWorkers(members)];
    return { fleet: this.name, at: Date.now(), members, functions, workers, redis: workers, truncated };
  }

  /** `call`, held in `#calls` until it settles. */
  #held<T>(call: Promise<T>): Promise<T> {
    this.#calls.add(call);
    const settled = () => this.#calls.delete(call);
    call.then(settled, settled);
    return call;
  }

  /**
   * Leaves the fleet: nothing more is published, the store's calls under way settle (each within its
   * `callTimeout` once sent: their failures are reported before this resolves), and this member's sample is
   * removed. All of it waited for `ttl` at most (a connection the client cannot open holds a call unsent): by then
   * the sample would have expired had this process died. A call still hanging then is abandoned: its outcome is
   * not reported, and the sample is left to expire.
   */
  async leave(): Promise<void> {
    this.#left = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#ttl)));
    const left = (async () => {
      await Promise.allSettled([...this.#calls]);
      if (!this.publish || this.#gone) return;
      try {
        await this.#store.leave(this.id);
      } catch (error) {
        this.report(error);
      }
    })();
    await Promise.race([left, deadline]);
    this.#gone = true;
    clearTimeout(timer);
  }
}

/** A stored member, or undefined when there is none or it is not one (written by something else). */
function parse(id: string, value: unknown): FleetMember | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const m = JSON.parse(value) as Partial<FleetMember> | null;
    const s = m?.sample;
    // A member of the release before sends its workers as `redis` only.
    const workers = Array.isArray(s?.workers) ? s.workers : s?.redis;
    if (typeof m?.at !== 'number' || !Array.isArray(s?.functions) || !Array.isArray(workers)) return undefined;
    return { id, at: m.at, sample: { ...s, workers, redis: workers } };
  } catch {
    return undefined;
  }
}

const FN_SUMS = ['open', 'opened', 'completed', 'failed', 'cancelled', 'rejected', 'eventsIn', 'eventsOut'] as const;

function sumFunctions(members: readonly FleetMember[]): FleetFnTotals[] {
  const byName = new Map<string, FleetFnTotals>();
  for (const m of members) {
    for (const f of m.sample.functions as Partial<FnSample>[]) {
      if (typeof f?.name !== 'string') continue;
      let t = byName.get(f.name);
      if (t === undefined) {
        t = {
          name: f.name,
          members: 0,
          queueWaitP99Us: null,
          ...Object.fromEntries(FN_SUMS.map((k) => [k, 0])),
        } as FleetFnTotals;
        byName.set(f.name, t);
      }
      t.members++;
      for (const k of FN_SUMS) t[k] += num(f[k]);
      if (typeof f.queueWaitP99Us === 'number') t.queueWaitP99Us = Math.max(t.queueWaitP99Us ?? 0, f.queueWaitP99Us);
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const WORKER_SUMS = ['lag', 'sessions', 'held', 'buffered', 'waitingKeys', 'replayed', 'fenced', 'lost', 'errors'] as const;

function sumWorkers(members: readonly FleetMember[]): FleetWorkerTotals[] {
  const byName = new Map<string, FleetWorkerTotals & { partitions: Set<number> }>();
  for (const m of members) {
    for (const w of m.sample.workers as Partial<WorkerSample>[]) {
      if (typeof w?.name !== 'string') continue;
      const backend = w.backend === 'redis' || w.backend === 'postgres' || w.backend === 'memory' ? w.backend : null;
      // Two functions of one name on two backends are two functions (two logs): each its own row.
      const key = `${backend}\n${w.name}`;
      let t = byName.get(key);
      if (t === undefined) {
        t = {
          name: w.name,
          backend,
          workers: 0,
          owned: 0,
          roundTripP99Ms: 0,
          versions: Object.create(null) as Record<string, number>,
          superseded: 0,
          partitions: new Set(),
          ...Object.fromEntries(WORKER_SUMS.map((k) => [k, 0])),
        } as FleetWorkerTotals & { partitions: Set<number> };
        byName.set(key, t);
      }
      t.workers++;
      for (const k of WORKER_SUMS) t[k] += num(w[k]);
      if (Array.isArray(w.owned)) for (const p of w.owned) if (typeof p === 'number') t.partitions.add(p);
      t.roundTripP99Ms = Math.max(t.roundTripP99Ms, num(w.roundTripP99Ms));
      // (A member of a release before versions sends none: counted as '', not superseded.)
      const version = typeof w.version === 'string' ? w.version : '';
      t.versions[version] = (Object.hasOwn(t.versions, version) ? t.versions[version] : 0) + 1;
      if (w.superseded === true) t.superseded++;
    }
  }
  return [...byName.values()]
    .map(({ partitions, ...t }) => ({ ...t, owned: partitions.size }))
    .sort((a, b) =>
      a.name < b.name
        ? -1
        : a.name > b.name
          ? 1
          : String(a.backend) < String(b.backend)
            ? -1
            : String(a.backend) > String(b.backend)
              ? 1
              : 0,
    );
}

/** A figure from another process's sample: a finite number, else 0. */
function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}
