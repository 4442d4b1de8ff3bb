// Contract: the output buffer overlaps producer and consumer, for every kind (cells.mjs). A handler (or task
// stage, or worker stream) paused at a full output buffer resumes once a reader has taken half of it, with no
// read waiting: it refills the buffer while the reader drains it (as a Node stream refills below its
// high-water mark). Checked by counts, not time: `metrics.eventsOut` (outputs the stream made) after reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { KINDS } from './cells.mjs';

const BUFFER = 4;

/** Turns of the event loop (with a short sleep: a worker thread answers on its own time) until `f()` stops changing. */
async function settled(f) {
  let last = f();
  for (let still = 0; still < 20; ) {
    await turn();
    await new Promise((resolve) => setTimeout(resolve, 2));
    const now = f();
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}

for (const kind of Object.keys(KINDS)) {
  test(`${kind}: paused at a full output buffer, it resumes once half the buffer was read, with no read waiting`, async () => {
    const s = KINDS[kind].make({ buffer: BUFFER }).open();
    const sending = (async () => {
      for (let i = 0; i < 40; i++) await s.send({ i }).catch(() => {});
      s.end();
    })();
    try {
      // (A worker thread starts and loads its module first.)
      for (let i = 0; i < 5000 && s.metrics.bufferedOut < BUFFER; i++) await new Promise((resolve) => setTimeout(resolve, 2));
      const made = await settled(() => s.metrics.eventsOut);
      assert.equal(s.metrics.bufferedOut, BUFFER, 'the output buffer is full and the producer waits');
      assert.deepEqual(await s.recv(), { i: 0 });
      assert.deepEqual(await s.recv(), { i: 1 });
      const after = await settled(() => s.metrics.eventsOut);
      assert.ok(after >= made + 2, `made ${made} before the reads, ${after} after two (no read waiting): it resumed`);
      assert.ok(s.metrics.bufferedOut <= BUFFER, 'still bounded');
      // Every output still comes, in order, exactly once.
      const rest = [];
      for await (const v of s) rest.push(v.i);
      assert.deepEqual(rest, Array.from({ length: 38 }, (_, i) => i + 2));
    } finally {
      await s.cancel();
      await sending;
    }
  });
}
