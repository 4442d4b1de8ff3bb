// One handler instance per stream; events in order, exactly once; values by reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { collect, echo, settle } from './helpers/util.mjs';

test('the handler is called once per stream, at open, with ctx.id === stream.id', async () => {
  const calls = [];
  const fn = streamFn(async function* (events, ctx) {
    calls.push(ctx.id);
    for await (const e of events) yield e;
  });
  const a = fn.open();
  const b = fn.open();
  assert.deepEqual(calls, [a.id, b.id], 'called synchronously by open()');
  assert.notEqual(a.id, b.id);
  a.end();
  b.end();
  await collect(a);
  await collect(b);
  assert.equal(calls.length, 2);
  const ids = new Set();
  for (let i = 0; i < 1000; i++) {
    const s = streamFn(echo).open();
    ids.add(s.id);
    await s.cancel();
  }
  assert.equal(ids.size, 1000, 'ids are unique across functions');
});

test('state lives in one instance per stream and does not leak between streams', async () => {
  const fn = streamFn(async function* counter(events) {
    let n = 0;
    for await (const e of events) yield `${e}:${++n}`;
  });
  const [x, y] = await Promise.all([fn.run(['a', 'b', 'c']), fn.run(['d', 'e'])]);
  assert.deepEqual(x, ['a:1', 'b:2', 'c:3']);
  assert.deepEqual(y, ['d:1', 'e:2']);
});

test('events reach the handler in send order, each exactly once (awaited and un-awaited sends)', async () => {
  const seen = [];
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        seen.push(e);
        yield e;
      }
    },
    { buffer: 8 },
  );
  const s = fn.open();
  const reading = collect(s);
  for (let i = 0; i < 100; i++) await s.send(i);
  const pending = [];
  for (let i = 100; i < 1000; i++) pending.push(s.send(i)); // many more than the buffer, not awaited
  await Promise.all(pending);
  s.end();
  const out = await reading;
  const expected = Array.from({ length: 1000 }, (_, i) => i);
  assert.deepEqual(seen, expected);
  assert.deepEqual(out, expected);
});

test('run() preserves order and count for a large input through a small buffer', async () => {
  const fn = streamFn(echo, { buffer: 3 });
  const input = Array.from({ length: 10_000 }, (_, i) => i);
  assert.deepEqual(await fn.run(input), input);
});

test('objects and Buffers arrive as the same object; yielded objects reach the consumer as the same object', async () => {
  const sent = [{ a: 1 }, Buffer.alloc(64 * 1024, 7), [1, 2], new Map(), () => 1, Symbol('s')];
  const received = [];
  const made = [];
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      received.push(e);
      const out = { wrapped: e };
      made.push(out);
      yield out;
    }
  });
  const out = await fn.run(sent);
  sent.forEach((v, i) => assert.equal(received[i], v, `event ${i} is the same value`));
  made.forEach((v, i) => assert.equal(out[i], v, `output ${i} is the same object`));
});

test('primitives of every kind round-trip exactly', async () => {
  const values = [0, -0, 1.5, NaN, Infinity, -Infinity, '', 'héllo \u{1F600} \uD800', true, false, null, undefined, 2n ** 100n, -(2n ** 70n), 0n];
  const out = await streamFn(echo).run(values);
  assert.equal(out.length, values.length);
  values.forEach((v, i) => assert.ok(Object.is(out[i], v), `value ${i}: ${String(out[i])}`));
});

test('a handler may yield more or fewer outputs than events, including after its input ends', async () => {
  const fn = streamFn(async function* (events) {
    yield 'start';
    for await (const e of events) {
      if (e % 2) continue;
      yield e;
      yield e;
    }
    yield 'end';
  });
  assert.deepEqual(await fn.run([1, 2, 3, 4]), ['start', 2, 2, 4, 4, 'end']);
});

test('recv() and iteration read the same output queue', async () => {
  const fn = streamFn(echo);
  const s = fn.open();
  for (const e of [1, 2, 3, 4]) await s.send(e);
  s.end();
  assert.equal(await s.recv(), 1);
  const it = s[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 2, done: false });
  assert.equal(await s.recv(), 3);
  assert.deepEqual(await collect(s), [4]);
  await settle();
  assert.equal(s.state, 'done');
});
