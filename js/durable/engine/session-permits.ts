// Limiters used by a worker's sessions (`sessionWorker(fn, { limiter: { session, step } })`): a permit of every
// limiter of `session` for each session, from before it opens to its end, and of every limiter of `step` for each
// input its handler takes, from before it is given to the handler's next ask.
//
// A wait for a permit is like a slow handler: the session rule decides by log times only, so it changes neither
// which inputs a session takes nor where it ends. A key whose next session waits holds its entries as a key waits
// for a session slot (held, past the bound left in the pending list: held-entries.ts), and so do the entries of a
// session whose handler waits for a step's permit: other keys of the partition go on. An acquire that fails (the
// limiter refused it: its key or cost function, a full line, a closed limiter, Redis away under 'fail-closed') is
// reported through `onError` (at most one report per second per worker) and made again later: nothing a reader
// sees depends on it.
import { describe, invalidType, invalidValue, sessionPermitError } from '../../errors';
import { integerOption } from '../../validate';
import { isLocalLimiter } from '../../limits/local';
import { isLimiter } from '../../limits/use';
import type { Limiter, Permit } from '../../limits/types';
import type { Clock, ClockTimer } from '../common/clock';
import { kAsksInputs } from '../../core/protocol';

/**
 * What the limiters of a worker's `limiter` option get as their item (their `key` and `cost` functions): the
 * session's key and id, and the input the permit is for.
 */
export interface SessionPermitItem<I = unknown> {
  /** The session's key. */
  readonly key: string;
  /** The session's id, `<key>@<first entry id>` (a session restored from its checkpoint: the id it had). */
  readonly sid: string;
  /**
   * `'event'`: an event of the log (`session`: the session's first; `step`: the input about to be taken);
   * `'timer'`: a timer's payload (`step` only); `'restored'`: a session started again from its checkpoint after a
   * takeover (`session` only), with no event of its own.
   */
  readonly input: 'event' | 'timer' | 'restored';
  /** The event or timer payload as decoded by the codec (decoded when read); undefined if it cannot be, or `'restored'`. */
  readonly event: I | undefined;
}

/** One or more limiters (an array: a permit of each, taken in its order, released together). */
export type SessionLimiters<I> = Limiter<SessionPermitItem<I>> | readonly Limiter<SessionPermitItem<I>>[];

/** A worker's `limiter` option. At least one of `session` and `step`. */
export interface WorkerLimiterOptions<I = unknown> {
  /**
   * A permit of each for every session: taken before the session opens (its key's events wait meanwhile, other
   * keys go on), given back when it ends (idle, a cap, its handler's return or throw, a hand-off or a lost lease,
   * `close()`).
   */
  session?: SessionLimiters<I>;
  /**
   * A permit of each for every input a session's handler takes (an event or a timer), taken before the input is
   * given, given back when the handler asks for its next input or the session ends. Needs a stream function of
   * one handler (its streams ask for each input): not a pipe, a `task()`/`batch()` stage or a `workerFn`.
   */
  step?: SessionLimiters<I>;
  /**
   * Keys whose next session may wait for its `session` permits at once in this worker (each an acquire in the
   * limiters' lines); further keys wait, in log order, without asking yet. An integer from 1 to 1e6. Default 1000.
   */
  maxWaiting?: number;
}

const KNOWN = ['session', 'step', 'maxWaiting'];
/** `maxWaiting`'s default. */
const MAX_WAITING_DEFAULT = 1000;
/** A failed acquire is made again after this (ms), twice as long each time, up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;
/** At most one failed acquire per this many ms is reported through `onError` (the others are counted). */
const REPORT_EVERY_MS = 1000;

/** The `limiter` option checked: its limiter lists (empty: none), and `maxWaiting`. */
export interface CheckedLimiter {
  readonly session: readonly Limiter<unknown>[];
  readonly step: readonly Limiter<unknown>[];
  readonly maxWaiting: number;
}

function read(what: string, options: object, field: string): unknown {
  try {
    return (options as Record<string, unknown>)[field];
  } catch (error) {
    throw invalidType(`${what}: the "limiter.${field}" option could not be read (${describe(error)})`, error);
  }
}

/** Whether a limiter refuses the excess ('reject' mode) rather than queueing it; false if it does not say. */
function rejects(l: Limiter<unknown>): boolean {
  if (isLocalLimiter(l)) return l.rejects;
  try {
    return (l as { rejects?: unknown }).rejects === true;
  } catch {
    return false;
  }
}

/**
 * Checks a worker's `limiter` option for `fn` (`what` names the entry point called in its errors). Undefined: none.
 * Refused: anything but an options object with `session` and/or `step` (limiters, or non-empty arrays of them) and an
 * integer `maxWaiting`; a limiter in 'reject' mode (a session or step would be dropped, and a replay could drop
 * another); a limiter given twice (a session and its step holding two permits of one concurrency limit can wait for
 * each other for ever); `step` with a function whose streams do not ask for their inputs one at a time.
 */
export function checkWorkerLimiter(what: string, value: unknown, fn: unknown): CheckedLimiter | undefined {
  if (value === undefined) return undefined;
  let tag: string | undefined;
  try {
    tag = value !== null && typeof value === 'object' ? Object.prototype.toString.call(value) : undefined;
  } catch (error) {
    throw invalidType(`${what}: the "limiter" option could not be read (${describe(error)})`, error);
  }
  if (tag !== '[object Object]' || isLimiterLike(value)) {
    throw invalidType(
      `${what}: the "limiter" option must be an object such as { session: limiter } or { step: limiter }. Received ${describe(value)}`,
    );
  }
  let keys: string[];
  try {
    keys = Object.keys(value as object);
  } catch (error) {
    throw invalidType(`${what}: the "limiter" option could not be read (${describe(error)})`, error);
  }
  for (const key of keys) {
    if (!KNOWN.includes(key))
      throw invalidValue(
        `${what}: unknown option "limiter.${key}". Known options: ${KNOWN.map((k) => `limiter.${k}`).join(', ')}`,
      );
  }
  const session = limiterList(what, read(what, value as object, 'session'), 'session');
  const step = limiterList(what, read(what, value as object, 'step'), 'step');
  if (session.length === 0 && step.length === 0)
    throw invalidValue(`${what}: the "limiter" option needs "session" or "step" (a limiter, or an array of them)`);
  const maxWaitingValue = read(what, value as object, 'maxWaiting');
  const maxWaiting =
    maxWaitingValue === undefined
      ? MAX_WAITING_DEFAULT
      : integerOption(what, 'limiter.maxWaiting', maxWaitingValue, 1, 1e6, 'from 1 to 1e6');
  const all = [...session, ...step];
  if (new Set(all).size < all.length) {
    throw invalidValue(
      `${what}: a limiter is given twice in the "limiter" option: a session would hold two of its permits, and may wait for itself`,
    );
  }
  for (const l of all) {
    if (rejects(l)) {
      throw invalidValue(
        `${what}: limiter "${nameOf(l)}" is in 'reject' mode: a worker's sessions wait for their permits (a refused session or step would be dropped where a replay might not drop it); use 'throttle'`,
      );
    }
  }
  if (step.length > 0 && (fn as { [kAsksInputs]?: unknown } | null)?.[kAsksInputs] !== true) {
    throw invalidValue(
      `${what}: "limiter.step" needs a stream function of one handler (async function*): a pipe, a task() or batch() stage, or a workerFn does not ask for its inputs one at a time`,
    );
  }
  return { session, step, maxWaiting };
}

function nameOf(l: Limiter<unknown>): string {
  try {
    return String(l.name);
  } catch {
    return '(its name cannot be read)';
  }
}

function isLimiterLike(value: unknown): boolean {
  try {
    return typeof (value as { acquire?: unknown }).acquire === 'function';
  } catch {
    return false;
  }
}

/** `limiter.<field>`: none, a limiter, or a non-empty array of them (copied: a later change of the array does nothing). */
function limiterList(what: string, value: unknown, field: string): readonly Limiter<unknown>[] {
  if (value === undefined) return [];
  let list: unknown[];
  try {
    list = Array.isArray(value) ? [...(value as unknown[])] : [value];
  } catch (error) {
    throw invalidType(`${what}: the "limiter.${field}" option could not be read (${describe(error)})`, error);
  }
  if (list.length === 0 || !list.every(isLimiter)) {
    throw invalidType(
      `${what}: the "limiter.${field}" option must be a limiter (made by limiter() or fleetLimiter(), or any object with acquire, tryAcquire and stats) or a non-empty array of them. Received ${describe(value)}`,
    );
  }
  return list;
}

/** `SessionPermitItem`, its event decoded when first read. */
export class PermitItem implements SessionPermitItem {
  #decode: (() => unknown) | undefined;
  #event: unknown = undefined;
  constructor(
    readonly key: string,
    readonly sid: string,
    readonly input: 'event' | 'timer' | 'restored',
    decode: (() => unknown) | undefined,
  ) {
    this.#decode = decode;
  }
  get event(): unknown {
    const decode = this.#decode;
    if (decode !== undefined) {
      this.#decode = undefined;
      try {
        this.#event = decode();
      } catch {
        this.#event = undefined;
      }
    }
    return this.#event;
  }
  toJSON(): object {
    return { key: this.key, sid: this.sid, input: this.input, event: this.event };
  }
}

/** A `Grant`'s state. */
export const enum GrantState {
  /** Acquiring (or waiting to acquire again after a failure). */
  Waiting,
  /** Every permit is held. */
  Granted,
  /** Given back (or never to be granted: the session ended first). */
  Released,
}

/**
 * One session's (or one step's) permits of every limiter of a list, taken in its order. Granted at once when every
 * limiter has one now (`tryAcquire`), else acquired in the background; `release()` gives back what it holds and
 * stops a wait.
 */
export class Grant {
  state = GrantState.Waiting;
  readonly permits: Permit[] = [];
  /** Clock time it was asked, and how long it waited (ms) once granted. */
  readonly since: number;
  waitedMs = 0;
  /** Called once when a grant that waited is granted. */
  onGranted: (() => void) | null = null;
  #controller: AbortController | null = null;
  #retry: ClockTimer | null = null;
  #delay = RETRY_MIN_MS;

  constructor(
    readonly owner: WorkerPermits,
    readonly kind: 'session' | 'step',
    readonly limiters: readonly Limiter<unknown>[],
    readonly item: SessionPermitItem,
  ) {
    this.since = owner.clock.now();
  }

  /** It waited: acquired in the background, or asked again after a failure (its end wakes the partitions). */
  waited = false;

  /** Takes what is free now, in order: `'granted'` (every permit held), `'wait'` (one is not free now), `'failed'`. */
  tryNow(): 'granted' | 'wait' | 'failed' {
    const limiters = this.limiters;
    for (let i = this.permits.length; i < limiters.length; i++) {
      let permit: Permit | undefined;
      try {
        permit = limiters[i].tryAcquire(this.item);
      } catch (error) {
        this.#failed(limiters[i], error);
        return 'failed';
      }
      if (permit === undefined) return 'wait';
      this.permits.push(permit);
    }
    this.#granted();
    return 'granted';
  }

  /** Acquires the rest (waits in the limiters' lines), then calls `onGranted`. */
  async acquireRest(): Promise<void> {
    this.waited = true;
    const controller = new AbortController();
    this.#controller = controller;
    const limiters = this.limiters;
    for (let i = this.permits.length; i < limiters.length; i++) {
      let permit: Permit;
      try {
        permit = await limiters[i].acquire(this.item, { signal: controller.signal });
      } catch (error) {
        if (this.state === GrantState.Released || controller.signal.aborted) return;
        this.#failed(limiters[i], error);
        return;
      }
      if (this.state === GrantState.Released) {
        permit.release();
        this.owner.track(permit);
        return;
      }
      this.permits.push(permit);
    }
    this.#controller = null;
    this.#granted();
    this.onGranted?.();
  }

  #granted(): void {
    if (this.state !== GrantState.Waiting) return;
    this.state = GrantState.Granted;
    this.waitedMs = Math.max(0, this.owner.clock.now() - this.since);
    this.owner.settled(this, true);
  }

  /** An acquire failed: what was held goes back, the failure is reported, and it is asked again later. */
  #failed(limiter: Limiter<unknown>, error: unknown): void {
    this.waited = true;
    this.#giveBack();
    this.owner.failed(this, limiter, error);
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, RETRY_MAX_MS);
    this.#retry = this.owner.clock.setTimeout(() => {
      this.#retry = null;
      if (this.state !== GrantState.Waiting) return;
      const now = this.tryNow();
      if (now === 'wait') void this.acquireRest();
      else if (now === 'granted') this.onGranted?.();
    }, delay);
    this.#retry.unref();
  }

  #giveBack(): void {
    for (let i = this.permits.length - 1; i >= 0; i--) {
      this.permits[i].release();
      this.owner.track(this.permits[i]);
    }
    this.permits.length = 0;
  }

  /** Gives back every permit held, and stops waiting (once; later calls do nothing). */
  release(): void {
    if (this.state === GrantState.Released) return;
    const was = this.state;
    this.state = GrantState.Released;
    this.onGranted = null;
    this.#controller?.abort(new Error('velo-stream: the session no longer needs its permit'));
    this.#controller = null;
    if (this.#retry !== null) this.owner.clock.clearTimeout(this.#retry);
    this.#retry = null;
    this.#giveBack();
    this.owner.settled(this, was === GrantState.Granted ? 'released' : false);
  }
}

/** Whether the session's handler waits for its step's permits (its next input is decided, and given once they come). */
export function waitsForStep(s: { readonly step: Grant | null }): boolean {
  return s.step !== null && s.step.state === GrantState.Waiting;
}

/**
 * A worker's use of its limiters: the grants of its sessions and steps, what waits, the budget of keys waiting
 * (`maxWaiting`), the failures' reports, and the partitions to wake when a permit is granted or the budget frees.
 */
export class WorkerPermits {
  readonly session: readonly Limiter<unknown>[];
  readonly step: readonly Limiter<unknown>[];
  readonly maxWaiting: number;
  /** Keys whose next session waits for its permits. */
  waitingSessions = 0;
  /** Sessions whose handler waits for a step's permits. */
  waitingSteps = 0;
  /** Grants held now (sessions' and steps'). */
  held = 0;
  /** Acquires that failed (each made again later). */
  failures = 0;
  /** Every grant not released. */
  readonly #grants = new Set<Grant>();
  /** Releases of `redisLimiter` permits still on their way to Redis (close() waits for them). */
  readonly #releasing = new Set<Promise<unknown>>();
  /** Called (once per turn) when a grant that waited is granted, or a wait ends: partitions drain their held keys. */
  readonly #wakes = new Set<() => void>();
  #waking = false;
  #reportedAt = -Infinity;

  constructor(
    checked: CheckedLimiter,
    readonly clock: Clock,
    readonly report: (error: unknown) => void,
  ) {
    this.session = checked.session;
    this.step = checked.step;
    this.maxWaiting = checked.maxWaiting;
  }

  /**
   * A grant of `kind`'s limiters for `item`: granted now if every permit is free now; else, if it may wait
   * (`step`, or fewer than `maxWaiting` sessions wait), waiting (`onGranted` is called once it is granted);
   * else undefined (nothing held: the key waits without asking, until `wake`).
   */
  start(kind: 'session' | 'step', item: SessionPermitItem): Grant | undefined {
    const grant = new Grant(this, kind, kind === 'session' ? this.session : this.step, item);
    this.#grants.add(grant);
    if (kind === 'session') this.waitingSessions++;
    else this.waitingSteps++;
    const now = grant.tryNow();
    if (now === 'granted') return grant;
    // (A failed one stays: it is asked again later, and a release now would wake its key at once, again and again.)
    if (now === 'wait' && kind === 'session' && this.waitingSessions > this.maxWaiting) {
      grant.release();
      return undefined;
    }
    if (now === 'wait') void grant.acquireRest();
    return grant;
  }

  /** A grant stopped waiting (`granted`), or was released (`'released'` if it held its permits). */
  settled(grant: Grant, how: true | false | 'released'): void {
    if (how === 'released') {
      this.held--;
      this.#grants.delete(grant);
      return;
    }
    if (grant.kind === 'session') this.waitingSessions--;
    else this.waitingSteps--;
    if (how === true) this.held++;
    else this.#grants.delete(grant);
    // A key may ask now (the budget has room), or the key granted may open its session. (Not for a grant that
    // never waited: granted at once, or refused a place in the budget, which must not wake the key again.)
    if (grant.waited) this.#wakeAll();
  }

  /** A failed acquire: counted, and reported unless one was reported less than a second ago. */
  failed(grant: Grant, limiter: Limiter<unknown>, error: unknown): void {
    this.failures++;
    const now = this.clock.now();
    if (now - this.#reportedAt < REPORT_EVERY_MS) return;
    this.#reportedAt = now;
    let code: unknown;
    try {
      code = (error as { code?: unknown } | null)?.code;
    } catch {
      code = undefined;
    }
    const name = nameOf(limiter);
    this.report(
      sessionPermitError(
        name,
        grant.kind,
        `Limiter "${name}" did not grant the permit of ${grant.kind === 'session' ? 'session' : 'a step of session'} ${JSON.stringify(grant.item.sid)}${typeof code === 'string' ? ` (${code})` : ''}: it waits, and the worker asks again (${this.failures} failed acquires so far)`,
        error,
      ),
    );
  }

  /** A permit given back: its release, if it goes to Redis, is waited for by `drained()`. */
  track(permit: Permit): void {
    let released: unknown;
    try {
      const method = (permit as { released?: unknown }).released;
      if (typeof method !== 'function') return;
      released = (method as () => unknown).call(permit);
    } catch {
      return;
    }
    if (!(released instanceof Promise)) return;
    const settled = Promise.resolve(released)
      .catch(() => {})
      .finally(() => this.#releasing.delete(settled));
    this.#releasing.add(settled);
  }

  /** `wake` is called when a grant is granted or a wait ends (a partition's run, while it lasts). */
  onWake(wake: () => void): () => void {
    this.#wakes.add(wake);
    return () => this.#wakes.delete(wake);
  }

  #wakeAll(): void {
    if (this.#waking || this.#wakes.size === 0) return;
    this.#waking = true;
    this.clock.setImmediate(() => {
      this.#waking = false;
      for (const wake of [...this.#wakes]) wake();
    });
  }

  /** Gives back every grant still held and stops every wait (a close past its deadline). */
  releaseAll(): void {
    for (const grant of [...this.#grants]) grant.release();
  }

  /** Resolves once the releases sent to Redis have been answered (or failed). */
  async drained(): Promise<void> {
    while (this.#releasing.size > 0) await Promise.all([...this.#releasing]);
  }
}
