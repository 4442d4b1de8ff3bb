// Contract, for every cell (cells.mjs): a stream nobody references and nothing can end (idleTimeout 0, no
// read) is collected and counted cancelled, and never exhausts maxConcurrent; a read waiting on a stream
// that only that read references still settles across forced collections (the idle deadline ends it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { cells } from './cells.mjs';

/**
 * Forces collections until `check()` holds; fails after `rounds` (each a GC, a turn and 20 ms), saying `what()`
 * (made then: the state the collections left, not the one they started from).
 */
async function collectUntil(check, what, rounds = 200) {
  for (let i = 0; i < rounds; i++) {
    if (check()) return;
    globalThis.gc();
    await turn();
    await sleep(20);
  }
  assert.fail(`not collected: ${what()}`);
}

for (const cell of cells()) {
  test(`${cell.name}: abandoned streams are collected and cancelled, and their slots freed`, async () => {
    const fn = cell.make({ idleTimeout: 0, maxConcurrent: 30 });
    // Three rounds of the limit: an uncollected stream would make an open() throw ERR_VELO_STREAM_LIMIT.
    for (let round = 0; round < 3; round++) {
      await (async () => {
        for (let i = 0; i < 10; i++) await fn.open().send({ i });
      })();
      await collectUntil(
        () => fn.stats().open === 0,
        () => `round ${round}: ${JSON.stringify(fn.stats())}`,
      );
    }
    assert.equal(fn.stats().cancelled, 30);
  });

  test(`${cell.name}: a read that alone references its stream settles across collections`, async () => {
    const fn = cell.make({ idleTimeout: 200 });
    const read = await (async () => {
      const s = fn.open();
      await s.send({ i: 1 });
      assert.deepEqual(await s.recv(), { i: 1 });
      return {
        pending: s.recv().then(
          (v) => ({ v }),
          (e) => ({ code: e.code }),
        ),
      };
    })();
    let settled;
    void read.pending.then((r) => (settled = r));
    await collectUntil(
      () => settled !== undefined,
      () => 'the pending read',
    );
    assert.deepEqual(settled, { code: 'ERR_VELO_STREAM_CLOSED' });
  });
}
