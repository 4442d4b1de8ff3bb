// The iterator feed() returns keeps an async generator's rules: calls made
// while one waits run after it, return() or throw() before the first next()
// reads nothing (and, as leaving later does, cancels the stream and closes the
// source), leaving it early stops the stream and the source (also while
// the source never settles), and once finished every call answers done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { settle } from './helpers/util.mjs';

/** A source that counts its reads and waits for ever after `n` events; `returned` once its return() ran. */
function stuckSource(n) {
  const state = { reads: 0, returned: false };
  const it = {
    next() {
      state.reads++;
      if (state.reads <= n) return Promise.resolve({ value: state.reads, done: false });
      return new Promise(() => {});
    },
    return() {
      state.returned = true;
      return Promise.resolve({ done: true, value: undefined });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  return { it, state };
}

function echoFn(log) {
  return streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
    } finally {
      log.push('finally');
    }
  });
}

test('return() before the first next() reads nothing, cancels the stream and closes the source', async () => {
  const log = [];
  const { it: source, state } = stuckSource(3);
  const s = echoFn(log).open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  assert.deepEqual(await it.return('r'), { done: true, value: 'r' });
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  await settle();
  assert.equal(state.reads, 0);
  assert.equal(state.returned, true);
  assert.equal(s.state, 'cancelled');
});

test('throw() before the first next() rejects with its error, reads nothing, cancels the stream and closes the source', async () => {
  const { it: source, state } = stuckSource(3);
  const s = echoFn([]).open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  const error = new Error('stop');
  await assert.rejects(it.throw(error), (e) => e === error);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  assert.equal(state.reads, 0);
  assert.equal(state.returned, true);
  assert.equal(s.state, 'cancelled');
});

test('return() made while a next() waits runs after it (as a generator queues it); feed.cancel() ends the wait at once, also on a source that never settles', async () => {
  const log = [];
  const { it: source, state } = stuckSource(1);
  const s = echoFn(log).open();
  const feed = s.feed(source);
  const it = feed[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  const order = [];
  const read = it.next().then((r) => order.push(['next', r]));
  const returned = it.return('r').then((r) => order.push(['return', r]));
  await settle();
  assert.deepEqual(order, []);
  assert.equal(s.state, 'open');
  await feed.cancel();
  await Promise.all([returned, read]);
  assert.deepEqual(order, [
    ['next', { done: true, value: undefined }],
    ['return', { done: true, value: 'r' }],
  ]);
  assert.equal(s.state, 'cancelled');
  assert.deepEqual(log, ['finally']);
  assert.equal(state.returned, true);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('throw() after an output cancels the stream, closes the source and rejects with its error', async () => {
  const log = [];
  const { it: source, state } = stuckSource(1);
  const s = echoFn(log).open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  const error = new Error('consumer failed');
  await assert.rejects(it.throw(error), (e) => e === error);
  assert.equal(s.state, 'cancelled');
  assert.deepEqual(log, ['finally']);
  assert.equal(state.returned, true);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test('a consumer that stops pulling bounds the source: it is read only as far as the buffers allow', async () => {
  const buffer = 4;
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { buffer },
  );
  let reads = 0;
  async function* source() {
    for (;;) {
      reads++;
      yield reads;
    }
  }
  const s = fn.open();
  const it = s.feed(source())[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await settle();
  const held = reads;
  // The input buffer, the output buffer, the event in the handler's hands and the one the sender holds, at most.
  assert.ok(held <= 2 * buffer + 3, `read ${held} events`);
  await settle();
  assert.equal(reads, held);
  await it.return();
  assert.equal(s.state, 'cancelled');
});

test('after the last output every call answers done, and the source error comes once', async () => {
  const fn = echoFn([]);
  const bad = new Error('source broke');
  async function* source() {
    yield 1;
    throw bad;
  }
  const it = fn.open().feed(source())[Symbol.asyncIterator]();
  const results = [];
  for (;;) {
    try {
      const r = await it.next();
      results.push(r);
      if (r.done) break;
    } catch (error) {
      results.push(error);
      break;
    }
  }
  assert.equal(results.at(-1), bad);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  assert.deepEqual(await it.return('x'), { done: true, value: 'x' });
});

// What the HTTP writers take along with an output they read (protocol.ts): the
// outputs ready with it, from the feed; once the feed's cancel() is called,
// none, even from a stream whose handler has returned and still holds outputs.
test('the outputs ready with one read (kReadNow) come in order, and none once cancel() is called', async () => {
  const kReadNow = Symbol.for('velo-stream.readNow');
  const kSettle = Symbol.for('velo-stream.settle');
  const NOT_NOW = Symbol.for('velo-stream.notNow');
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e * 10;
  });
  const s = fn.open();
  const outputs = s.feed([1, 2, 3, 4, 5]);
  const it = outputs[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 10, done: false });
  // Until the handler stops (it has returned here: the source is an array).
  for (let i = 0; i < 10; i++) await outputs[kSettle]();
  assert.equal(outputs[kReadNow](), 20);
  assert.equal(outputs[kReadNow](), 30);
  await outputs.cancel();
  assert.equal(outputs[kReadNow](), NOT_NOW);
  assert.deepEqual(await it.next(), { value: undefined, done: true });
});

test("an iteration's end, changed by whoever read it, changes no other: outputs, a handler's input, feed(), a pipe", async () => {
  const ends = [];
  const echo = streamFn(async function* (events) {
    // (Bounded: an end changed for every reader would read as events for ever.)
    for (let i = 0; i < 10; i++) {
      const r = await events.next();
      if (r.done) {
        ends.push({ ...r });
        r.done = false;
        r.value = 'changed';
        return;
      }
      yield r.value;
    }
  });
  const readEnd = async (iterable) => {
    const it = iterable[Symbol.asyncIterator]();
    for (let i = 0; i < 10; i++) {
      const r = await it.next();
      if (r.done) {
        const seen = { ...r };
        r.done = false;
        r.value = 'changed';
        return seen;
      }
    }
    return 'no end';
  };
  for (let i = 0; i < 2; i++) {
    const s = echo.open();
    await s.send(1);
    s.end();
    assert.deepEqual(await readEnd(s), { value: undefined, done: true });
    assert.deepEqual(await s[Symbol.asyncIterator]().next(), { value: undefined, done: true });
    assert.deepEqual(await readEnd(echo.open().feed([1, 2])), { value: undefined, done: true });
    assert.deepEqual(await readEnd(echo.pipe(echo).open().feed([1])), { value: undefined, done: true });
  }
  assert.ok(ends.length >= 2);
  for (const end of ends) assert.deepEqual(end, { value: undefined, done: true });
});
