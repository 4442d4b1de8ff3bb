// Contract: the output buffer overlaps producer and consumer, for every kind (cells.mjs). A handler (or task
// stage, or worker stream) paused at a full output buffer resumes once a reader has taken half of it, with no
// read waiting: it refills the buffer while the reader drains it (as a Node stream refills below its
// high-water mark). Checked by counts, not time: `metrics.eventsOut` (outputs the stream made) after reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { streamFn } from 'velo-stream';
import { KINDS } from './cells.mjs';

const BUFFER = 4;

/** Turns of the event loop (with a short sleep: a worker thread answers on its own time) until `f()` stops changing. */
async function settled(f) {
  let last = f();
  for (let still = 0; still < 20;) {
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
      assert.deepEqual(
        rest,
        Array.from({ length: 38 }, (_, i) => i + 2),
      );
    } finally {
      await s.cancel();
      await sending;
    }
  });
}

// A pipe's stages run ahead of each other within their bounds: while a stage waits on work of its own (a call, a
// timer), the stage before it takes the next events and makes their outputs, so stages that wait on I/O work at
// once (BENCHMARKS.md: `bench/pipe-overlap.mjs`). Checked by counts: the first stage's events all taken (the pipe's
// `bufferedIn` is its first stage's) while the next stage still holds its first item.
for (const kind of Object.keys(KINDS)) {
  test(`${kind} | generator: a stage works ahead of the next one while that waits on work of its own`, async () => {
    const held = [];
    const started = [];
    let release = false;
    const slow = streamFn(async function* (events) {
      for await (const e of events) {
        started.push(e.i);
        if (!release) await new Promise((resolve) => held.push(resolve));
        yield e.i;
      }
    });
    const s = KINDS[kind].make({ buffer: 16 }).pipe(slow).open();
    try {
      for (let i = 0; i < 10; i++) await s.send({ i });
      s.end();
      // (A worker thread starts and loads its module first.)
      for (let i = 0; i < 5000 && started.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 2));
      assert.equal(await settled(() => s.metrics.bufferedIn), 0, 'the stage before took every event meanwhile');
      assert.deepEqual(started, [0], 'the next stage still holds its first item');
      release = true;
      for (const resolve of held) resolve();
      const out = [];
      for await (const v of s) out.push(v);
      assert.deepEqual(
        out,
        Array.from({ length: 10 }, (_, i) => i),
      );
    } finally {
      await s.cancel();
    }
  });
}
