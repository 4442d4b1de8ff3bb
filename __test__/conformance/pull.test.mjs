// Contract: a stream fed by a hostile source, for every cell (cells.mjs). A generator handler fed by an async
// source pulls its events from it directly (pull fusion, js/core/pull.ts); the other kinds read it with a sender.
// Either way, whatever the source does (waits for ever, throws, answers a bad result, ends early) and wherever the
// consumer leaves, every pending read settles, the stream ends the way the contract says, and the source is
// closed. Counts, not time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { cells } from './cells.mjs';
import { countedSource } from '../helpers/util.mjs';

/** An async source giving `{ i }` for i < `count`, then doing `then` (helpers/util.mjs). */
function hostile(count, then) {
  return countedSource(count, { then, value: (i) => ({ i }) });
}

/** Turns until `check()` holds (a worker answers on its own time), failing after about 5 s. */
async function until(check, what) {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await turn();
    await sleep(10);
  }
  assert.fail(`never: ${what}`);
}

for (const cell of cells()) {
  test(`${cell.name}: a source that ends early ends the input; every output comes, the stream is done`, async () => {
    const { source } = hostile(3, 'end');
    const s = cell.make({ buffer: 2 }).open();
    const out = [];
    for await (const v of s.feed(source)) out.push(v.i);
    assert.deepEqual(out, [0, 1, 2]);
    assert.equal(s.state, 'done');
    assert.equal(s.metrics.eventsIn, 3);
  });

  for (const how of ['throw', 'reject', 'bad']) {
    test(`${cell.name}: a source whose next() ${how === 'bad' ? 'answers a non-object' : how + 's'} fails the iteration with its error and cancels the stream`, async () => {
      const { source, state } = hostile(2, how);
      const s = cell.make({ buffer: 2 }).open();
      const out = [];
      await assert.rejects(
        (async () => {
          for await (const v of s.feed(source)) out.push(v.i);
        })(),
        (e) => (how === 'bad' ? e instanceof TypeError && /not an object/.test(e.message) : e === state.error),
      );
      assert.ok(out.length <= 2, `outputs ${out}`);
      assert.equal(s.state, 'cancelled');
    });
  }

  for (const at of [0, 1, 2]) {
    test(`${cell.name}: leaving after ${at} outputs while the source waits for ever cancels the stream and closes the source`, async () => {
      const { source, state } = hostile(at, 'hang');
      const s = cell.make({ buffer: 2 }).open();
      const out = [];
      const feed = s.feed(source);
      for (let k = 0; k < at; k++) out.push((await feed.next()).value.i);
      // A read now waits on the source, which never answers: cancelling settles it.
      const pending = at === 0 ? undefined : feed.next();
      await turn();
      if (pending === undefined) await feed.return();
      else {
        await s.cancel();
        const r = await pending;
        assert.equal(r.done, true);
        await feed.return();
      }
      assert.deepEqual(
        out,
        Array.from({ length: at }, (_, i) => i),
      );
      assert.equal(s.state, 'cancelled');
      await until(() => state.closed > 0 || at === 0, 'the source closed');
      if (at > 0) assert.equal(state.closed, 1, 'the source closed once');
    });
  }

  test(`${cell.name}: the idle deadline fails a stream whose source waits for ever, after its outputs, and closes the source`, async () => {
    const { source, state } = hostile(2, 'hang');
    const s = cell.make({ buffer: 2, idleTimeout: 150 }).open();
    const out = [];
    await assert.rejects(
      (async () => {
        for await (const v of s.feed(source)) out.push(v.i);
      })(),
      { code: 'ERR_VELO_SOURCE_STALLED' },
    );
    assert.deepEqual(out, [0, 1]);
    await until(() => state.closed === 1, 'the source closed');
  });

  test(`${cell.name}: events pulled from a source keep the idle clock running from each one`, async () => {
    // 8 events 60 ms apart against an idle timeout of 250 ms: no idle end.
    async function* slow() {
      for (let i = 0; i < 8; i++) {
        await sleep(60);
        yield { i };
      }
    }
    const s = cell.make({ buffer: 2, idleTimeout: 250 }).open();
    const out = [];
    for await (const v of s.feed(slow())) out.push(v.i);
    assert.deepEqual(out, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(s.metrics.eventsIn, 8);
  });

  test(`${cell.name}: a reader slower per output than the idle timeout gets every event of a source with events ready`, async () => {
    // Time spent waiting on the reader (the handler paused at a full output buffer, its source not asked) is not
    // the source's silence: no idle end.
    async function* ready() {
      for (let i = 0; i < 5; i++) yield { i };
    }
    const s = cell.make({ buffer: 1, idleTimeout: 40 }).open();
    const out = [];
    for await (const v of s.feed(ready())) {
      out.push(v.i);
      await sleep(90);
    }
    assert.deepEqual(out, [0, 1, 2, 3, 4]);
  });

  test(`${cell.name}: sends made while the stream is fed all arrive, each producer's in order`, async () => {
    let sending;
    async function* source() {
      for (let i = 0; i < 30; i++) {
        if (i % 7 === 0) await turn();
        yield { i, from: 'feed' };
      }
      // (The feed ends the input when its source ends: the sends come first.)
      await sending;
    }
    const s = cell.make({ buffer: 2 }).open();
    const feed = s.feed(source());
    sending = (async () => {
      for (let i = 0; i < 30; i++) await s.send({ i, from: 'send' });
    })();
    const out = [];
    for await (const v of feed) out.push(v);
    await sending;
    for (const from of ['feed', 'send']) {
      assert.deepEqual(
        out.filter((v) => v.from === from).map((v) => v.i),
        Array.from({ length: 30 }, (_, i) => i),
        from,
      );
    }
  });
}
