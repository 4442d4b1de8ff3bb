// The checkpoint members of a handler's context in-process (`run`, `open`, `sessions()`, pipe stages,
// `workerFn`): they exist, so one handler runs unchanged here and on `redisWorker`; `ctx.restored` is undefined
// (nothing was ever committed) and `ctx.checkpoint(state)` is a no-op that returns undefined and never throws
// (there is no codec or limit in-process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn, workerFn } from 'velo-stream';

/** The handler of the Redis docs' checkpoint example, in short: a running total it checkpoints every 2 events. */
const totals = streamFn(async function* totals(events, ctx) {
  let { total } = ctx.restored ?? { total: 0 };
  let count = 0;
  for await (const n of events) {
    total += n;
    yield total;
    if (++count % 2 === 0) assert.equal(ctx.checkpoint({ total, big: 10n, fn: () => {} }), undefined);
  }
});

test('run() and open(): ctx.restored is undefined, ctx.checkpoint(state) is a no-op (any state)', async () => {
  assert.deepEqual(await totals.run([1, 2, 3, 4, 5]), [1, 3, 6, 10, 15]);
  const stream = totals.open();
  await stream.send(7);
  await stream.end();
  const out = [];
  for await (const o of stream) out.push(o);
  assert.deepEqual(out, [7]);
});

test('sessions(): the same handler, one total per key', async () => {
  const sessions = totals.sessions();
  const out = [];
  const reading = (async () => {
    for await (const item of sessions) out.push([item.key, item.value]);
  })();
  for (const [key, n] of [['a', 1], ['b', 10], ['a', 2], ['b', 20], ['a', 3]]) await sessions.send(key, n);
  await sessions.close();
  await reading;
  assert.deepEqual(out.filter(([k]) => k === 'a').map(([, v]) => v), [1, 3, 6]);
  assert.deepEqual(out.filter(([k]) => k === 'b').map(([, v]) => v), [10, 30]);
});

test('a stage of a pipe: the same members, a no-op', async () => {
  const seen = [];
  const tail = async function* (events, ctx) {
    for await (const e of events) {
      seen.push(ctx.restored);
      assert.equal(ctx.checkpoint(e), undefined);
      yield e;
    }
  };
  assert.deepEqual(await totals.pipe(tail).run([1, 2]), [1, 3]);
  assert.deepEqual(seen, [undefined, undefined]);
});

test('workerFn: the same members on the worker thread, a no-op', async () => {
  const fn = workerFn(new URL('./fixtures/worker-handlers.mjs', import.meta.url), { export: 'checkpointing', threads: 1 });
  try {
    assert.deepEqual(await fn.run([1]), [{ restored: undefined, checkpoint: 'returned' }]);
  } finally {
    await fn.close();
  }
});
