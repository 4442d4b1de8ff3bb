// Versions of a distributed stream function's handler: which version a worker runs, which workers step aside for
// newer ones, as pure rules of what the workers advertise (no I/O). Where a session's version is kept and read is
// the log's job (`SessionOpening`); the rule a worker applies to each session is in `PartitionRun.#open`: a session
// that wrote anything runs on the version it opened with, any other opens on its owner's version.
import { describe, invalidType, invalidValue } from '../../errors';
import type { StreamFn } from '../../types';
import { type Openable, kOpen } from '../../core/protocol';
import { NO_VERSION } from '../common/stored';
import type { WorkerAdvert } from '../common/transport';

/** What a version name may be: 1-64 letters, digits, `.`, `_` or `-`. */
const VERSION_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** The handlers of a worker, by version: its own, and the older ones it still runs (`versions`). */
export interface WorkerVersions<I, O> {
  /** The version new sessions open on (`''`: none set). */
  readonly version: string;
  /** Its advert: its version, and every version it runs (its own first). */
  readonly advert: WorkerAdvert;
  /** The function of each version it runs (not its own: that is `fn`). */
  readonly older: ReadonlyMap<string, StreamFn<I, O> & Openable<I, O>>;
  /** `migrate`: adopts a session of a version it does not run from its checkpoint, or null. */
  readonly migrate: ((state: unknown, fromVersion: string) => unknown) | null;
  /** What it passes to the lease script as the versions it runs: its own and `versions`, or `'*'` with `migrate`. */
  readonly takes: readonly string[];
}

/** A version name, checked (`where` names it in the error). */
export function checkVersionName(where: string, value: unknown): string {
  if (typeof value !== 'string') throw invalidType(`${where} must be a string, not ${describe(value)}`);
  if (!VERSION_NAME.test(value) || value === '__proto__')
    throw invalidValue(
      `${where} must be 1-64 letters, digits, '.', '_' or '-', and not "__proto__". Received ${describe(value)}`,
    );
  return value;
}

/**
 * Checks `redisWorker`'s `version` and `versions` options. `versions` needs `version`: the older handlers a worker
 * keeps are for sessions that opened on them before the worker's own version came.
 */
export function checkVersions<I, O>(version: unknown, versions: unknown, migrate: unknown): WorkerVersions<I, O> {
  const older = new Map<string, StreamFn<I, O> & Openable<I, O>>();
  if (version === undefined) {
    if (versions !== undefined)
      throw invalidValue('redisWorker(): the "versions" option needs "version" (the version new sessions open on)');
    if (migrate !== undefined)
      throw invalidValue('redisWorker(): the "migrate" option needs "version" (the version sessions are migrated to)');
    return { version: '', advert: NO_VERSION, older, migrate: null, takes: [''] };
  }
  if (migrate !== undefined && typeof migrate !== 'function')
    throw invalidType(
      `redisWorker(): options.migrate must be a function (state, fromVersion) => state, not ${describe(migrate)}`,
    );
  const own = checkVersionName('redisWorker(): options.version', version);
  if (versions !== undefined) {
    // A plain object (a Map, an array or a class instance would hide its versions from Object.entries).
    let plain = false;
    let entries: [string, unknown][] = [];
    try {
      if (versions !== null && typeof versions === 'object' && !Array.isArray(versions)) {
        const proto: unknown = Object.getPrototypeOf(versions);
        plain = proto === Object.prototype || proto === null;
        if (plain) entries = Object.entries(versions);
      }
    } catch (error) {
      throw invalidType(`redisWorker(): options.versions could not be read (${describe(error)})`, error);
    }
    if (!plain)
      throw invalidType(
        `redisWorker(): options.versions must be a plain object (version -> stream function), not ${describe(versions)}`,
      );
    for (const [name, fn] of entries) {
      checkVersionName(`redisWorker(): a key of options.versions`, name);
      if (name === own)
        throw invalidValue(
          `redisWorker(): options.versions names ${JSON.stringify(name)}, the worker's own version: its function is redisWorker's first argument`,
        );
      if (typeof (fn as Partial<Openable<I, O>> | null)?.[kOpen] !== 'function')
        throw invalidType(
          `redisWorker(): options.versions[${JSON.stringify(name)}] must be a stream function (from streamFn()), not ${describe(fn)}`,
        );
      older.set(name, fn as StreamFn<I, O> & Openable<I, O>);
    }
  }
  const runs = [own, ...older.keys()];
  return {
    version: own,
    // A worker that migrates runs any session: '*' in its advert.
    advert: { version: own, runs: migrate === undefined ? runs : [...runs, '*'] },
    older,
    migrate: (migrate as WorkerVersions<I, O>['migrate'] | undefined) ?? null,
    takes: migrate === undefined ? runs : ['*'],
  };
}

/** The versions a worker runs, with `''` (sessions that opened with no version run on any worker). */
function runs(a: WorkerAdvert): Set<string> {
  return new Set(['', ...a.runs]);
}

/**
 * `a` supersedes `b`: `a` runs every version `b` runs, and more (a worker that migrates runs them all). A superseded worker takes no partition and hands
 * over those it has (its sessions go on, on their versions, at a worker that runs them all), so that new sessions
 * open on the newer version as soon as a worker of it is live. Workers that run the same versions, or versions
 * neither has all of, both go on.
 */
export function supersedes(a: WorkerAdvert, b: WorkerAdvert): boolean {
  // A worker that migrates (`'*'`) runs any session: it supersedes every worker that does not. Of two that migrate,
  // the one that also runs every version the other runs, and more, supersedes it (a release that keeps the last
  // one's handler), as for workers that do not.
  const any = (w: WorkerAdvert): boolean => w.runs.includes('*');
  if (any(a) !== any(b)) return any(a);
  const ra = runs(a);
  const rb = runs(b);
  if (ra.size <= rb.size) return false;
  for (const v of rb) if (!ra.has(v)) return false;
  return true;
}

/**
 * Of the live workers (`live` of them; `adverts` of those that say what they run: a worker of an older release
 * says nothing, and is taken to run no version), how many take partitions (none supersedes them), and whether
 * `me` is superseded.
 */
export function activeWorkers(
  adverts: ReadonlyMap<string, WorkerAdvert>,
  live: number,
  me: string,
): { readonly active: number; readonly superseded: boolean; readonly others: readonly WorkerAdvert[] } {
  const all = [...adverts.values()];
  const isSuperseded = (a: WorkerAdvert): boolean => all.some((b) => supersedes(b, a));
  let active = Math.max(0, live - adverts.size);
  // A worker with no advert runs no version: superseded by any worker with one.
  if (active > 0 && all.some((b) => supersedes(b, NO_VERSION))) active = 0;
  let superseded = false;
  const others: WorkerAdvert[] = [];
  for (const [id, a] of adverts) {
    if (!isSuperseded(a)) {
      active++;
      if (id !== me) others.push(a);
    } else if (id === me) superseded = true;
  }
  return { active, superseded, others };
}

/** Whether a worker that advertises `a` runs every one of `versions` (`''`: any worker does). */
export function runsAll(a: WorkerAdvert, versions: Iterable<string>): boolean {
  if (a.runs.includes('*')) return true;
  for (const v of versions) if (v !== '' && !a.runs.includes(v)) return false;
  return true;
}

/**
 * Whether the active workers (`others`, and `mine`) run different sets of versions: then partitions may be refused to
 * some. Superseded workers take no part (they take nothing and hand everything over).
 */
export function mixedVersions(mine: WorkerAdvert, others: readonly WorkerAdvert[]): boolean {
  const key = (a: WorkerAdvert): string => [...a.runs].sort().join(' ');
  return others.some((a) => key(a) !== key(mine));
}
