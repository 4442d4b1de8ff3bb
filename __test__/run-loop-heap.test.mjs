// A loop of awaited runs that never yields to the event loop (every run settles in promise jobs, so no timer, I/O
// or immediate runs in between) keeps its heap bounded: what the streams list for the next turn is bounded, so a
// batch job looping over in-memory data does not grow its heap until it returns. No kind keeps anything per run: a
// task stage's native state is freed when it is done, as a generator's is, not by a finalizer at the next turn.
// Needs --expose-gc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limiter, streamFn, task } from 'velo-stream';

const RUNS = 30_000;

function heapMb() {
  global.gc();
  global.gc();
  return process.memoryUsage().heapUsed / 1e6;
}

const echo = streamFn(async function* (events) {
  for await (const e of events) yield e;
});
const timed = streamFn(
  async function* (events) {
    for await (const e of events) yield e;
  },
  { idleTimeout: 60_000 },
);

const loops = {
  'run()': () => echo.run([1, 2, 3]),
  'run() with an idle clock': () => timed.run([1, 2, 3]),
  'a pipe of two': (() => {
    const pipe = echo.pipe(echo);
    return () => pipe.run([1]);
  })(),
  'a task stage': (() => {
    const stage = task((x) => x + 1, { idleTimeout: 0 });
    return () => stage.run([1, 2]);
  })(),
  'a task stage with async calls, retries and a limiter': (() => {
    const stage = task(async (x) => x + 1, {
      concurrency: 4,
      retry: { attempts: 2, delay: 1 },
      limiter: limiter({ concurrency: 8 }),
    });
    return () => stage.run([1, 2, 3]);
  })(),
  'feed() of an array, read by for await': async () => {
    for await (const out of echo.open().feed([1, 2, 3])) void out;
  },
};

for (const [name, once] of Object.entries(loops)) {
  test(`${RUNS} awaited runs without a turn of the event loop keep the heap bounded: ${name}`, async () => {
    assert.equal(typeof global.gc, 'function', 'run with --expose-gc');
    for (let i = 0; i < 1000; i++) await once();
    const before = heapMb();
    for (let i = 0; i < RUNS; i++) await once();
    const grown = heapMb() - before;
    // (Before the lists were bounded: 1.3-4.4 KB per run, 39-130 MB here; a task stage's native state freed only by
    // its finalizer: about 80 bytes per run, 2.4 MB.)
    assert.ok(grown < 1.2, `the heap grew by ${grown.toFixed(2)} MB over ${RUNS} runs`);
  });
}
