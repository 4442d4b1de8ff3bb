// A worker's versions as its options give them: its own, the older handlers it keeps, `migrate`, and its advert.
// The rules over adverts (who supersedes whom, shares) are rules/versions.ts.
import { NO_VERSION } from '../rules/versions';
import { describe, invalidType, invalidValue } from '../../errors';
import type { StreamFn } from '../../types';
import { type Openable, kOpen } from '../../core/protocol';
import type { WorkerAdvert } from '../rules/versions';

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
  if (value === '__proto__') throw invalidValue(`${where} must be a name, not "__proto__"`);
  if (!VERSION_NAME.test(value))
    throw invalidValue(`${where} must be 1-64 letters, digits, '.', '_' or '-'. Received ${describe(value)}`);
  return value;
}

/**
 * Checks a worker's `version`, `versions` and `migrate` options (`what` names the entry point called in its errors).
 * `versions` needs `version`: the older handlers a worker keeps are for sessions that opened on them before the
 * worker's own version came.
 */
export function checkVersions<I, O>(version: unknown, versions: unknown, migrate: unknown, what: string): WorkerVersions<I, O> {
  const older = new Map<string, StreamFn<I, O> & Openable<I, O>>();
  if (version === undefined) {
    if (versions !== undefined)
      throw invalidValue(`${what}: the "versions" option needs "version" (the version new sessions open on)`);
    if (migrate !== undefined)
      throw invalidValue(`${what}: the "migrate" option needs "version" (the version sessions are migrated to)`);
    return { version: '', advert: NO_VERSION, older, migrate: null, takes: [''] };
  }
  if (migrate !== undefined && typeof migrate !== 'function')
    throw invalidType(`${what}: options.migrate must be a function (state, fromVersion) => state, not ${describe(migrate)}`);
  // An async function can only return a promise, which an adoption refuses: refused here, before any session fails.
  if (typeof migrate === 'function' && (migrate as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === 'AsyncFunction')
    throw invalidType(
      `${what}: options.migrate must return the state itself, synchronously; an async function returns a promise`,
    );
  const own = checkVersionName(`${what}: options.version`, version);
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
      throw invalidType(`${what}: options.versions could not be read (${describe(error)})`, error);
    }
    if (!plain)
      throw invalidType(
        `${what}: options.versions must be a plain object (version -> stream function), not ${describe(versions)}`,
      );
    for (const [name, fn] of entries) {
      checkVersionName(`${what}: a key of options.versions`, name);
      if (name === own)
        throw invalidValue(
          `${what}: options.versions names ${JSON.stringify(name)}, the worker's own version: its function is the first argument`,
        );
      if (typeof (fn as Partial<Openable<I, O>> | null)?.[kOpen] !== 'function')
        throw invalidType(
          `${what}: options.versions[${JSON.stringify(name)}] must be a stream function (from streamFn()), not ${describe(fn)}`,
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
