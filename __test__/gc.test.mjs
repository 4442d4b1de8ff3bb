// An abandoned stream that can never end (never ended, never cancelled, no idle
// deadline) is garbage collected with its handler, and gives its
// maxConcurrent slot back. (One whose idle deadline runs is held until the
// deadline ends it: idle-gc.test.mjs.) Needs --expose-gc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { collectUntil, settle } from './helpers/util.mjs';

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
    await collectUntil(() => finalized === N && fn.stats().open === 0, 'every abandoned stream collected');
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
  await collectUntil(() => fn.stats().open === 0 && tableSize() === before, 'every abandoned stream collected');
  assert.equal(fn.stats().open, 0);
  assert.equal(tableSize(), before, 'every table entry was freed');
});

test('a stream done within the turn that opened it frees its native state at once, and reads the same after', async () => {
  const { nativeStreams } = await import('#testing');
  // (Streams of the tests before, abandoned, are collected first.)
  await collectGarbage();
  const before = nativeStreams();
  const fn = streamFn(async function* (events) {
    for await (const e of events) if (e !== 2) yield e * 2;
  });
  const s = fn.open();
  await s.send(1);
  await s.send(2);
  await s.send(3);
  s.end();
  const out = [];
  for await (const x of s) out.push(x);
  assert.deepEqual(out, [2, 6]);
  assert.equal(nativeStreams(), before, 'freed without a collection');
  assert.equal(s.state, 'done');
  const m = s.metrics;
  assert.deepEqual(
    { ...m, openedAt: 0, durationMs: 0, queueWaitP50Us: 0, queueWaitP99Us: 0 },
    {
      eventsIn: 3,
      eventsOut: 2,
      bufferedIn: 0,
      bufferedOut: 0,
      backpressureWaits: 0,
      openedAt: 0,
      durationMs: 0,
      queueWaitP50Us: 0,
      queueWaitP99Us: 0,
    },
  );
  // (openedAt has a fraction of a ms; Date.now() is truncated to the ms.)
  assert.ok(m.openedAt > Date.now() - 60_000 && Math.floor(m.openedAt) <= Date.now(), `openedAt ${m.openedAt}`);
  assert.ok(m.durationMs >= 0 && m.queueWaitP99Us >= m.queueWaitP50Us);
  await settle(2);
  assert.deepEqual(s.metrics, m, 'a done stream keeps its final metrics');
  assert.equal(s.id, `s${s.id.slice(1)}`);
  assert.equal(s.end(), undefined);
  await assert.rejects(s.send(3), { code: 'ERR_VELO_STREAM_CLOSED' });
  await s.cancel();
  assert.equal(s.state, 'done');
  assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 1, failed: 0, cancelled: 0, rejected: 0 });
});

test('a stream done on a later turn is freed at once too, and its finalizer then finds nothing left', async () => {
  const { nativeStreams } = await import('#testing');
  // (Streams of the tests before, abandoned, are collected first.)
  await collectGarbage();
  const before = nativeStreams();
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  let finalized = 0;
  const registry = new FinalizationRegistry(() => finalized++);
  await (async () => {
    const s = fn.open();
    registry.register(s, 0);
    // Past the turn that opened it: its finalizer is registered.
    await settle(2);
    await s.send(1);
    s.end();
    for await (const _ of s);
    assert.equal(nativeStreams(), before);
    assert.equal(s.metrics.eventsOut, 1);
  })();
  for (let i = 0; i < 50 && finalized === 0; i++) await collectGarbage();
  assert.equal(finalized, 1, 'the stream was collected');
  assert.equal(nativeStreams(), before);
});

test('streams that end otherwise (failed, cancelled, abandoned) are freed by their finalizer once collected', async () => {
  const { nativeStreams } = await import('#testing');
  // (Streams of the tests before, abandoned, are collected first.)
  await collectGarbage();
  const before = nativeStreams();
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e === 'fail') throw new Error('x');
        yield e;
      }
    },
    { idleTimeout: 0 },
  );
  await (async () => {
    await assert.rejects(fn.run([1, 'fail']));
    const s = fn.open();
    await s.send(1);
    await s.cancel();
    void fn.open().send(2);
  })();
  // (The abandoned stream has native state from the turn after its open on: native-stream.ts, first-turn streams.)
  await new Promise(setImmediate);
  assert.equal(nativeStreams(), before + 3);
  await collectUntil(() => nativeStreams() === before, 'the three streams collected');
  assert.equal(nativeStreams(), before);
});
