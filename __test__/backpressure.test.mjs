// Both directions are bounded: senders wait, the handler pauses at its yield.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { collect, deferred, echo, isSettled, settle } from './helpers/util.mjs';

test('send() resolves while there is room and waits once `buffer` events are held', async () => {
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      await gate.promise; // takes nothing until released
      for await (const e of events) yield e;
    },
    { buffer: 4 },
  );
  const s = fn.open();
  for (let i = 0; i < 4; i++) assert.ok(await isSettled(s.send(i)), `send ${i} accepted`);
  const fifth = s.send(4);
  const sixth = s.send(5);
  assert.equal(await isSettled(fifth), false, 'the fifth send waits');
  assert.equal(s.metrics.bufferedIn, 4);
  assert.equal(s.metrics.backpressureWaits, 2);
  gate.resolve();
  await fifth;
  await sixth;
  s.end();
  assert.deepEqual(await collect(s), [0, 1, 2, 3, 4, 5]);
});

test('bufferedIn never exceeds `buffer` under a flood of un-awaited sends', async () => {
  const buffer = 16;
  let maxSeen = 0;
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        maxSeen = Math.max(maxSeen, s.metrics.bufferedIn);
        yield e;
      }
    },
    { buffer },
  );
  const s = fn.open();
  const reading = collect(s);
  const sends = [];
  for (let i = 0; i < 2000; i++) {
    sends.push(s.send(i));
    if (i % 97 === 0) {
      maxSeen = Math.max(maxSeen, s.metrics.bufferedIn);
      await settle(1);
    }
  }
  await Promise.all(sends);
  s.end();
  assert.equal((await reading).length, 2000);
  assert.ok(maxSeen <= buffer, `bufferedIn reached ${maxSeen}`);
  assert.ok(maxSeen > 0);
});

test('with nobody reading, the handler is paused at its yield once `buffer` outputs wait', async () => {
  let yielded = 0;
  const fn = streamFn(
    async function* () {
      for (;;) {
        yielded++;
        yield yielded;
      }
    },
    { buffer: 8 },
  );
  const s = fn.open();
  await settle(10);
  // 8 outputs held, the 9th waits at its yield: never dropped, never more.
  assert.equal(yielded, 9);
  assert.equal(s.metrics.bufferedOut, 8);
  assert.equal(s.metrics.eventsOut, 8);
  const first = [];
  for (let i = 0; i < 20; i++) first.push(await s.recv());
  assert.deepEqual(first, Array.from({ length: 20 }, (_, i) => i + 1));
  await settle(10);
  assert.ok(s.metrics.bufferedOut <= 8);
  await s.cancel();
});

test('a slow consumer never loses an output', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      yield e;
      yield -e;
    }
  }, { buffer: 2 });
  const s = fn.open();
  const feeding = (async () => {
    for (let i = 1; i <= 200; i++) await s.send(i);
    s.end();
  })();
  const out = [];
  for await (const v of s) {
    out.push(v);
    if (out.length % 13 === 0) await settle(1);
  }
  await feeding;
  assert.equal(out.length, 400);
  for (let i = 1; i <= 200; i++) assert.deepEqual(out.slice(2 * i - 2, 2 * i), [i, -i]);
});

test('run() of an endless-looking source only pulls what the buffers allow', async () => {
  let pulled = 0;
  function* source() {
    for (;;) {
      pulled++;
      yield pulled;
    }
  }
  const fn = streamFn(
    async function* (events) {
      let n = 0;
      for await (const e of events) {
        yield e;
        if (++n === 10) return;
      }
    },
    { buffer: 4 },
  );
  assert.deepEqual(await fn.run(source()), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(pulled <= 10 + 4 + 4 + 1, `pulled ${pulled}`);
  assert.equal(fn.stats().open, 0);
});

// Sends into a handler that is busy (not waiting for input), mixed with the
// other ways of sending: order and the bound hold whatever path each takes.
test('events sent to a busy handler keep their order with an array fed and events sent after them', async () => {
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      await gate.promise;
      for await (const e of events) yield e;
    },
    { buffer: 8 },
  );
  const s = fn.open();
  // (All in one turn of the event loop: nothing has had a chance to be handed on.)
  for (let i = 0; i < 3; i++) await s.send(i);
  const fed = collect(s.feed([3, 4, 5]));
  const late = s.send(6);
  gate.resolve();
  await late;
  s.end();
  assert.deepEqual(await fed, [0, 1, 2, 3, 4, 5, 6]);
});

test('a busy handler: sends resolve for exactly `buffer` events, whatever the sizes of the grants', async () => {
  for (const buffer of [1, 2, 5, 64]) {
    const gate = deferred();
    let taken = 0;
    const fn = streamFn(
      async function* (events) {
        await gate.promise;
        for await (const e of events) {
          taken++;
          yield e;
        }
      },
      { buffer },
    );
    const s = fn.open();
    const sends = Array.from({ length: buffer * 3 }, (_, i) => s.send(i));
    const settled = await Promise.all(sends.map((p) => isSettled(p)));
    assert.equal(settled.filter(Boolean).length, buffer, `buffer ${buffer}: accepted before the handler read`);
    assert.equal(s.metrics.bufferedIn, buffer);
    gate.resolve();
    const reading = collect(s);
    await Promise.all(sends);
    s.end();
    assert.deepEqual(await reading, Array.from({ length: buffer * 3 }, (_, i) => i));
    assert.equal(taken, buffer * 3);
  }
});
