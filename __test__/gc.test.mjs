// An abandoned stream that can never end (never ended, never cancelled, no idle
// deadline) is garbage collected with its handler, and gives its
// maxConcurrent slot back. (One whose idle deadline runs is held until the
// deadline ends it: idle-gc.test.mjs.) Needs --expose-gc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { settle } from './helpers/util.mjs';

async function collectGarbage() {
  for (let i = 0; i < 10; i++) {
    global.gc();
    await settle(2);
  }
}

{
  const idleTimeout = 0;
  test('abandoned streams without an idle deadline are collected and free their slots', async () => {
    assert.equal(typeof global.gc, 'function', 'run with --expose-gc');
    let finalized = 0;
    const registry = new FinalizationRegistry(() => finalized++);
    const fn = streamFn(
      async function* (events) {
        for await (const e of events) yield e;
      },
      { idleTimeout, maxConcurrent: 10_000 },
    );
    const N = 1000;
    (() => {
      for (let i = 0; i < N; i++) {
        const s = fn.open();
        void s.send({ payload: new Array(16).fill(i) });
        registry.register(s, i);
      }
    })();
    await settle();
    assert.equal(fn.stats().open, N);
    await collectGarbage();
    assert.equal(finalized, N, 'every stream object was collected');
    assert.equal(fn.stats().open, 0, 'and every slot came back');
    assert.equal(fn.stats().cancelled, N);
    const { idleWatched } = await import('#testing');
    assert.equal(idleWatched(), 0, 'and no idle watch was left behind');
  });
}

test('the value table holds nothing once streams have ended, whatever the ending', async () => {
  const { tableSize } = await import('#testing');
  const before = tableSize();
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e.fail) throw new Error('x');
        yield { out: e };
      }
    },
    { buffer: 4, maxConcurrent: 10_000, idleTimeout: 0 },
  );
  const objects = (n) => Array.from({ length: n }, (_, i) => ({ i, s: 'v' + i }));
  await fn.run(objects(100)); // completed
  await assert.rejects(fn.run([...objects(3), { fail: true }, ...objects(20)])); // failed, buffered events dropped
  const s = fn.open(); // cancelled with events and outputs buffered, and sends waiting
  const pending = objects(20).map((o) => s.send(o).catch(() => {}));
  await settle();
  await s.cancel();
  await Promise.all(pending);
  const early = streamFn(async function* (events) {
    for await (const e of events) return yield e;
  }, { buffer: 2 });
  await early.run(objects(50)); // returned early, input dropped
  (() => {
    for (let i = 0; i < 200; i++) void fn.open().send({ abandoned: i }); // garbage collected
  })();
  await collectGarbage();
  assert.equal(fn.stats().open, 0);
  assert.equal(tableSize(), before, 'every table entry was freed');
});
