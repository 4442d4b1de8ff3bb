// velo-stream inside worker threads: each thread has its own streams, value
// table, scratch buffer and idle notifier; workers start, run and exit cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { runWorker } from './helpers/child.mjs';

const workerCode = `
  const { parentPort, workerData } = require('node:worker_threads');
  const { streamFn } = require('velo-stream');
  const fn = streamFn(async function* (events) {
    let sum = 0;
    for await (const e of events) { sum += e.n; yield { sum }; }
    yield { final: sum };
  }, { idleTimeout: 50 });
  (async () => {
    const out = await fn.run(Array.from({ length: workerData.n }, (_, i) => ({ n: i })));
    // An idle timeout inside the worker ends a stream too.
    const s = fn.open();
    await s.send({ n: 5 });
    const idle = [];
    for await (const o of s) idle.push(o);
    parentPort.postMessage({ last: out.at(-1), count: out.length, idle, open: fn.stats().open });
  })();
`;

// Exit code 0, no 'error' event, clean stderr (helpers/child.mjs).
async function sumInWorker(n) {
  const messages = await runWorker(workerCode, { eval: true, workerData: { n } });
  assert.equal(messages.length, 1);
  return messages[0];
}

test('stream functions run in worker threads alongside the main thread, idle timeouts included', async () => {
  const main = streamFn(async function* (events) {
    for await (const e of events) yield e * 2;
  });
  const [a, b, here] = await Promise.all([sumInWorker(10_000), sumInWorker(20_000), main.run([1, 2, 3])]);
  assert.deepEqual(a.last, { final: (10_000 * 9_999) / 2 });
  assert.equal(a.count, 10_001);
  assert.deepEqual(b.last, { final: (20_000 * 19_999) / 2 });
  assert.deepEqual(a.idle, [{ sum: 5 }, { final: 5 }]);
  assert.equal(a.open, 0);
  assert.deepEqual(here, [2, 4, 6]);
});
