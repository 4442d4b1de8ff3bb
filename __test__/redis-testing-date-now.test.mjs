// A timer computed from Date.now() is the likely cause of a check that does not settle (the virtual clock starts in
// 2024, so such a timer is due years ahead and keeps its session open): checkDeterminism's ERR_VELO_TEST_NOT_SETTLED
// names the Date.now() read and what to use instead, rather than only advising a larger settleWithin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism } from 'velo-stream/testing';

test('checkDeterminism: a timer from Date.now() that never settles is named as the likely cause', async () => {
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.type === 'close') ctx.wakeAt(Date.now() + 60_000, { type: 'timeout' });
        else if (e.type === 'timeout') yield 'timed out';
      }
    },
    { idleTimeout: 1000 },
  );
  await assert.rejects(checkDeterminism(fn, [{ key: 'cart', event: { type: 'close' } }], { settleWithin: 60_000 }), (error) => {
    assert.equal(error.code, 'ERR_VELO_TEST_NOT_SETTLED');
    assert.match(error.message, /the crash-free run did not settle/);
    assert.match(error.message, /The handler read Date\.now\(\) .*redis-testing-date-now\.test\.mjs/);
    assert.match(error.message, /ctx\.entry\.time/);
    return true;
  });
});

test('checkDeterminism: a handler that reads no clock keeps the settleWithin advice alone', async () => {
  const start = Date.UTC(2024, 0, 1);
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) ctx.wakeAt(ctx.entry.time + 3_600_000, e);
    },
    { idleTimeout: 1000 },
  );
  await assert.rejects(checkDeterminism(fn, [{ key: 'k', event: 1, at: start }], { settleWithin: 60_000 }), (error) => {
    assert.equal(error.code, 'ERR_VELO_TEST_NOT_SETTLED');
    assert.doesNotMatch(error.message, /Date\.now/);
    assert.match(error.message, /needs a longer settleWithin\.$/);
    return true;
  });
});
