// The rule of a Redis session: which input a session takes next, and where it ends. Pure: no I/O, no promise, no
// clock of its own, no timer; every time is Redis' clock (entry ids' times, timers' due times), in ms. The partition's
// run applies it when a session's handler asks for its next input, and again, for a handler waiting with none,
// when something new is known (an entry of its key, the log's clock moving); a replay, a backlog and a takeover
// apply it to the same inputs in the same order, so each decides the same.

/**
 * The semantics, per key.
 *
 * - A session's inputs are its key's entries (at their entry ids' times) and its own timers (`ctx.wakeAt`, at
 *   their due times), merged by time: a timer before an entry of the same millisecond, timers of one time in the
 *   order they were made. A timer made already due (its time at or before the last time taken, or in the past)
 *   is due at once: it comes before the key's next entry.
 * - `start` is the time of the session's first entry, `last` the latest time among the inputs it has taken (an
 *   input taken late, a timer made in the past, never moves it back).
 * - Its idle end is `last + idleTimeout` while it has no timer pending; with one pending it has none (a pending
 *   timer keeps it open until the timer fires, and the idle end is then measured from the timer's time). Its age
 *   end is `start + maxSessionAge + 1`.
 * - Its end comes at the earlier of the two (each only when set): the first input at or after that time is not
 *   taken; the session ends in front of it. An end before both: an entry or a timer at exactly the end time is
 *   past it. The reason is `age` when the age end comes strictly first, else `idle` (at a tie, idle: the age end
 *   is then no earlier than the idle end, which ends the session with no error). With no input at or after the
 *   end, the log's clock passing it (any entry read, a tick, a marker) ends it.
 * - The `maxSessionEvents + 1`-th input (entries and timers counted alike) ends it, with reason `events`, unless
 *   the end above comes first.
 * - At any end, a timer not taken never fires (its session is gone); an entry not taken opens the key's next
 *   session (with the other entries not taken after it).
 * - A handler that returns or throws ends its session where it stopped (not decided here): the entries it never
 *   took open the key's next session, in log order.
 * - A timer is made (`addTimer`) due at its time rounded up to a whole ms. One due at or after the age end would
 *   never fire: it is refused (`'late'`: the caller throws `TimerPastAgeError`), whatever else holds, and nothing
 *   changes. A timer made with a key replaces the pending timer of that key, if any (the old one never fires);
 *   `cancelTimer` removes the pending timer of a key (it never fires). Keys are the handler's strings; a timer
 *   without a key is never replaced or cancelled. A replacement is a new timer: a new id, placed by its own time.
 * - `maxSessionTimers` bounds the timers made and not yet taken, nor replaced, nor cancelled: a new timer beyond
 *   it is refused (`'full'`: the caller throws `TooManyTimersError`); one replacing a pending timer never is. A
 *   checkpoint records exactly those timers, with their keys.
 * - A checkpoint is this state at a take; a restore continues the same walk from it.
 */

/** A timer of `ctx.wakeAt`: its id in the session (1, 2, ...), its due time, its payload encoded, its key if given. */
export interface SessionTimer {
  readonly id: number;
  readonly time: number;
  readonly payload: Buffer | string;
  readonly key?: string;
}

/** What the rule knows of a session: what it has taken, and its timers not taken. */
export interface SessionState {
  /** Time of its first entry (the time in its sid). */
  readonly start: number;
  /** The latest time among the inputs it has taken; 0 before its first. */
  last: number;
  /** Inputs taken (entries and timers). */
  events: number;
  /** Timers made so far: the next one's id is this plus one. */
  timerCount: number;
  /** Timers made and not taken (nor replaced, nor cancelled), in the order they come: by time, then by id. */
  readonly timers: SessionTimer[];
}

/** The caps, as the worker's options set them (0: none). */
export interface SessionLimits {
  readonly idleTimeout: number;
  readonly maxSessionAge: number;
  readonly maxSessionEvents: number;
  readonly maxSessionTimers: number;
}

export type EndReason = 'idle' | 'age' | 'events';

/** What the session does next. */
export type Decision =
  /** Take its first timer (`state.timers[0]`). */
  | { readonly kind: 'timer'; readonly timer: SessionTimer }
  /** Take the key's next entry. */
  | { readonly kind: 'entry' }
  /** End here, in front of any input not taken (the next input, or the log's clock, is at or past the end). */
  | { readonly kind: 'end'; readonly reason: EndReason }
  /**
   * Nothing to take yet: decide again when the log's clock moves or an entry of the key comes. (What moves the
   * clock to the session's next time is the owner's: a tick at its idle end, its age marker, its timers' wake-ups.)
   */
  | { readonly kind: 'wait' };

/** The session of a new key's first entry at `start`, or one restored from a checkpoint. */
export function newState(
  start: number,
  restored?: { last: number; events: number; timerCount: number; timers: readonly SessionTimer[] },
): SessionState {
  const state: SessionState = { start, last: 0, events: 0, timerCount: 0, timers: [] };
  if (restored !== undefined) {
    state.last = restored.last;
    state.events = restored.events;
    state.timerCount = restored.timerCount;
    for (const timer of restored.timers) insertTimer(state, timer);
  }
  return state;
}

/**
 * The session's idle end: `idleTimeout` after the latest time it took (`Infinity`: none set, nothing taken, or a
 * timer pending: it keeps the session open, and once taken the idle end is measured from its time).
 */
function idleEnd(state: SessionState, limits: SessionLimits): number {
  return limits.idleTimeout > 0 && state.last > 0 && state.timers.length === 0 ? state.last + limits.idleTimeout : Infinity;
}

/** The session's age end: just past `maxSessionAge` after its first entry (`Infinity`: none set). */
function ageEnd(state: SessionState, limits: SessionLimits): number {
  return limits.maxSessionAge > 0 ? state.start + limits.maxSessionAge + 1 : Infinity;
}

/** The session's end: the time at or after which no input is taken, and its reason (`Infinity`: none set). */
export function deadline(state: SessionState, limits: SessionLimits): { readonly time: number; readonly reason: 'idle' | 'age' } {
  const idle = idleEnd(state, limits);
  const age = ageEnd(state, limits);
  return age < idle ? { time: age, reason: 'age' } : { time: idle, reason: 'idle' };
}

/** The session's end if its reason is `idle` (`deadline`), else `Infinity`. */
export function idleDeadline(state: SessionState, limits: SessionLimits): number {
  const idle = idleEnd(state, limits);
  return ageEnd(state, limits) < idle ? Infinity : idle;
}

// The decisions with nothing of their own, made once: the rule is applied as each input is taken, and again for
// each waiting session as the log's clock moves, on the worker's hot path.
const TAKE_ENTRY: Decision = Object.freeze({ kind: 'entry' });
const END_IDLE: Decision = Object.freeze({ kind: 'end', reason: 'idle' });
const END_AGE: Decision = Object.freeze({ kind: 'end', reason: 'age' });
const END_EVENTS: Decision = Object.freeze({ kind: 'end', reason: 'events' });
const WAIT: Decision = Object.freeze({ kind: 'wait' });

/**
 * What the session does next, given the time of its key's next entry not taken (undefined: none known; the
 * caller passes the earliest, whether it is in the session's input, held, or left in the pending list) and the
 * log's clock (the time of the latest entry read from the partition: no entry of the key before it is unknown).
 */
export function decide(state: SessionState, next: number | undefined, clock: number, limits: SessionLimits): Decision {
  const idle = idleEnd(state, limits);
  const age = ageEnd(state, limits);
  const end = age < idle ? age : idle;
  const timer = state.timers[0] as SessionTimer | undefined;
  // The next input: a timer due by the next entry (ties: the timer), else that entry; a timer with no entry
  // known after it only once the log's clock has reached it (an entry of the key may still come before it).
  let time: number;
  let take: Decision;
  if (timer !== undefined && timer.time <= (next ?? clock)) {
    time = timer.time;
    take = { kind: 'timer', timer };
  } else if (next !== undefined) {
    time = next;
    take = TAKE_ENTRY;
  } else {
    if (end <= clock) return age < idle ? END_AGE : END_IDLE;
    return WAIT;
  }
  if (time >= end) return age < idle ? END_AGE : END_IDLE;
  if (limits.maxSessionEvents > 0 && state.events >= limits.maxSessionEvents) return END_EVENTS;
  return take;
}

/**
 * The log's time from which `decide(state, undefined, clock, limits)` no longer answers `wait`: its first timer's
 * time or its end, whichever comes first (Infinity: never). Below it, a waiting session with no input known is
 * decided the same however the clock moves.
 */
export function waitsUntil(state: SessionState, limits: SessionLimits): number {
  const idle = idleEnd(state, limits);
  const age = ageEnd(state, limits);
  const end = age < idle ? age : idle;
  const timer = state.timers[0] as SessionTimer | undefined;
  return timer !== undefined && timer.time < end ? timer.time : end;
}

/** The session takes an input at `time`: its first timer (`timer`), or an entry. */
export function take(state: SessionState, time: number, timer?: SessionTimer): void {
  if (timer !== undefined) {
    const at = state.timers.indexOf(timer);
    if (at >= 0) state.timers.splice(at, 1);
  }
  state.events++;
  state.last = Math.max(state.last, time);
}

/**
 * A new timer (`ctx.wakeAt`), due at `time` (rounded up to a whole ms), replacing the pending timer of `key` if
 * any; or why none is made (nothing changes): `'late'`, due at or after the session's age end (it would never
 * fire; the caller throws `TimerPastAgeError`), `'full'`, a new one over `maxSessionTimers` (`TooManyTimersError`).
 */
export function addTimer(
  state: SessionState,
  time: number,
  payload: Buffer | string,
  limits: SessionLimits,
  key?: string,
): SessionTimer | 'late' | 'full' {
  const due = Math.ceil(time);
  if (limits.maxSessionAge > 0 && due > state.start + limits.maxSessionAge) return 'late';
  const replaced = key === undefined ? -1 : state.timers.findIndex((t) => t.key === key);
  if (replaced < 0 && state.timers.length >= limits.maxSessionTimers) return 'full';
  if (replaced >= 0) state.timers.splice(replaced, 1);
  const timer: SessionTimer = { id: ++state.timerCount, time: due, payload, ...(key === undefined ? {} : { key }) };
  insertTimer(state, timer);
  return timer;
}

/** Removes the pending timer of `key` (`ctx.cancelTimer`): the timer removed, or undefined if there was none. */
export function cancelTimer(state: SessionState, key: string): SessionTimer | undefined {
  const at = state.timers.findIndex((t) => t.key === key);
  return at < 0 ? undefined : state.timers.splice(at, 1)[0];
}

/**
 * How many of the key's next entries (their times, in order) the session would take before it ends, its timers
 * among them: the entries its handler left when it returned or threw, all known (no clock needed).
 */
export function wouldTake(state: SessionState, entries: readonly number[], limits: SessionLimits): number {
  const walk = newState(state.start, state);
  let taken = 0;
  for (const time of entries) {
    for (;;) {
      const d = decide(walk, time, time, limits);
      if (d.kind === 'timer') take(walk, d.timer.time, d.timer);
      else if (d.kind === 'entry') break;
      else return taken;
    }
    take(walk, time);
    taken++;
  }
  return taken;
}

/** Inserts in (time, id) order. */
function insertTimer(state: SessionState, timer: SessionTimer): void {
  const timers = state.timers;
  let i = timers.length;
  while (i > 0 && (timers[i - 1].time > timer.time || (timers[i - 1].time === timer.time && timers[i - 1].id > timer.id))) i--;
  timers.splice(i, 0, timer);
}
