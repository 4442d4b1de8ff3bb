// A handler that throws: earlier outputs still arrive, then its very error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamClosedError, streamFn } from 'velo-stream';
import { collect, deferred, isSettled, settle, unhandledDuring } from './helpers/util.mjs';

test('outputs yielded before the throw are delivered in order, then the same error', async () => {
  const boom = new Error('boom');
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      if (e === 3) throw boom;
      yield e;
    }
  });
  const s = fn.open();
  for (const e of [1, 2, 3]) await s.send(e);
  await settle();
  assert.equal(s.state, 'failed');
  assert.equal(fn.stats().failed, 1);
  assert.equal(fn.stats().open, 0);
  assert.equal(await s.recv(), 1);
  assert.equal(await s.recv(), 2);
  await assert.rejects(s.recv(), (e) => e === boom);
});

test('iteration throws the handler error after the earlier outputs', async () => {
  const boom = new TypeError('bad');
  const fn = streamFn(async function* () {
    yield 'a';
    throw boom;
  });
  const s = fn.open();
  const got = [];
  await assert.rejects(
    (async () => {
      for await (const v of s) got.push(v);
    })(),
    (e) => e === boom,
  );
  assert.deepEqual(got, ['a']);
});

test('pending and later sends reject with StreamClosedError whose cause is the error', async () => {
  const boom = new Error('boom');
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      await gate.promise;
      throw boom;
    },
    { buffer: 1 },
  );
  const s = fn.open();
  await s.send(1);
  const pending = s.send(2);
  assert.equal(await isSettled(pending), false);
  gate.resolve();
  await assert.rejects(pending, (e) => e instanceof StreamClosedError && e.cause === boom);
  await assert.rejects(s.send(3), (e) => e instanceof StreamClosedError && e.cause === boom);
  await assert.rejects(s.recv(), (e) => e === boom);
});

test('run() rejects with the handler error', async () => {
  const boom = new Error('boom');
  const fn = streamFn(async function* (events) {
    for await (const e of events) if (e > 5) throw boom;
    yield 1;
  });
  await assert.rejects(fn.run([1, 2, 3, 6, 7]), (e) => e === boom);
  assert.equal(fn.stats().open, 0);
});

test('errors thrown in a finally block, before reading, and after the input ended are all delivered', async () => {
  const cases = {
    before: async function* () {
      throw new Error('before');
    },
    inFinally: async function* (events) {
      try {
        for await (const e of events) yield e;
      } finally {
        throw new Error('inFinally');
      }
    },
    afterInput: async function* (events) {
      for await (const e of events) yield e;
      throw new Error('afterInput');
    },
  };
  for (const [name, handler] of Object.entries(cases)) {
    const seen = await unhandledDuring(async () => {
      await assert.rejects(streamFn(handler).run([1]), new RegExp(name));
    });
    assert.deepEqual(seen, [], `${name}: no unhandled rejection`);
  }
});

test('a handler returning something that is not async-iterable fails on first read with ERR_INVALID_RETURN_VALUE', async () => {
  for (const handler of [() => 42, () => [1, 2], async () => 'x', () => (function* () {})()]) {
    const fn = streamFn(handler);
    const s = fn.open();
    await assert.rejects(s.recv(), (e) => e instanceof TypeError && e.code === 'ERR_INVALID_RETURN_VALUE');
    assert.equal(s.state, 'failed');
    assert.equal(fn.stats().open, 0);
  }
});

test('a handler written as async function (not async function*) that throws: the stream fails, nothing goes unhandled', async () => {
  const seen = await unhandledDuring(async () => {
    for (const handler of [
      async () => {
        throw new Error('thrown by an async function handler');
      },
      async (events) => {
        for await (const e of events) throw new Error(`late ${e}`);
      },
    ]) {
      const s = streamFn(handler).open();
      void s.send(1).catch(() => {});
      await assert.rejects(s.recv(), { code: 'ERR_INVALID_RETURN_VALUE' });
    }
  });
  assert.deepEqual(seen, []);
});

test('a handler that throws synchronously fails the stream', async () => {
  const boom = new Error('sync');
  const fn = streamFn(() => {
    throw boom;
  });
  const s = fn.open();
  await assert.rejects(s.recv(), (e) => e === boom);
  await assert.rejects(fn.run([1]), (e) => e === boom);
});

// The usual way to fail: a throw inside `for await`. Leaving the loop calls
// the input's return() before the error is known; sends must still get it.
for (const [name, cleanup] of [
  ['no finally', null],
  ['a synchronous finally', () => {}],
  [
    'an async finally that awaits promises',
    async () => {
      for (let i = 0; i < 20; i++) await Promise.resolve();
    },
  ],
  [
    'an async finally that awaits real cleanup (timers)',
    async () => {
      await sleep(20);
      await sleep(5);
    },
  ],
]) {
  test(`a throw inside for await: waiting, racing and later sends carry the error as cause (${name})`, async () => {
    const boom = new Error('boom');
    const gate = deferred();
    const fn = streamFn(
      async function* (events) {
        try {
          for await (const e of events) {
            await gate.promise;
            if (e === 1) throw boom;
          }
        } finally {
          if (cleanup) await cleanup();
        }
      },
      { buffer: 1 },
    );
    const s = fn.open();
    await s.send(1);
    await settle();
    await s.send(2);
    const waiting = [s.send(3), s.send(4)];
    assert.equal(await isSettled(waiting[0]), false);
    gate.resolve();
    // A send made while the throw is on its way out of the loop.
    await Promise.resolve();
    const racing = s.send(5);
    for (const p of [...waiting, racing]) {
      await assert.rejects(p, (e) => e instanceof StreamClosedError && e.cause === boom);
    }
    await assert.rejects(s.send(6), (e) => e instanceof StreamClosedError && e.cause === boom);
    await assert.rejects(s.recv(), (e) => e === boom);
  });
}

test('a handler that leaves its loop and keeps running: waiting sends are answered when it finishes, or by cancel()', async () => {
  for (const finish of ['returns', 'throws', 'is cancelled']) {
    const gate = deferred();
    const more = deferred();
    const late = new Error('late');
    const fn = streamFn(
      async function* (events) {
        for await (const e of events) {
          await gate.promise;
          break;
        }
        await more.promise; // still working after its loop
        if (finish === 'throws') throw late;
      },
      { buffer: 1 },
    );
    const s = fn.open();
    await s.send(1);
    await settle();
    await s.send(2);
    const waiting = s.send(3);
    gate.resolve();
    await settle();
    const later = s.send(4);
    assert.equal(await isSettled(waiting), false, `${finish}: still waiting while the handler runs`);
    assert.equal(await isSettled(later), false, finish);
    if (finish === 'is cancelled') void s.cancel();
    else more.resolve();
    for (const p of [waiting, later]) {
      await assert.rejects(p, (e) => {
        assert.ok(e instanceof StreamClosedError, finish);
        if (finish === 'throws') assert.equal(e.cause, late);
        else assert.equal(e.cause, undefined);
        if (finish === 'returns') assert.match(e.message, /has finished: its handler returned/);
        if (finish === 'throws') assert.match(e.message, /failed: its handler threw/);
        return true;
      });
    }
    more.resolve();
  }
});

test('un-awaited sends a closed stream refuses are never unhandled rejections; awaited, they reject', async () => {
  const failing = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e === 3) throw new Error('handler failed on 3');
        yield e;
      }
    },
    { buffer: 2 },
  );
  const firstTwo = streamFn(async function* (events) {
    let n = 0;
    for await (const e of events) {
      yield e;
      if (++n === 2) return;
    }
  });
  const awaited = [];
  const unhandled = await unhandledDuring(async () => {
    // A handler that fails: sends waiting for room, and sends after, are refused.
    const s1 = failing.open();
    for (let i = 0; i < 10; i++) s1.send(i);
    await assert.rejects(async () => {
      for await (const v of s1) void v;
    }, /handler failed on 3/);
    s1.send(10);
    awaited.push(s1.send(11));
    // A reader that leaves (a cancel), and a handler that returns early.
    const s2 = failing.open();
    for (let i = 0; i < 3; i++) s2.send(i);
    for await (const v of s2) if (v === 1) break;
    s2.send(12);
    const s3 = firstTwo.open();
    for (let i = 0; i < 8; i++) s3.send(i);
    s3.end();
    assert.deepEqual(await collect(s3), [0, 1]);
    awaited.push(s3.send(13));
  });
  assert.deepEqual(unhandled, []);
  for (const sent of awaited) await assert.rejects(sent, StreamClosedError);
});
