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

test('ctx.wakeAt in-process: the payload arrives as an event at its time, unless the input ended first; a bad time is refused with a code; a workerFn handler is refused', async () => {
  const timers = streamFn(async function* timers(events, ctx) {
    for await (const e of events) {
      if (e.wake !== undefined) ctx.wakeAt(Date.now() + e.wake, { woke: e.n });
      yield e;
      if (e.woke !== undefined) return;
    }
  });
  const sessions = timers.sessions();
  const out = [];
  const reading = (async () => {
    for await (const item of sessions) out.push([item.key, item.value]);
  })();
  await sessions.send('a', { n: 1, wake: 20 });
  await sessions.send('b', { n: 2 });
  // (A hang guard, not a speed check.)
  for (let i = 0; i < 400 && out.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 25));
  await sessions.close();
  await reading;
  assert.deepEqual(out, [
    ['a', { n: 1, wake: 20 }],
    ['b', { n: 2 }],
    ['a', { woke: 1 }],
  ]);
  // A timer of a stream whose input has ended is dropped (and does not hold the process: `run` returns).
  assert.deepEqual(await timers.run([{ n: 3, wake: 10_000 }]), [{ n: 3, wake: 10_000 }]);
  const bad = streamFn(async function* bad(events, ctx) {
    for await (const e of events) yield ctx.wakeAt(e, 'x');
  });
  for (const time of [NaN, Infinity, '1', undefined]) await assert.rejects(bad.run([time]), { code: 'ERR_INVALID_ARG_TYPE' }, String(time));
  const fn = workerFn(new URL('./fixtures/worker-handlers.mjs', import.meta.url), { export: 'waking', threads: 1 });
  try {
    await assert.rejects(fn.run([1]), { code: 'ERR_INVALID_STATE' });
  } finally {
    await fn.close();
  }
});

test('ctx.wakeAt with a key in-process: a timer of the key replaces the pending one, ctx.cancelTimer cancels it; ctx.entry is undefined; bad keys are refused with a code', async () => {
  const keyed = streamFn(async function* keyed(events, ctx) {
    for await (const e of events) {
      assert.equal(ctx.entry, undefined);
      if (e.arm !== undefined) ctx.wakeAt(Date.now() + e.arm.after, { woke: e.arm.tag }, { key: e.arm.key });
      const cancelled = e.cancel === undefined ? undefined : ctx.cancelTimer(e.cancel);
      yield cancelled === undefined ? e : { ...e, cancelled };
      if (e.woke !== undefined) return;
    }
  });
  const stream = keyed.open();
  const out = [];
  const reading = (async () => {
    for await (const o of stream) out.push(o);
  })();
  // x: a replaced by b (b is the one that fires); y: c cancelled; a second cancel finds none.
  await stream.send({ arm: { key: 'x', after: 10, tag: 'a' } });
  await stream.send({ arm: { key: 'x', after: 30, tag: 'b' } });
  await stream.send({ arm: { key: 'y', after: 5, tag: 'c' } });
  await stream.send({ cancel: 'y' });
  await stream.send({ cancel: 'y' });
  await reading;
  assert.deepEqual(out.slice(3), [{ cancel: 'y', cancelled: true }, { cancel: 'y', cancelled: false }, { woke: 'b' }]);
  const bad = streamFn(async function* bad(events, ctx) {
    for await (const e of events) yield e.cancel ? ctx.cancelTimer(e.key) : ctx.wakeAt(0, 'x', e.options);
  });
  for (const options of [null, 'x', { key: 1 }]) await assert.rejects(bad.run([{ options }]), { code: 'ERR_INVALID_ARG_TYPE' }, String(options));
  await assert.rejects(bad.run([{ cancel: true, key: 1 }]), { code: 'ERR_INVALID_ARG_TYPE' });
});
