// A worker's session openings and the event loop (OpeningSlice, js/durable/engine/opening-slice.ts): openings that
// hold most of the loop pause as long as they held it once past a slice, so that renewals complete in between;
// openings now and then never pause.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OpeningSlice } from '#testing';

/** A clock whose time the test moves, and whose timers it lists. */
function fakeClock() {
  const clock = {
    time: 1_000_000,
    timers: [],
    now: () => clock.time,
    setTimeout(fn, ms) {
      clock.timers.push({ fn, ms });
      return {};
    },
  };
  return clock;
}

/** An opening of `ms` at the clock's time, the time moved past it first (the opening held the loop that long). */
function open(clock, slice, ms) {
  clock.time += ms;
  slice.spent(ms);
}

test('openings now and then, however many, never pause', () => {
  const clock = fakeClock();
  const slice = new OpeningSlice(clock, 10_000);
  for (let i = 0; i < 10_000; i++) {
    clock.time += 3;
    open(clock, slice, 2);
    assert.equal(slice.full, false, `opening ${i}`);
  }
  assert.deepEqual(clock.timers, []);
});

test('back-to-back openings past the slice pause as long as they held the loop, an eighth of the lease at most', async () => {
  const clock = fakeClock();
  const slice = new OpeningSlice(clock, 1000);
  open(clock, slice, 20);
  open(clock, slice, 20);
  assert.equal(slice.full, false);
  open(clock, slice, 20);
  assert.equal(slice.full, true);
  assert.deepEqual(
    clock.timers.map((t) => t.ms),
    [60],
  );
  let resumed = false;
  void slice.turn().then(() => (resumed = true));
  // One pause for every opening waiting.
  assert.equal(clock.timers.length, 1);
  clock.time += 60;
  clock.timers.shift().fn();
  await Promise.resolve();
  assert.equal(resumed, true);
  assert.equal(slice.full, false);
  // One opening longer than the slice (a slow migrate) pauses as long; the pause is at most an eighth of the lease.
  open(clock, slice, 100);
  assert.deepEqual(
    clock.timers.map((t) => t.ms),
    [100],
  );
  clock.timers.shift().fn();
  open(clock, slice, 400);
  assert.deepEqual(
    clock.timers.map((t) => t.ms),
    [125],
  );
});

test('a short lease makes a short slice: an eighth of it', () => {
  const clock = fakeClock();
  const slice = new OpeningSlice(clock, 200);
  open(clock, slice, 24);
  assert.equal(slice.full, false);
  open(clock, slice, 2);
  assert.equal(slice.full, true);
  assert.deepEqual(
    clock.timers.map((t) => t.ms),
    [25],
  );
});
