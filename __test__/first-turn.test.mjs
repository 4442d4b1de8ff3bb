// Streams in their first turn: no native state until the core is needed or the turn ends
// (js/core/native-stream.ts, `FirstTurnGate`), and every promise kept meanwhile: admission against
// maxConcurrent, stats, totals, metrics, ids, the idle end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn, StreamLimitError } from 'velo-stream';

const kTotals = Symbol.for('velo-stream.totals');
const turn = () => new Promise(setImmediate);
const echo = async function* (events) {
  for await (const e of events) yield e;
};

/** Open, one event, end, read to the end: all within the caller's turn. */
async function oneEvent(fn, event) {
  const s = fn.open();
  await s.send(event);
  s.end();
  const out = [];
  for await (const o of s) out.push(o);
  return { s, out };
}

test('a stream done in its first turn never gets native state', async () => {
  const { nativeStreams } = await import('#testing');
  const fn = streamFn(echo);
  const before = nativeStreams();
  for (let i = 0; i < 10; i++) assert.deepEqual((await oneEvent(fn, i)).out, [i]);
  assert.equal(nativeStreams(), before, 'no native stream was made');
  // One left open gets native state on the next turn.
  const s = fn.open();
  await s.send(1);
  assert.equal(nativeStreams(), before);
  await turn();
  assert.equal(nativeStreams(), before + 1, 'adopted the turn after its open');
  s.end();
  assert.deepEqual(await s.recv(), 1);
});

test('maxConcurrent counts streams in their first turn, and after it', async () => {
  const fn = streamFn(echo, { maxConcurrent: 2 });
  const a = fn.open();
  const b = fn.open();
  assert.throws(() => fn.open(), StreamLimitError);
  assert.deepEqual(pick(fn.stats()), { open: 2, opened: 2, completed: 0, cancelled: 0, rejected: 1 });
  await turn(); // both have native state now
  assert.throws(() => fn.open(), StreamLimitError);
  await a.cancel();
  const c = fn.open(); // a first-turn stream beside a native one
  assert.throws(() => fn.open(), StreamLimitError);
  assert.deepEqual(pick(fn.stats()), { open: 2, opened: 3, completed: 0, cancelled: 1, rejected: 3 });
  b.end();
  c.end();
  for await (const _ of b);
  for await (const _ of c);
  assert.deepEqual(pick(fn.stats()), { open: 0, opened: 3, completed: 2, cancelled: 1, rejected: 3 });
  // A pipe's stage counts them too: its stage is full while a first-turn stream holds the last place.
  const one = streamFn(echo, { maxConcurrent: 1 });
  const held = one.open();
  assert.throws(() => one.pipe(echo).open(), StreamLimitError);
  await held.cancel();
});

test('a stream done in its first turn is in stats() and the totals at once', async () => {
  const fn = streamFn(echo);
  for (let i = 0; i < 3; i++) await oneEvent(fn, i);
  // Still in the same turn: the report of the turn has not run.
  assert.deepEqual(pick(fn.stats()), { open: 0, opened: 3, completed: 3, cancelled: 0, rejected: 0 });
  await oneEvent(fn, 3);
  const totals = fn[kTotals]([0, 1000]);
  assert.equal(totals.eventsIn, 4);
  assert.equal(totals.eventsOut, 4);
  assert.equal(totals.queueWait.count, 4);
  assert.deepEqual(totals.queueWait.buckets, [
    [0, 4],
    [1000, 4],
  ]);
  // A stream still running in its first turn counts in the totals too.
  const s = fn.open();
  await s.send(9);
  await s.send(10);
  assert.equal(fn[kTotals]([0]).eventsIn, 6);
  s.end();
  for await (const _ of s);
  await turn();
  assert.deepEqual(pick(fn.stats()), { open: 0, opened: 5, completed: 5, cancelled: 0, rejected: 0 });
  assert.equal(fn[kTotals]([0]).eventsIn, 6);
});

test('the metrics of a stream done in its first turn', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      const until = performance.now() + e; // the clock durationMs is read from
      while (performance.now() < until); // busy: the stream stays in its turn
      yield e;
      yield e;
    }
  });
  const before = Date.now();
  const { s, out } = await oneEvent(fn, 20);
  assert.deepEqual(out, [20, 20]);
  assert.equal(s.state, 'done');
  const m = s.metrics;
  assert.deepEqual([m.eventsIn, m.eventsOut, m.bufferedIn, m.bufferedOut, m.backpressureWaits], [1, 2, 0, 0, 0]);
  assert.deepEqual([m.queueWaitP50Us, m.queueWaitP99Us], [0, 0]);
  assert.ok(m.openedAt >= before - 1 && m.openedAt <= Date.now() + 1, `openedAt ${m.openedAt}`);
  assert.ok(m.durationMs >= 20, `durationMs ${m.durationMs}`);
  await turn();
  assert.deepEqual(s.metrics, m, 'frozen once done');
});

test('a first-turn stream keeps its id and its figures when it gets native state', async () => {
  const fn = streamFn(echo);
  const s = fn.open();
  const t = fn.open();
  const id = s.id;
  assert.notEqual(id, t.id);
  assert.equal(s.state, 'open');
  await s.send(1);
  await s.send(2);
  assert.equal(s.metrics.eventsIn, 2); // the metrics give it native state
  await turn();
  assert.equal(s.id, id);
  await t.send(3);
  t.end();
  assert.equal(t.state, 'ending');
  await turn();
  assert.equal(t.state, 'ending');
  assert.deepEqual(await t.recv(), 3);
  s.end();
  assert.deepEqual([await s.recv(), await s.recv()], [1, 2]);
  for await (const _ of t);
  assert.equal(t.metrics.eventsIn, 1);
  assert.equal(t.state, 'done');
  // A done one keeps its id too, asked for only at the end.
  const { s: u } = await oneEvent(fn, 4);
  assert.match(u.id, /^s\d+$/);
  assert.equal(u.id, u.id);
  assert.ok(![id, t.id].includes(u.id));
});

test('a first-turn stream ends by its idle deadline, never before it', async () => {
  const fn = streamFn(echo, { idleTimeout: 60 });
  for (const askId of [false, true]) {
    const opened = performance.now();
    const s = fn.open();
    // (Its key, asked for in its first turn, is its idle deadline's key once it has native state.)
    if (askId) assert.match(s.id, /^s\d+$/);
    await s.send(1);
    const out = [];
    const reading = (async () => {
      for await (const o of s) out.push(o);
    })();
    let timer;
    const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no idle end within 2 s')), 2000)));
    await Promise.race([reading, late]).finally(() => clearTimeout(timer));
    assert.deepEqual(out, [1]);
    assert.ok(performance.now() - opened >= 59, `ended after ${performance.now() - opened} ms`);
  }
});

function pick({ open, opened, completed, cancelled, rejected }) {
  return { open, opened, completed, cancelled, rejected };
}
