// Contract: a stream's state after end() says whether outputs are left to read, the same for every cell
// (cells.mjs): `ending` while any output is unread, even after every handler (or call) has finished; `done` as
// soon as the last output is read, with no further read; and a cancel() with outputs unread cancels, dropping
// them (reads reject with ERR_VELO_STREAM_CLOSED), as breaking out of feed() does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { cells } from './cells.mjs';

const SIX = [1, 2, 3, 4, 5, 6].map((i) => ({ i }));

/** A stream of `fn` given six events and ended, three outputs read, after every stage finished. */
async function threeUnread(fn) {
  const completed = fn.stats().completed;
  const s = fn.open();
  for (const e of SIX) await s.send(e);
  s.end();
  const read = [await s.recv(), await s.recv(), await s.recv()];
  assert.deepEqual(read, SIX.slice(0, 3));
  // Every stage finished (its handler returned, or its calls settled): counted completed.
  while (fn.stats().completed === completed) await turn();
  return s;
}

const closed = (s) =>
  s.recv().then(
    (v) => assert.fail(`read ${JSON.stringify(v)}`),
    (e) => e.code,
  );

for (const cell of cells()) {
  test(`${cell.name}: ending while outputs are unread, done at the last read, cancelled by cancel() or a break`, async () => {
    const fn = cell.make({ buffer: 16 });
    const s = await threeUnread(fn);
    assert.equal(s.state, 'ending');
    assert.equal(s.metrics.bufferedOut, 3);
    assert.deepEqual([await s.recv(), await s.recv(), await s.recv()], SIX.slice(3));
    assert.equal(s.state, 'done');
    assert.equal(await closed(s), 'ERR_VELO_STREAM_CLOSED');

    const c = await threeUnread(fn);
    await c.cancel('stop');
    assert.equal(c.state, 'cancelled');
    assert.equal(await closed(c), 'ERR_VELO_STREAM_CLOSED');

    const f = fn.open();
    const out = [];
    for await (const x of f.feed(SIX)) {
      out.push(x);
      if (out.length === 2) break;
    }
    assert.equal(f.state, 'cancelled');
    assert.equal(await closed(f), 'ERR_VELO_STREAM_CLOSED');
  });
}
