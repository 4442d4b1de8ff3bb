// velo-stream inside worker threads: each thread has its own streams, value
// table, scratch buffer and idle notifier; workers start, run and exit cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { streamFn } from 'velo-stream';

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

function runWorker(n) {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerCode, { eval: true, workerData: { n } });
    let message;
    w.once('message', (m) => (message = m));
    w.once('error', reject);
    w.once('exit', (code) => (code === 0 ? resolve(message) : reject(new Error(`worker exited ${code}`))));
  });
}

test('stream functions run in worker threads alongside the main thread, idle timeouts included', async () => {
  const main = streamFn(async function* (events) {
    for await (const e of events) yield e * 2;
  });
  const [a, b, here] = await Promise.all([runWorker(10_000), runWorker(20_000), main.run([1, 2, 3])]);
  assert.deepEqual(a.last, { final: (10_000 * 9_999) / 2 });
  assert.equal(a.count, 10_001);
  assert.deepEqual(b.last, { final: (20_000 * 19_999) / 2 });
  assert.deepEqual(a.idle, [{ sum: 5 }, { final: 5 }]);
  assert.equal(a.open, 0);
  assert.deepEqual(here, [2, 4, 6]);
});
