// Handlers and callers that do unusual things: the stream still ends cleanly,
// with a clear error where there is one, and nothing left open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamClosedError, streamFn } from 'velo-stream';
import { collect, isSettled, settle } from './helpers/util.mjs';

test('a handler whose iterator works, then throws from a later next(): the stream fails with that error', async () => {
  const late = new Error('late');
  let calls = 0;
  const fn = streamFn(() => ({
    [Symbol.asyncIterator]() {
      return {
        next() {
          calls++;
          if (calls === 1) return Promise.resolve({ value: 'first', done: false });
          throw late; // synchronously, not even a rejected promise
        },
      };
    },
  }));
  const s = fn.open();
  assert.equal(await s.recv(), 'first');
  await assert.rejects(s.recv(), (e) => e === late);
  assert.equal(s.state, 'failed');
  assert.equal(fn.stats().open, 0);
});

test('a handler that never reads its input: sends beyond the buffer wait, cancel releases them all', async () => {
  let finalized = false;
  const fn = streamFn(
    async function* (_events, ctx) {
      try {
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      } finally {
        finalized = true;
      }
    },
    { buffer: 3 },
  );
  const s = fn.open();
  const sends = Array.from({ length: 6 }, (_, i) => s.send(i));
  assert.ok(await isSettled(Promise.all(sends.slice(0, 3))), 'three fit in the buffer');
  assert.equal(await isSettled(sends[3]), false, 'the fourth waits');
  await s.cancel('bye');
  const results = await Promise.allSettled(sends.slice(3));
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof StreamClosedError && r.reason.cause === 'bye'));
  assert.ok(finalized);
  assert.equal(fn.stats().open, 0);
});

test('a handler that reads everything and yields nothing: run() resolves with no outputs', async () => {
  let seen = 0;
  const fn = streamFn(async function* (events) {
    for await (const _ of events) seen++;
  });
  assert.deepEqual(await fn.run(Array.from({ length: 5000 }, (_, i) => i)), []);
  assert.equal(seen, 5000);
});

test('a handler that ignores ctx.signal entirely, parked on its input, is still cleaned up by cancel', async () => {
  const log = [];
  const fn = streamFn(async function* (events) {
    try {
      for await (const e of events) log.push(e);
    } finally {
      log.push('finally');
    }
  });
  const s = fn.open();
  await s.send('a');
  await settle();
  await s.cancel();
  assert.deepEqual(log, ['a', 'finally']);
  assert.equal(fn.stats().open, 0);
});

test('the input iterator used by hand: overlapping next() calls each get their own event, in order', async () => {
  const fn = streamFn(async function* (events) {
    const it = events[Symbol.asyncIterator]();
    const [a, b] = await Promise.all([it.next(), it.next()]);
    yield [a.value, b.value];
    const c = await it.next();
    yield c;
  });
  const s = fn.open();
  const out = s.recv();
  await s.send(1);
  await s.send(2);
  assert.deepEqual(await out, [1, 2]);
  s.end();
  assert.deepEqual(await s.recv(), { value: undefined, done: true });
});

test('events that are promises or thenables are carried as they are, never awaited', async () => {
  const p = new Promise(() => {}); // never settles: awaiting it would hang
  const thenable = { then() {} };
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield [e];
  });
  const out = await fn.run([p, thenable]);
  assert.equal(out[0][0], p);
  assert.equal(out[1][0], thenable);
});

test('send() with no argument sends undefined; a stream of undefineds keeps its count', async () => {
  const fn = streamFn(async function* (events) {
    let n = 0;
    for await (const e of events) {
      assert.equal(e, undefined);
      n++;
    }
    yield n;
  });
  const s = fn.open();
  const reading = collect(s);
  await s.send();
  await s.send(undefined);
  s.end();
  assert.deepEqual(await reading, [2]);
});
