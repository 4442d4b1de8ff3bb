// Waiting for a handler version to drain, on any backend: the `drained()` of a versions reader (Redis' and
// Postgres'), given its `status()` read. The options are checked here; the version's name by the caller.
import { describe, invalidType, invalidValue, outOfRange, versionUnknownError } from '../../errors';
import { type VersionStatus, drainedIn } from '../rules/versions';
import { pause } from '../../watch-abort';

/** The options `drained()` knows. */
const DRAINED_OPTIONS = ['signal', 'interval', 'ifUnknown'];

/** Options of `drained()`. */
export interface DrainedOptions {
  /** Stops waiting: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** How often the status is read, ms. Default 1000. */
  readonly interval?: number;
  /**
   * What a version is taken for that, at the first read, no live worker runs and no live session is on (a
   * misspelt name, or a version long gone): `'reject'` (the default) rejects with `ERR_VELO_VERSION_UNKNOWN`,
   * `'resolve'` takes it as drained.
   */
  readonly ifUnknown?: 'reject' | 'resolve';
}

/**
 * Resolves once `version` (a checked name) is drained in `status()`, read every `interval` ms (see
 * `RedisVersions.drained`); rejects for bad options, an unknown version (unless `ifUnknown: 'resolve'`), an abort,
 * or a read that failed.
 */
export async function waitDrained(
  status: () => Promise<VersionStatus>,
  version: string,
  options: DrainedOptions = {},
): Promise<void> {
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
    const s = await status();
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
