// end(): the input finishes after what was sent; the handler may still yield.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamClosedError, streamFn } from 'velo-stream';
import { collect, deferred, echo, settle } from './helpers/util.mjs';

test('end() lets the handler finish after buffered events and sends called before end()', async () => {
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      await gate.promise;
      let n = 0;
      for await (const e of events) {
        n++;
        yield e;
      }
      yield `total ${n}`;
    },
    { buffer: 2 },
  );
  const s = fn.open();
  const sends = [1, 2, 3, 4, 5].map((e) => s.send(e)); // 3 of them wait for room
  s.end();
  s.end(); // idempotent
  assert.equal(s.state, 'ending');
  gate.resolve();
  // Read while the sends complete: with outputs unread, the handler would
  // rightly pause at its third yield and the last send would wait for ever.
  const reading = collect(s);
  await Promise.all(sends);
  assert.deepEqual(await reading, [1, 2, 3, 4, 5, 'total 5']);
  assert.equal(s.state, 'done');
});

test('send() after end() rejects with StreamClosedError', async () => {
  const s = streamFn(echo).open();
  s.end();
  await assert.rejects(s.send(1), (e) => e instanceof StreamClosedError && e.code === 'ERR_VELO_STREAM_CLOSED');
  await collect(s);
});

test('state is `ending` until the handler returned and every output was read, then `done`', async () => {
  const fn = streamFn(echo, { buffer: 4 });
  const s = fn.open();
  assert.equal(s.state, 'open');
  await s.send('a');
  await s.send('b');
  s.end();
  await settle();
  assert.equal(fn.stats().open, 0, 'the slot is freed when the handler returns, outputs unread');
  assert.equal(fn.stats().completed, 1);
  assert.equal(s.state, 'ending');
  assert.equal(await s.recv(), 'a');
  assert.equal(s.state, 'ending');
  assert.equal(await s.recv(), 'b');
  await assert.rejects(s.recv(), StreamClosedError);
  assert.equal(s.state, 'done');
});

test('a handler that returns without reading ends the stream; later sends reject', async () => {
  const fn = streamFn(async function* () {
    yield 'only';
  });
  const s = fn.open();
  assert.equal(await s.recv(), 'only');
  await assert.rejects(s.recv(), StreamClosedError);
  await assert.rejects(s.send(1), StreamClosedError);
  assert.equal(s.state, 'done');
});

test('sends waiting when the handler returns early are rejected, not left hanging', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        yield e;
        return;
      }
    },
    { buffer: 1 },
  );
  const s = fn.open();
  const sends = [1, 2, 3, 4].map((e) => s.send(e));
  const results = await Promise.allSettled(sends);
  assert.equal(results[0].status, 'fulfilled');
  assert.ok(results.slice(2).every((r) => r.status === 'rejected' && r.reason instanceof StreamClosedError));
  assert.deepEqual(await collect(s), [1]);
});

test('a handler that breaks out of its input stops accepting events', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      yield e;
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
    yield 'after';
  });
  const s = fn.open();
  await s.send(1);
  await settle();
  await assert.rejects(s.send(2), StreamClosedError);
  assert.deepEqual(await collect(s), [1, 'after']);
});
