// What settle() and checkDeterminism() cost for a session that never ends: linear in its steps, as advance() is.
// After every step the simulator asks whether the run has settled; an open session's pending entries grow by one
// per wake-up, so an answer that lists them made a day of a heartbeat's wake-ups cost minutes. The work is counted
// (the entries the store lists while a run moves), not timed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
import { MemoryStore } from '#testing';

/** A session that wakes itself every ms and never ends: one wake-up, one pending entry, a step. */
const ticking = streamFn(
  async function* (events, ctx) {
    for await (const _ of events) ctx.wakeAt(ctx.entry.time + 1, 'tick', { key: 'tick' });
  },
  { idleTimeout: 5000 },
);

/** Runs `body` counting the entries `MemoryStore.leftovers()` lists meanwhile; that count. */
async function listed(body) {
  const original = MemoryStore.prototype.leftovers;
  let count = 0;
  MemoryStore.prototype.leftovers = function (partition) {
    const left = original.call(this, partition);
    for (const list of Object.values(left)) count += list.length;
    return left;
  };
  try {
    await body();
  } finally {
    MemoryStore.prototype.leftovers = original;
  }
  return count;
}

const SPAN = 3000;

test('settle() over N wake-ups of an open session lists no entries per step (it rejects ERR_VELO_TEST_NOT_SETTLED)', async () => {
  const w = testWorker(ticking);
  w.send('dev', 'start');
  const count = await listed(() => assert.rejects(w.settle(SPAN), { code: 'ERR_VELO_TEST_NOT_SETTLED' }));
  await w.close();
  // (Listing the pending entries at each step: over 13 million here: several steps per wake-up.)
  assert.ok(count <= 2 * SPAN, `settle() listed ${count} entries over ${SPAN} wake-ups`);
});

test("checkDeterminism over N wake-ups lists each run's entries once, at its end, not at each step", async () => {
  const count = await listed(() =>
    assert.rejects(checkDeterminism(ticking, [{ key: 'dev', event: 'start' }], { settleWithin: SPAN }), {
      code: 'ERR_VELO_TEST_NOT_SETTLED',
    }),
  );
  assert.ok(count <= 4 * SPAN, `checkDeterminism listed ${count} entries over ${SPAN} wake-ups`);
});
