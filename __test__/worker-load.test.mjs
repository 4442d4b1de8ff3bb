// workerFn under CPU load: a read pending on a worker stream keeps the process alive however slowly the worker's
// thread starts and answers. A child process runs `run()` on fresh workerFns (each a cold thread start, the slowest
// wait) while another child keeps a core busy; a read that let the process go would end the child early with
// "unsettled top-level await" (exit code 13) instead of its last line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, start } from './helpers/child.mjs';

const HANDLERS = new URL('./fixtures/worker-handlers.mjs', import.meta.url).href;

/** Spins in slices (so it sees its stdin end) until its stdin ends, then exits 0. */
const BUSY = `let on = true;
process.stdin.on('end', () => (on = false)).resume();
const spin = () => { const until = performance.now() + 20; while (performance.now() < until); if (on) setImmediate(spin); };
spin();`;

test('run() on fresh workerFns while another process keeps a core busy: every read keeps the process alive until it settles', async () => {
  const busy = start(['-e', BUSY], { timeout: 300_000 });
  try {
    const { stdout } = await run(
      [
        '--input-type=module',
        '-e',
        `import assert from 'node:assert/strict';
         import { workerFn } from 'velo-stream';
         const n = 50_000;
         const many = Array.from({ length: n }, (_, i) => i);
         for (let round = 0; round < 12; round++) {
           const fn = workerFn(${JSON.stringify(HANDLERS)}, { threads: 1 });
           assert.deepEqual(await fn.run([1, 2, 3]), [2, 4, 6, { count: 3 }]);
           // Two streams on the one thread: one's read waits while the thread is busy with the other's handler.
           const [out, few] = await Promise.all([fn.run(many), fn.run([4, 5])]);
           assert.deepEqual(few, [8, 10, { count: 2 }]);
           assert.equal(out.length, n + 1);
           assert.equal(out[n - 1], 2 * (n - 1));
           assert.deepEqual(out[n], { count: n });
           await fn.close();
         }
         console.log('12 rounds');`,
      ],
      { timeout: 240_000 },
    );
    assert.equal(stdout, '12 rounds\n');
  } finally {
    busy.child.stdin.end();
    // (finished() asserts its exit code 0 and a clean stderr.)
    await busy.finished();
  }
});
