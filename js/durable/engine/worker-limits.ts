// The checks of the worker's options that change what a handler sees, in one place: `redisWorker` and
// `velo-stream/testing` (which runs a handler as the worker does) refuse the same values with the same codes.
import { checkDebounce, type Debounce } from '../../core/debounce';
import { kAsksInputs } from '../../core/protocol';
import { describe, invalidType, invalidValue } from '../../errors';
import type { DebounceConfig } from '../../types';
import { integerOption } from '../../validate';
import { MAX_TIMER_MS } from './owner-writes';

/** The worker's options a handler's run depends on (each optional, with the worker's default). */
export interface WorkerLimits {
  leaseTtl?: number;
  readCount?: number;
  maxBufferedEvents?: number;
  maxSessionEvents?: number;
  maxSessionAge?: number;
  maxSessionTimers?: number;
  maxCheckpointBytes?: number;
  maxJournalBytes?: number;
  checkReplay?: boolean;
  /**
   * Debounce per key, on the log's clock: each key's bursts collapse to one event (the last after a quiet period,
   * or the first at once), with the settings of in-process sessions' `debounce` (docs/durable/debounce.md).
   */
  debounce?: DebounceConfig;
  /**
   * Per-key state beyond a session (opt-in): a session's last checkpoint is kept as its key's state when it ends,
   * for `retention` ms, and the key's next session starts from it (`ctx.restored`). Default none
   * (docs/durable/key-state.md).
   */
  keyState?: KeyStateOptions;
}

/** The `keyState` option of `redisWorker` (and of `velo-stream/testing`). */
export interface KeyStateOptions {
  /**
   * How long a key's state is kept after the commit that ended its last session, ms (Redis expires it: `PEXPIRE`):
   * an integer from 1 to 10 years (315 360 000 000). A session whose first event comes later starts without it.
   */
  retention: number;
}

/** The worker's limits, checked: each with its default; `debounce` and `keyState` null when not given. */
export type CheckedLimits = Required<Omit<WorkerLimits, 'debounce' | 'keyState'>> & {
  debounce: Debounce | null;
  keyState: { readonly retention: number } | null;
};

/** The longest `keyState.retention`, ms: ten years. */
export const MAX_RETENTION_MS = 315_360_000_000;

/** Checks the `keyState` option of entry point `what` (a hostile value gets a coded error): null when not given. */
export function checkKeyState(what: string, value: unknown): { readonly retention: number } | null {
  if (value === undefined) return null;
  if (value === null || typeof value !== 'object')
    throw invalidType(`${what}: options.keyState must be an object { retention }, not ${describe(value)}`);
  let retention: unknown;
  let keys: string[];
  try {
    keys = Object.keys(value);
    retention = (value as { retention?: unknown }).retention;
  } catch (error) {
    throw invalidType(`${what}: options.keyState cannot be read (${describe(value)})`, error);
  }
  for (const key of keys)
    if (key !== 'retention') throw invalidValue(`${what}: unknown option "keyState.${key}". Known options: keyState.retention`);
  integerOption(what, 'keyState.retention', retention, 1, MAX_RETENTION_MS, `from 1 to ${MAX_RETENTION_MS} (ms)`);
  return { retention: retention as number };
}

/** `debounce` filters a handler's input: it needs a stream function of one handler. */
export function checkDebounceTarget(what: string, debounce: Debounce | null, fn: unknown): void {
  if (debounce !== null && (fn as { [kAsksInputs]?: unknown } | null)?.[kAsksInputs] !== true)
    throw invalidValue(
      `${what}: "debounce" needs a stream function of one handler (async function*): a pipe, a task() or batch() stage, or a workerFn takes its input otherwise`,
    );
}

/** Their names, for the list of known options. */
export const LIMIT_KEYS: readonly string[] = [
  'leaseTtl',
  'readCount',
  'maxBufferedEvents',
  'maxSessionEvents',
  'maxSessionAge',
  'maxSessionTimers',
  'maxCheckpointBytes',
  'maxJournalBytes',
  'checkReplay',
  'debounce',
  'keyState',
];

/** Checks `limits` for entry point `what` with `partitions` partitions; each filled in with its default. */
export function checkLimits(what: string, limits: WorkerLimits, partitions: number): CheckedLimits {
  const {
    leaseTtl = 10_000,
    readCount = 256,
    maxBufferedEvents = Math.max(65_536, partitions),
    maxSessionEvents = 0,
    maxSessionAge = 0,
    maxSessionTimers = 1000,
    maxCheckpointBytes = 1 << 20,
    maxJournalBytes = 16 << 20,
    checkReplay = false,
    debounce,
    keyState,
  } = limits;
  // (At most a Node timer's longest delay: the lease's timers are set from it.)
  integerOption(what, 'leaseTtl', leaseTtl, 300, MAX_TIMER_MS, `from 300 to ${MAX_TIMER_MS} (ms)`);
  integerOption(what, 'readCount', readCount, 1, 10_000);
  integerOption(
    what,
    'maxBufferedEvents',
    maxBufferedEvents,
    partitions,
    1e9,
    `from options.partitions (${partitions}: one event per partition) to 1e9`,
  );
  integerOption(what, 'maxSessionEvents', maxSessionEvents, 0, Infinity, 'of at least 0 (0: no cap)');
  // At most Node's longest timer (about 24.8 days): the age marker's timer would fire at once past it.
  integerOption(what, 'maxSessionAge', maxSessionAge, 0, MAX_TIMER_MS, `from 0 to ${MAX_TIMER_MS} (ms; 0: no cap)`);
  integerOption(what, 'maxSessionTimers', maxSessionTimers, 1, 1e6);
  integerOption(what, 'maxCheckpointBytes', maxCheckpointBytes, 1, 512 << 20);
  integerOption(what, 'maxJournalBytes', maxJournalBytes, 1, 2 ** 31 - 1);
  if (typeof checkReplay !== 'boolean')
    throw invalidType(`${what}: options.checkReplay must be a boolean, not ${describe(checkReplay)}`);
  return {
    leaseTtl,
    readCount,
    maxBufferedEvents,
    maxSessionEvents,
    maxSessionAge,
    maxSessionTimers,
    maxCheckpointBytes,
    maxJournalBytes,
    checkReplay,
    debounce: debounce === undefined ? null : checkDebounce(debounce, what),
    keyState: checkKeyState(what, keyState),
  };
}
