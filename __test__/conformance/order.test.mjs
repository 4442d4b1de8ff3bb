// Contract: order and exactly once, for every cell (cells.mjs): run(), live send/recv, feed(), and several
// next() calls pending at once on the stream's output (and on the handler's input, for kinds with a handler).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn, workerFn } from 'velo-stream';
import { EVENTS, HANDLERS, cells } from './cells.mjs';
import * as handlers from './handlers.mjs';

for (const cell of cells()) {
  test(`${cell.name}: run() gives every event once, in order`, async () => {
    assert.deepEqual(await cell.make({ buffer: 4 }).run(EVENTS), EVENTS);
  });

  test(`${cell.name}: live send and recv, one at a time and ahead of the reader`, async () => {
    const s = cell.make({ buffer: 4 }).open();
    for (const e of EVENTS.slice(0, 5)) {
      await s.send(e);
      assert.deepEqual(await s.recv(), e);
    }
    const sending = (async () => {
      for (const e of EVENTS.slice(5)) await s.send(e);
      s.end();
    })();
    const rest = [];
    for await (const v of s) rest.push(v);
    await sending;
    assert.deepEqual(rest, EVENTS.slice(5));
    assert.equal(s.state, 'done');
  });

  test(`${cell.name}: feed() of an async source`, async () => {
    async function* source() {
      for (const e of EVENTS) yield e;
    }
    const out = [];
    for await (const v of cell.make({ buffer: 2 }).open().feed(source())) out.push(v);
    assert.deepEqual(out, EVENTS);
  });

  test(`${cell.name}: several next() calls pending on the output are served in order`, async () => {
    const s = cell.make({ buffer: 4 }).open();
    const it = s[Symbol.asyncIterator]();
    const pending = [it.next(), it.next(), it.next(), it.next()];
    for (const e of EVENTS.slice(0, 3)) await s.send(e);
    s.end();
    const results = await Promise.all(pending);
    assert.deepEqual(
      results.map((r) => (r.done ? 'done' : r.value)),
      [...EVENTS.slice(0, 3), 'done'],
    );
  });
}

// Several next() calls pending on the handler's own input: the kinds whose handler iterates it.
for (const [name, make] of [
  ['generator', () => streamFn(handlers.pairs)],
  ['worker', () => workerFn(HANDLERS, { export: 'pairs', threads: 1 })],
  ['worker transfer', () => workerFn(HANDLERS, { export: 'pairs', threads: 1, transfer: true })],
]) {
  test(`${name}: a handler with two next() calls pending on its input gets the events in order`, async () => {
    assert.deepEqual(await make().run([1, 2, 3, 4]), [
      [1, 2],
      [3, 4],
    ]);
    assert.deepEqual(await make().run([1, 2, 3]), [[1, 2], [3]]);
    const s = make().open();
    const out = s.recv();
    await s.send('a');
    await s.send('b');
    assert.deepEqual(await out, ['a', 'b']);
    s.end();
  });
}
