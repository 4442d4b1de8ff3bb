// maxConcurrent: a per-function admission limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamLimitError, streamFn } from 'velo-stream';
import { collect, echo, settle } from './helpers/util.mjs';

test('open() throws StreamLimitError synchronously at the limit, and counts the refusal', async () => {
  const fn = streamFn(echo, { maxConcurrent: 2 });
  const a = fn.open();
  const b = fn.open();
  assert.throws(() => fn.open(), (e) => e instanceof StreamLimitError && e.code === 'ERR_VELO_STREAM_LIMIT');
  await assert.rejects(fn.run([1]), StreamLimitError);
  assert.deepEqual(fn.stats(), { open: 2, opened: 2, completed: 0, failed: 0, cancelled: 0, rejected: 2 });
  await a.cancel();
  const c = fn.open(); // a freed slot is reusable at once
  b.end();
  c.end();
  await collect(b);
  await collect(c);
  assert.deepEqual(fn.stats(), { open: 0, opened: 3, completed: 2, failed: 0, cancelled: 1, rejected: 2 });
});

test('the slot is freed when the handler returns, fails or is cancelled', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e === 'fail') throw new Error('x');
        if (e === 'return') return;
        yield e;
      }
    },
    { maxConcurrent: 1 },
  );
  for (const ending of ['return', 'fail', 'cancel', 'end']) {
    const s = fn.open();
    if (ending === 'cancel') await s.cancel();
    else if (ending === 'end') s.end();
    else await s.send(ending);
    await settle();
    assert.equal(fn.stats().open, 0, ending);
    await Promise.allSettled([collect(s)]);
  }
});

test('limits are per function, not shared between functions with equal settings', async () => {
  const f = streamFn(echo, { maxConcurrent: 1 });
  const g = streamFn(echo, { maxConcurrent: 1 });
  const a = f.open();
  const b = g.open();
  assert.throws(() => f.open(), StreamLimitError);
  await a.cancel();
  await b.cancel();
});

test('a storm of opens and closes never drifts the open count', async () => {
  const fn = streamFn(echo, { maxConcurrent: 50 });
  const live = new Set();
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    if (i % 3 !== 2) {
      try {
        live.add(fn.open());
      } catch (e) {
        assert.ok(e instanceof StreamLimitError);
        refused++;
      }
    } else {
      const s = live.values().next().value;
      if (s) {
        live.delete(s);
        if (i % 2) await s.cancel();
        else {
          s.end();
          await collect(s);
        }
      }
    }
    assert.equal(fn.stats().open, live.size);
  }
  assert.ok(refused > 0);
  assert.equal(fn.stats().rejected, refused);
  await Promise.all([...live].map((s) => s.cancel()));
  assert.equal(fn.stats().open, 0);
});

test("a pipe open refused by a later stage's limit starts no handler and leaves every stage's stats as they were", async () => {
  const calls = [];
  const first = streamFn(async function* first(events) {
    calls.push('first started');
    try {
      for await (const e of events) yield e;
    } finally {
      calls.push('first finally');
    }
  });
  const second = streamFn(echo, { name: 'second', maxConcurrent: 1 });
  const p = first.pipe(second);
  const held = second.open(); // the second stage's only slot
  const before = [first.stats(), second.stats()];
  assert.throws(
    () => p.open(),
    (e) => e instanceof StreamLimitError && e.code === 'ERR_VELO_STREAM_LIMIT' && /"second"/.test(e.message),
  );
  await assert.rejects(p.run([1]), StreamLimitError);
  await settle();
  assert.deepEqual(calls, [], 'no handler ran');
  assert.deepEqual([first.stats(), second.stats()], before, 'no stage counted an open, an ending or a refusal');
  assert.deepEqual(p.stats(), { open: 0, opened: 0, completed: 0, failed: 0, cancelled: 0, rejected: 2 });

  // A function that is a stage twice needs two slots.
  const one = streamFn(echo, { maxConcurrent: 1 });
  assert.throws(() => one.pipe(one).open(), StreamLimitError);
  assert.deepEqual(one.stats(), { open: 0, opened: 0, completed: 0, failed: 0, cancelled: 0, rejected: 0 });

  await held.cancel();
  assert.deepEqual(await p.run([1, 2]), [1, 2], 'with room again, the pipe opens');
  assert.deepEqual(calls, ['first started', 'first finally']);
});
