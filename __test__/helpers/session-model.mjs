// The reference model of a Redis worker's sessions: what a crash-free run makes of a scenario (session-script.mjs),
// written from the user documentation (docs/redis/README.md, timers.md, bounds.md, checkpoints.md, storage.md), not
// from the engine, so that the two can be checked against each other.
//
// The semantics, per key:
// - A session's inputs are the key's entries (at their ids' times) and the timers its handler made (at their due
//   times), merged by time: a timer before an entry of the same ms, timers of one time in the order made, and an end
//   before both. An entry opens a session; a timer never does, and a session's timers end with it.
// - `start` is the time of the session's first entry, `last` the latest time it has taken (a timer due in the past
//   does not move it back). Its idle end is `last + idleTimeout`, but only while it has no timer pending: a pending
//   timer keeps it open until the timer fires (timers.md). Its age end is `start + maxSessionAge + 1` (the first
//   time more than `maxSessionAge` after its start).
// - It is decided when the handler asks for its next input, so every timer made for what it took is known. The
//   session ends at the first input at or after the earlier of the two ends, or once the log's clock reaches it
//   with no input before: by idle, with no output, or by age, its last output `ERR_VELO_SESSION_AGE`. Decision
//   (the docs say "the earlier"): when the two ends fall on the same ms, it ends by idle.
// - Otherwise, the input that would be its `maxSessionEvents + 1`-th ends it, its last output
//   `ERR_VELO_SESSION_EVENTS`: a timer then never fires, an entry opens the key's next session. The time ends are
//   tested first: an input at or past an end ends the session by that end, whatever the count (past both the age and
//   the event cap: by age).
// - A handler that returns or throws ends the session at the input it took last (a throw's error is its last
//   output, `{ error: code }`); its pending timers never fire, and the entries it never took open the next session.
// - `ctx.wakeAt(time)` with `time` (rounded up) past `start + maxSessionAge` throws `ERR_VELO_TIMER_PAST_AGE` and
//   makes no timer (it could never fire). Else, with a key that a pending timer has, the new timer replaces that
//   one (a new timer: numbered next, at its own time; the old never fires). Else it throws
//   `ERR_VELO_TOO_MANY_TIMERS` and makes no timer while the session has `maxSessionTimers` pending timers (made,
//   not taken, not replaced, not cancelled). `ctx.cancelTimer(key)` removes the pending timer of that key (true),
//   or finds none (false).
// - `ctx.entry` is the input taken last: an entry's `{ id, time: its id's ms }`, a timer's `{ id: 't<n>', time: due }`;
//   undefined in a pipe's stage (`limits.stage`: a stream without the session's hooks, run as its function).
// - A checkpoint changes nothing visible: it is the walk's state at a take, and a restore continues the same walk
//   (same inputs, same ends, outputs numbered on). So the model ignores checkpoints, except with `limits.keyState`:
//   then a key's session starts from the last checkpoint of its previous session (with none, from the state that one
//   started from; a checkpoint in the step that threw is not one), for ever (no retention). With releases,
//   `keyState.start(sid)` says how the session starts from it (docs/redis/versions.md: as it is, converted by migrate,
//   or refused: from nothing, the kept state staying kept), as the run's release that opened it decided.
// - With `limits.debounce` ({ wait, edge, maxDelay }, or per session, `(sid) => ...`, as the release that opened it
//   had it: docs/redis/debounce.md, docs/sessions-debounce.md, docs/redis/versions.md), every entry
//   is an input of the session (counted for `maxSessionEvents`) but reaches the handler as the debounce decides.
//   Trailing: an entry joins the group (a new one if none is pending) and is held, the one held before dropped; the
//   group is due at `min(last + wait, since + maxDelay)`, rounded up. Leading: an entry with no quiet period pending,
//   or `maxDelay` or more after the last delivered one, is delivered and starts a quiet period; the others are
//   dropped and restart it; it ends at `last + wait`, rounded up. What is pending is one timer of the session, of its
//   own (not counted against `maxSessionTimers`), numbered with the handler's, replaced by each entry: its wake-up is
//   an input too (counted), delivers the held event (`ctx.entry` the timer's) or ends the quiet period, and a
//   pending one keeps the session open. One that would be due past the age end is not made: the held event (or the
//   event to deliver) goes at once, and the group ends. An events cap that ends the session while an event is held
//   delivers it first (`ctx.entry` its debounce timer's, as at its due time), then the cap's error (the input was
//   read to its end), unless the handler throws on it; a
//   handler that returns or throws while an event is held gives it up.
// - The log's clock: entries, ticks and wake-ups move it, and the scenario's `clock` is where it stands at the end
//   (absent: past every deadline, as once a run has settled). A session whose end the clock has not reached, with
//   no input due by then, is still open: its timers due by then have fired, later ones not.
import { SCRIPT_THROW, react, timeOf } from './session-script.mjs';

/**
 * `model({ log, limits, clock })` (the log in id order) -> `{ [key]: session[] }`, a session being `{ ordinal, sid, inputs, outputs, end }`:
 * `inputs` in the order taken, `{ entry: id, tag }` or `{ timer: n, tag, due }` (n: the session's timers numbered 1, 2,
 * ... in the order made); `outputs` the handler's, then a cap's or a throw's `{ error: code }`; `end` is
 * `{ how: 'idle' | 'age', at: end time }`, `{ how: 'events', at: the refused input's time }`,
 * `{ how: 'return' | 'throw', at: the last input's time }` or `{ how: 'open' }`.
 */
export function model({ log, limits, clock = Infinity }) {
  const byKey = new Map();
  for (const entry of log) {
    if (!byKey.has(entry.key)) byKey.set(entry.key, []);
    byKey.get(entry.key).push(entry);
  }
  const until = log.reduce((t, e) => Math.max(t, timeOf(e.id)), clock);
  const out = {};
  for (const [key, entries] of byKey) out[key] = walk(key, entries, limits, until);
  return out;
}

/** The reserved key of a session's debounce timer. */
const DEBOUNCE = 'velo.debounce';

function walk(
  key,
  entries,
  {
    idleTimeout,
    maxSessionAge = 0,
    maxSessionEvents = 0,
    maxSessionTimers = 1000,
    keyState = false,
    debounce: debounceOf = null,
    stage = false,
  },
  until,
) {
  const sessions = [];
  let next = 0;
  // keyState (docs/redis/key-state.md): what the key's last session kept (its last checkpoint, one of a step that
  // threw aside; with none, the state it started from), which its next session starts from. No retention: kept for
  // the whole walk.
  let carried;
  while (next < entries.length) {
    const session = { ordinal: sessions.length + 1, sid: `${key}@${entries[next].id}`, inputs: [], outputs: [], end: null };
    sessions.push(session);
    // Its debounce: the one it opened with (a run's releases: `debounce(sid)`).
    const debounce = typeof debounceOf === 'function' ? debounceOf(session.sid) : debounceOf;
    const leading = debounce?.edge === 'leading';
    const maxDelay = debounce?.maxDelay ?? Infinity;
    const start = timeOf(entries[next].id);
    let last = start;
    // How it starts from the carried state (a run's releases: `keyState.start`).
    const refused = typeof keyState === 'object' && keyState !== null && keyState.start(session.sid).use === 'refused';
    let state = keyState && carried !== undefined && !refused ? carried : { count: 0, took: [] };
    let kept = keyState ? carried : undefined;
    // Inputs this session took (the handler's count includes those of earlier sessions with keyState).
    let taken = 0;
    let timers = [];
    let made = 0;
    let lastTaken;
    const ctx = {
      // (A pipe's stage has no `ctx.entry`: its stream has none of the session's hooks.)
      get entry() {
        return stage ? undefined : lastTaken;
      },
      wakeAt(due, payload, { key } = {}) {
        if (maxSessionAge > 0 && Math.ceil(due) > start + maxSessionAge)
          throw Object.assign(new Error('timer past the age end'), { code: 'ERR_VELO_TIMER_PAST_AGE' });
        const old = key === undefined ? undefined : timers.find((t) => t.key === key);
        if (old === undefined && timers.filter((t) => t.key !== DEBOUNCE).length >= maxSessionTimers)
          throw Object.assign(new Error('too many timers'), { code: 'ERR_VELO_TOO_MANY_TIMERS' });
        timers = timers.filter((t) => t !== old);
        timers.push({ n: ++made, due: Math.ceil(due), payload, key });
      },
      cancelTimer(key) {
        const old = timers.find((t) => t.key === key && t.key !== DEBOUNCE);
        timers = timers.filter((t) => t !== old);
        return old !== undefined;
      },
    };
    const close = (end, error) => {
      session.end = end;
      if (error !== undefined) session.outputs.push({ error });
    };
    // Debounce: the pending group (`since`, `last`), the held event (trailing), the session's debounce timer.
    let group;
    let held;
    let debounceTimer;
    /** Gives `payload` to the handler: its outputs, and whether it ended the session (a return or a throw). */
    const deliver = (payload, at) => {
      const step = react(state, payload, ctx);
      state = step.state;
      if (step.checkpoint && step.end !== 'throw') kept = state;
      session.outputs.push(...step.outputs);
      if (step.end === 'return') close({ how: 'return', at });
      if (step.end === 'throw') close({ how: 'throw', at }, SCRIPT_THROW);
      return session.end !== null;
    };
    for (;;) {
      // The next input: the earliest timer (ties in the order made) unless an entry comes first; one the clock has
      // not reached yet is not there.
      const timer = timers.reduce((a, b) => (b.due < a.due || (b.due === a.due && b.n < a.n) ? b : a), timers[0]);
      const entry = entries[next];
      let input = entry === undefined ? undefined : { entry, at: timeOf(entry.id) };
      if (timer !== undefined && (input === undefined || timer.due <= input.at)) input = { timer, at: timer.due };
      if (input !== undefined && input.at > until) input = undefined;

      const idleEnd = timers.length > 0 ? Infinity : last + idleTimeout;
      const ageEnd = maxSessionAge > 0 ? start + maxSessionAge + 1 : Infinity;
      if ((input?.at ?? until) >= Math.min(idleEnd, ageEnd)) {
        if (idleEnd <= ageEnd) close({ how: 'idle', at: idleEnd });
        else close({ how: 'age', at: ageEnd }, 'ERR_VELO_SESSION_AGE');
        break;
      }
      if (input === undefined) {
        close({ how: 'open' });
        break;
      }
      if (maxSessionEvents > 0 && taken >= maxSessionEvents) {
        // A held event was accepted: the end of the input delivers it first. The input was read to its end (by the
        // debounce, to find the cap), so the cap's error follows, unless the handler threw on the held event.
        if (held !== undefined) {
          // `ctx.entry` is the debounce timer's, as its wake-up would have given the held event.
          const before = lastTaken?.time;
          lastTaken = { id: `t${debounceTimer.n}`, time: debounceTimer.due };
          const step = react(state, held, ctx);
          state = step.state;
          // (Its step completed: a checkpoint it made is kept, as any other step's.)
          if (step.checkpoint && step.end !== 'throw') kept = state;
          session.outputs.push(...step.outputs);
          if (step.end === 'throw') {
            close({ how: 'throw', at: before }, SCRIPT_THROW);
            break;
          }
        }
        close({ how: 'events', at: input.at }, 'ERR_VELO_SESSION_EVENTS');
        break;
      }

      last = Math.max(last, input.at);
      taken++;
      if (input.timer !== undefined && input.timer === debounceTimer) {
        // The debounce timer: trailing, the held event goes; leading, the quiet period ends.
        timers = timers.filter((t) => t !== input.timer);
        debounceTimer = undefined;
        lastTaken = { id: `t${input.timer.n}`, time: input.at };
        const out = held;
        group = undefined;
        held = undefined;
        if (out !== undefined && deliver(out, input.at)) break;
        continue;
      }
      if (input.entry !== undefined) {
        next++;
        session.inputs.push({ entry: input.entry.id, tag: input.entry.event.tag });
        lastTaken = { id: input.entry.id, time: input.at };
        const payload = input.entry.event;
        if (debounce === null) {
          if (deliver(payload, input.at)) break;
          continue;
        }
        const t = input.at;
        let goes = false;
        if (leading) {
          goes = group === undefined || t - group.since >= maxDelay;
          group = goes ? { since: t, last: t } : { since: group.since, last: t };
        } else {
          group = { since: group?.since ?? t, last: t };
          held = payload;
        }
        const due = Math.ceil(
          leading ? group.last + debounce.wait : Math.min(group.last + debounce.wait, group.since + maxDelay),
        );
        timers = timers.filter((x) => x !== debounceTimer);
        debounceTimer = undefined;
        if (maxSessionAge > 0 && due > start + maxSessionAge) {
          // Nothing can be pending past the age end: what would wait goes now, and the group ends.
          group = undefined;
          const out = held ?? (goes ? payload : undefined);
          held = undefined;
          if (out !== undefined && deliver(out, t)) break;
          continue;
        }
        debounceTimer = { n: ++made, due, payload: undefined, key: DEBOUNCE };
        timers.push(debounceTimer);
        if (goes && deliver(payload, t)) break;
        continue;
      }
      timers = timers.filter((t) => t !== input.timer);
      session.inputs.push({ timer: input.timer.n, tag: input.timer.payload.tag, due: input.timer.due });
      lastTaken = { id: `t${input.timer.n}`, time: input.at };
      if (deliver(input.timer.payload, input.at)) break;
    }
    if (keyState) carried = kept;
  }
  return sessions;
}
