// In-process `ctx.wakeAt` runs on the process's `setTimeout` and `Date.now()`, so Node's mock timers
// (`node:test` mock.timers) drive it: a test moves time ten minutes on at once and gets the timer's event, with
// no real wait. A stream's `idleTimeout` is kept by the native core on the real clock: mock time does not move it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';

// Node 20 warns on stderr at the first use of mock timers (an ExperimentalWarning); this file expects that one
// warning, and lets every other through.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  if (String(warning?.message ?? warning).includes('MockTimers')) return;
  emitWarning.call(process, warning, ...rest);
};

const checkout = streamFn(
  async function* checkout(events, ctx) {
    for await (const e of events) {
      if (e.type === 'close') {
        ctx.wakeAt(e.at + 10 * 60_000, { type: 'payment-timeout' });
        yield { closed: true };
      } else if (e.type === 'pay') return yield { paid: true };
      else if (e.type === 'payment-timeout') return yield { timeout: true };
    }
  },
  { idleTimeout: 60_000 },
);

test('mock.timers drives in-process ctx.wakeAt: ten minutes ticked at once deliver the wake-up; idleTimeout stays on the real clock', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  const stream = checkout.open();
  await stream.send({ type: 'close', at: Date.now() });
  // Its timer is made once the close's output comes.
  assert.deepEqual(await stream.recv(), { closed: true });
  // Just before the time nothing fires.
  t.mock.timers.tick(10 * 60_000 - 1);
  assert.equal(stream.state, 'open');
  assert.equal(stream.metrics.eventsOut, 1);
  // At the time the wake-up is sent; had mock time (past idleTimeout) ended the input, it would have been dropped.
  t.mock.timers.tick(1);
  assert.deepEqual(await stream.recv(), { timeout: true });
  assert.equal(Date.now(), 1_000_000 + 10 * 60_000);
});

test('mock.timers: a payment before the time wins', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const outputs = await checkout.run([{ type: 'close', at: Date.now() }, { type: 'pay' }]);
  assert.deepEqual(outputs, [{ closed: true }, { paid: true }]);
});
