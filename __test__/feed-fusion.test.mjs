// Pull fusion, output side (kFuse in js/core/protocol.ts): a generator handler that pulls its events from the async
// source of feed(), read by that feed's iteration only, runs as it is read. Each read runs it to its next output;
// between reads it waits at its yield. What that changes (no running ahead), what it must not change (every output
// once and in order, cancel and break while it waits at its yield, the idle clock, metrics, errors), and the
// shapes that keep running ahead (an array source, a batch reader).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { streamFn } from 'velo-stream';
import { countedSource } from './helpers/util.mjs';

const kDrain = Symbol.for('velo-stream.drain');

/** An async source of 0 .. count-1 (then it ends, or waits for ever with `hang`), counting what was asked and closed. */
function counted(count, hang = false) {
  return countedSource(count, { then: hang ? 'hang' : 'end' });
}

async function turns(n = 10) {
  for (let i = 0; i < n; i++) await turn();
}

/** Jobs of the microtask queue, within the turn: a reader that comes back within it keeps the stream fused. */
async function ticks(n = 50) {
  for (let i = 0; i < n; i++) await null;
}

/** Three outputs per event: a handler that would run ahead if it could. */
const triple = () =>
  streamFn(
    async function* (events) {
      for await (const e of events) yield* [e, e, e];
    },
    { buffer: 8 },
  );

test('fused: the handler runs only as the feed reads, nothing made ahead of the read', async () => {
  const { source, state } = counted(5);
  const s = triple().open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 0, done: false });
  await ticks();
  assert.equal(s.metrics.eventsOut, 1, 'one output made, the one read');
  assert.equal(s.metrics.bufferedOut, 0);
  assert.equal(state.asked, 1, 'one event asked of the source');
  const rest = [];
  for (let r = await it.next(); !r.done; r = await it.next()) {
    rest.push(r.value);
    await ticks();
    assert.equal(s.metrics.eventsOut, rest.length + 1, 'each read made one output');
  }
  assert.deepEqual(rest, [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
  assert.equal(s.state, 'done');
  assert.equal(s.metrics.eventsIn, 5);
  assert.equal(s.metrics.eventsOut, 15);
});

test('not fused: with an array source the handler runs ahead into the output buffer, within its bound', async () => {
  const s = triple().open();
  const it = s.feed([0, 1, 2, 3, 4])[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 0, done: false });
  await turns();
  assert.ok(s.metrics.eventsOut > 1, `made ${s.metrics.eventsOut} ahead of the reads`);
  assert.ok(s.metrics.bufferedOut <= 8);
  const rest = [];
  for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
  assert.equal(rest.length, 14);
});

test('a batch reader makes a fused stream run ahead again, and every output still comes once, in order', async () => {
  const { source } = counted(4);
  const s = triple().open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 0, done: false });
  await ticks();
  assert.equal(s.metrics.eventsOut, 1);
  const batch = [];
  s[kDrain](batch);
  await turns();
  assert.ok(s.metrics.eventsOut > 1, 'it ran ahead once a batch reader came');
  const rest = [];
  for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
  assert.deepEqual([...batch, ...rest], [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
});

test('recv() beside the feed: both read the one queue, each output once and in order', async () => {
  const { source } = counted(20);
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const s = fn.open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  const got = [];
  for (;;) {
    const [a, b] = await Promise.all([it.next(), s.recv().then((value) => ({ value, done: false }), () => ({ done: true }))]);
    if (!a.done) got.push(a.value);
    if (!b.done) got.push(b.value);
    if (a.done || b.done) break;
  }
  for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
  assert.deepEqual(
    got.sort((x, y) => x - y),
    Array.from({ length: 20 }, (_, i) => i),
  );
});

for (const how of ['break', 'feed.cancel()', 'stream.cancel()', 'abort']) {
  test(`${how} while the handler waits at its yield between reads: its finally runs, the source is closed, nothing waits`, async () => {
    let finalized = 0;
    const fn = streamFn(async function* (events) {
      try {
        for await (const e of events) yield e;
      } finally {
        finalized++;
      }
    });
    const { source, state } = counted(10, true);
    const controller = new AbortController();
    const s = fn.open({ signal: controller.signal });
    const feed = s.feed(source);
    let read = 0;
    let failure;
    try {
      for await (const v of feed) {
        assert.equal(v, read++);
        if (read < 3) continue;
        await ticks();
        assert.equal(s.metrics.eventsOut, 3, 'waiting at its yield');
        if (how === 'break') break;
        if (how === 'feed.cancel()') await feed.cancel();
        if (how === 'stream.cancel()') await s.cancel();
        if (how === 'abort') controller.abort(new Error('gone'));
      }
    } catch (error) {
      failure = error;
    }
    await turns();
    if (how === 'abort') assert.equal(failure?.message, 'gone');
    else assert.equal(failure, undefined);
    assert.equal(read, 3);
    assert.equal(finalized, 1, "the handler's finally ran once");
    assert.equal(state.closed, 1, 'the source was closed');
    assert.equal(s.state, 'cancelled');
    assert.equal(fn.stats().open, 0);
  });
}

test('cancel while a fused handler awaits work of its own: the pending read settles at once', async () => {
  let finalized = false;
  const fn = streamFn(async function* (events, ctx) {
    try {
      for await (const e of events) {
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        yield e;
      }
    } finally {
      finalized = true;
    }
  });
  const { source } = counted(3);
  const s = fn.open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  const pending = it.next();
  await turns();
  await s.cancel();
  assert.deepEqual(await pending, { done: true, value: undefined });
  assert.equal(finalized, true);
});

test("a fused handler's error reaches the read with its identity, after the outputs made before it", async () => {
  const boom = new Error('boom');
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      if (e === 3) throw boom;
      yield e;
    }
  });
  const { source, state } = counted(10);
  const s = fn.open();
  const got = [];
  await assert.rejects(
    (async () => {
      for await (const v of s.feed(source)) got.push(v);
    })(),
    (error) => error === boom,
  );
  assert.deepEqual(got, [0, 1, 2]);
  assert.equal(s.state, 'failed');
  assert.equal(state.closed, 1, 'the source was closed');
});

test('the idle clock: a slow reader does not end a fused stream, a silent source does', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 60 },
  );
  // The reader takes 4 idle periods between reads while the source always has the next event: not idle.
  const slow = counted(3);
  const s1 = fn.open();
  const got = [];
  for await (const v of s1.feed(slow.source)) {
    got.push(v);
    await sleep(240);
  }
  assert.deepEqual(got, [0, 1, 2]);
  assert.equal(s1.state, 'done');
  // The source answers nothing after its first event: it stalled, and the feed fails after its output.
  const silent = counted(1, true);
  const s2 = fn.open();
  const got2 = [];
  await assert.rejects(
    async () => {
      for await (const v of s2.feed(silent.source)) got2.push(v);
    },
    { code: 'ERR_VELO_SOURCE_STALLED' },
  );
  assert.deepEqual(got2, [0]);
  assert.equal(s2.state, 'failed');
  assert.equal(silent.state.closed, 1, 'the silent source was closed');
});

test('maxConcurrent and stats hold for fused streams', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { maxConcurrent: 2 },
  );
  const a = fn.open();
  const b = fn.open();
  assert.throws(() => fn.open(), { name: 'StreamLimitError' });
  const [ra, rb] = await Promise.all(
    [a, b].map(async (s) => {
      const out = [];
      for await (const v of s.feed(counted(50).source)) out.push(v);
      return out.length;
    }),
  );
  assert.equal(ra + rb, 100);
  const stats = fn.stats();
  assert.equal(stats.open, 0);
  assert.equal(stats.completed, 2);
  assert.equal(stats.rejected, 1);
  assert.equal(a.metrics.eventsIn + b.metrics.eventsIn, 100);
  assert.equal(a.metrics.eventsOut + b.metrics.eventsOut, 100);
});

test('a reader that does not come back within the turn: the handler runs ahead again, finishes and frees its slot', async () => {
  // Read the first output only and drop the iteration (a "first result"): the handler must not wait at its
  // yield for a read that never comes. It runs to its end as an unfused one does.
  let finalized = 0;
  const fn = streamFn(
    async function* (events) {
      try {
        for await (const e of events) yield e * 2;
      } finally {
        finalized++;
      }
    },
    { maxConcurrent: 2 },
  );
  async function* two(x) {
    yield x;
    yield x + 1;
  }
  for (let i = 0; i < 4; i++) {
    const s = fn.open();
    const { value } = await s.feed(two(10 * i))[Symbol.asyncIterator]().next();
    assert.equal(value, 20 * i);
    await turns();
    assert.equal(s.state, 'ending', 'its handler returned; one output is left unread');
    assert.equal(s.metrics.eventsOut, 2);
  }
  assert.equal(finalized, 4);
  const stats = fn.stats();
  assert.equal(stats.open, 0, 'every slot was freed');
  assert.equal(stats.completed, 4);
});

test('an abandoned fused feed with a read pending and a silent source fails by its idle timeout: finally runs, counted failed', async () => {
  let finalized = 0;
  const fn = streamFn(
    async function* (events) {
      try {
        for await (const e of events) yield e;
        yield 'after';
      } finally {
        finalized++;
      }
    },
    { idleTimeout: 50 },
  );
  const reads = [];
  async function abandon() {
    const it = fn.open().feed(counted(1, true).source)[Symbol.asyncIterator]();
    reads.push((await it.next()).value);
    it.next().then(
      (r) => reads.push(r.value),
      (e) => reads.push(e.code),
    );
  }
  for (let i = 0; i < 5; i++) await abandon();
  for (let k = 0; k < 40 && finalized < 5; k++) {
    await sleep(25);
    globalThis.gc?.();
  }
  assert.equal(finalized, 5, 'every finally ran');
  // (The stall is the handler's input failing: its loop throws, so no 'after'.)
  assert.deepEqual(reads.sort(), [0, 0, 0, 0, 0, ...Array(5).fill('ERR_VELO_SOURCE_STALLED')]);
  const stats = fn.stats();
  assert.equal(stats.failed, 5);
  assert.equal(stats.completed, 0);
  assert.equal(stats.cancelled, 0);
  assert.equal(stats.open, 0);
});
