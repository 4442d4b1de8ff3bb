// The session rule (js/durable/rules/session-rules.ts) at its boundaries: each case is worked out by hand from the
// semantics in the module's comment (times in ms of Redis' clock), not from the code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { addTimer, cancelTimer, deadline, decide, newState, take, waitsUntil } = require('../dist/durable/rules/session-rules.js');

const limits = (o = {}) => ({ idleTimeout: 1000, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10, ...o });

/** A session whose first entry, at 10_000, is taken. */
function opened(o) {
  const state = newState(10_000);
  assert.deepEqual(decide(state, 10_000, 10_000, limits(o)), { kind: 'entry' });
  take(state, 10_000);
  return state;
}

const kinds = (d) => (d.kind === 'timer' ? `timer ${d.timer.id}` : d.kind === 'end' ? `end ${d.reason}` : d.kind);

test('idle: an entry one ms before the idle end is taken; one at it ends the session; with none, the clock ends it', () => {
  const s = opened();
  assert.equal(kinds(decide(s, 10_999, 10_999, limits())), 'entry');
  assert.equal(kinds(decide(s, 11_000, 11_000, limits())), 'end idle');
  assert.equal(kinds(decide(s, undefined, 10_999, limits())), 'wait');
  assert.equal(kinds(decide(s, undefined, 11_000, limits())), 'end idle');
  assert.equal(kinds(decide(s, undefined, 999_999, limits({ idleTimeout: 0 }))), 'wait');
});

test('a timer comes before an entry of the same ms; timers of one time in the order made; a pending timer holds off the idle end', () => {
  const s = opened();
  const a = addTimer(s, 10_500, 'a', limits());
  const b = addTimer(s, 10_500, 'b', limits());
  const c = addTimer(s, 10_400.2, 'c', limits());
  assert.deepEqual([a.id, b.id, c.id, c.time], [1, 2, 3, 10_401]);
  assert.equal(kinds(decide(s, 10_401, 10_401, limits())), 'timer 3');
  take(s, c.time, c);
  assert.equal(kinds(decide(s, 10_499, 10_600, limits())), 'entry');
  assert.equal(kinds(decide(s, 10_500, 10_600, limits())), 'timer 1');
  take(s, 10_500, a);
  assert.equal(kinds(decide(s, 10_500, 10_600, limits())), 'timer 2');
  take(s, 10_500, b);
  // Last 10_500: a timer and an entry both at what was the idle end (11_500): the pending timer keeps the session
  // open, it is taken first, and the idle end is then 12_500.
  assert.equal(deadline(s, limits()).time, 11_500);
  const d = addTimer(s, 11_500, 'd', limits());
  assert.equal(deadline(s, limits()).time, Infinity);
  assert.equal(kinds(decide(s, 11_500, 11_500, limits())), 'timer 4');
  assert.equal(kinds(decide(s, undefined, 11_499, limits())), 'wait');
  take(s, d.time, d);
  assert.equal(kinds(decide(s, 12_500, 12_500, limits())), 'end idle');
  assert.equal(kinds(decide(s, 12_499, 12_500, limits())), 'entry');
});

test('a timer due later than the log clock waits (an entry may come first); a timer made in the past is due at once and never moves `last` back', () => {
  const s = opened();
  addTimer(s, 10_800, 'later', limits());
  assert.equal(kinds(decide(s, undefined, 10_700, limits())), 'wait');
  const past = addTimer(s, 9_000, 'past', limits());
  assert.equal(kinds(decide(s, undefined, 10_000, limits())), 'timer 2');
  take(s, past.time, past);
  assert.equal(s.last, 10_000);
  // (The timer at 10_800 still pending: no idle end until it is taken.)
  assert.equal(deadline(s, limits()).time, Infinity);
  take(s, 10_800, s.timers[0]);
  assert.equal(deadline(s, limits()).time, 11_800);
});

test('the issue case: idle end after a timer made in the past is measured from the latest time taken', () => {
  // E1 at T (its producer time T - 300), a timer at T - 299 fires after it, a second at T + 851 fires (idle end T + 1000).
  const T = 10_000;
  const s = opened();
  const first = addTimer(s, T - 299, 1, limits());
  assert.equal(kinds(decide(s, undefined, T, limits())), 'timer 1');
  take(s, first.time, first);
  addTimer(s, T + 851, 2, limits());
  assert.equal(kinds(decide(s, undefined, T + 851, limits())), 'timer 2');
  // The same walk from a checkpoint taken there.
  const restored = newState(T, { last: s.last, events: s.events, timerCount: s.timerCount, timers: s.timers });
  assert.equal(kinds(decide(restored, undefined, T + 851, limits())), 'timer 2');
});

test('age: an input at start + maxSessionAge is taken, one at start + maxSessionAge + 1 is past it; age only when strictly first', () => {
  const s = opened({ maxSessionAge: 500 });
  const o = limits({ maxSessionAge: 500 });
  assert.equal(kinds(decide(s, 10_500, 10_500, o)), 'entry');
  assert.equal(kinds(decide(s, 10_501, 10_501, o)), 'end age');
  assert.equal(kinds(decide(s, undefined, 10_500, o)), 'wait');
  assert.equal(kinds(decide(s, undefined, 10_501, o)), 'end age');
  // Age end (10_999 + 1) equal to the idle end (11_000): idle.
  assert.equal(kinds(decide(opened(), undefined, 11_000, limits({ maxSessionAge: 999 }))), 'end idle');
  assert.equal(kinds(decide(opened(), undefined, 11_000, limits({ maxSessionAge: 998 }))), 'end age');
  // A timer past its age would never fire: it is refused at the call (no id taken); one at start + age is made.
  const t = opened();
  assert.equal(addTimer(t, 10_500.5, 'late', o), 'late');
  assert.equal(addTimer(t, 10_501, 'late', o), 'late');
  assert.deepEqual([t.timerCount, t.timers.length], [0, 0]);
  assert.equal(kinds(decide(t, undefined, 10_600, o)), 'end age');
  const atAge = addTimer(t, 10_500, 'at the age', o);
  assert.equal(atAge.id, 1);
  assert.equal(kinds(decide(t, undefined, 10_500, o)), 'timer 1');
  // Refused whatever else holds: with no room either, the age decides.
  assert.equal(addTimer(t, 10_501, 'late', limits({ maxSessionAge: 500, maxSessionTimers: 1 })), 'late');
  assert.equal(addTimer(t, 10_400, 'full', limits({ maxSessionAge: 500, maxSessionTimers: 1 })), 'full');
});

test('events: the maxSessionEvents + 1-th input ends the session (a timer or an entry), unless an earlier end comes first', () => {
  const o = limits({ maxSessionEvents: 2 });
  const s = opened();
  assert.equal(kinds(decide(s, 10_100, 10_100, o)), 'entry');
  take(s, 10_100);
  assert.equal(kinds(decide(s, 10_200, 10_200, o)), 'end events');
  assert.equal(kinds(decide(s, undefined, 10_200, o)), 'wait');
  // Past the idle end too: idle.
  assert.equal(kinds(decide(s, 11_100, 11_100, o)), 'end idle');
  // A timer before the idle end is the third input.
  addTimer(s, 10_150, 'x', o);
  assert.equal(kinds(decide(s, undefined, 10_200, o)), 'end events');
  assert.equal(kinds(decide(s, 11_100, 11_100, o)), 'end events');
});

test('maxSessionTimers counts the timers not taken: taking one makes room', () => {
  const o = limits({ maxSessionTimers: 2 });
  const s = opened();
  const a = addTimer(s, 10_001, 'a', o);
  assert.ok(addTimer(s, 10_002, 'b', o));
  assert.equal(addTimer(s, 10_003, 'c', o), 'full');
  assert.equal(s.timerCount, 2, 'a refused timer takes no id');
  take(s, a.time, a);
  assert.equal(addTimer(s, 10_003, 'c', o).id, 3);
});

test('wouldTake: the entries a session would take before its end, its timers among them', () => {
  const { wouldTake } = require('../dist/durable/rules/session-rules.js');
  const o = limits({ maxSessionEvents: 3 });
  const s = opened();
  addTimer(s, 10_050, 't', o);
  // 10_100: the timer first (2 inputs), the entry third; 10_200 would be the fourth.
  assert.equal(wouldTake(s, [10_100, 10_200], o), 1);
  assert.equal(s.events, 1, 'the state is not changed');
  assert.equal(wouldTake(opened(), [10_100, 10_999, 11_999], limits()), 2);
});

test('keys: a timer of a key replaces the pending one (a new id, at its own time), cancelTimer removes it; neither counts toward maxSessionTimers', () => {
  const o = limits({ maxSessionTimers: 2 });
  const s = opened();
  const x = addTimer(s, 10_300, 'x1', o, 'x');
  addTimer(s, 10_200, 'plain', o);
  // Full (2 pending): a new key is refused, a replacement is not.
  assert.equal(addTimer(s, 10_100, 'y', o, 'y'), 'full');
  const x2 = addTimer(s, 10_100, 'x2', o, 'x');
  assert.deepEqual(
    s.timers.map((t) => [t.id, t.time, t.payload, t.key]),
    [
      [3, 10_100, 'x2', 'x'],
      [2, 10_200, 'plain', undefined],
    ],
  );
  assert.equal(s.timers.includes(x), false);
  assert.equal(kinds(decide(s, undefined, 10_300, o)), 'timer 3');
  // Cancelled: gone, and its room free; a second cancel finds none; a timer without a key is never cancelled.
  assert.equal(cancelTimer(s, 'x'), x2);
  assert.equal(cancelTimer(s, 'x'), undefined);
  assert.equal(cancelTimer(s, 'undefined'), undefined);
  assert.deepEqual(
    s.timers.map((t) => t.id),
    [2],
  );
  assert.equal(addTimer(s, 10_250, 'y', o, 'y').id, 4);
  // A taken timer's key is free: a new timer of it is a new one, not a replacement.
  const y = s.timers.find((t) => t.key === 'y');
  take(s, 10_200, s.timers[0]);
  take(s, y.time, y);
  assert.equal(cancelTimer(s, 'y'), undefined);
  // The last pending timer gone, the idle end is back: from the latest time taken.
  assert.equal(deadline(s, o).time, 11_250);
  // A restore keeps the keys.
  addTimer(s, 10_900, 'z', o, 'z');
  const restored = newState(10_000, s);
  assert.equal(cancelTimer(restored, 'z').payload, 'z');
});

test('waitsUntil: the first log time at which a waiting session with no input known is decided otherwise', () => {
  // Idle end 11,000; none set: never; a pending timer at 10,500 comes first (and holds off the idle end).
  const s = opened();
  assert.equal(waitsUntil(s, limits()), 11_000);
  assert.equal(waitsUntil(s, limits({ idleTimeout: 0 })), Infinity);
  // Age end 10,000 + 300 + 1, before the idle end.
  assert.equal(waitsUntil(s, limits({ maxSessionAge: 300 })), 10_301);
  assert.ok(typeof addTimer(s, 10_500, 'p', limits()) === 'object');
  assert.equal(waitsUntil(s, limits()), 10_500);
  assert.equal(waitsUntil(s, limits({ maxSessionAge: 300 })), 10_301);
  // Against decide: wait one ms before it, something else at it.
  for (const o of [{}, { idleTimeout: 0 }, { maxSessionAge: 300 }, { maxSessionAge: 2_000 }]) {
    const until = waitsUntil(s, limits(o));
    if (until === Infinity) continue;
    assert.equal(kinds(decide(s, undefined, until - 1, limits(o))), 'wait');
    assert.notEqual(kinds(decide(s, undefined, until, limits(o))), 'wait');
  }
});
