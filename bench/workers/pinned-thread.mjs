// The pinned-worker baseline's thread (bench/baselines.mjs, PinnedWorker): one
// stream's handler on its own worker thread, fed through a MessagePort in
// batches, with credit-based flow control both ways. This is what a careful
// user writes by hand with worker_threads.
import { parentPort, workerData } from 'node:worker_threads';

const handlers = await import('./handlers.mjs');
const handler = handlers[workerData.handler];
const BATCH = workerData.batch;

const queue = [];
let ended = false;
let wake = null;
parentPort.on('message', (m) => {
  if (m.end) ended = true;
  else for (const v of m.values) queue.push(v);
  wake?.();
});

async function* events() {
  let credit = 0;
  for (;;) {
    while (queue.length === 0) {
      if (ended) return;
      // Empty: flush outputs and ask for more.
      flush();
      await new Promise((resolve) => (wake = resolve));
      wake = null;
    }
    yield queue.shift();
    // Grant room for another batch once one was read.
    if (++credit === BATCH) {
      credit = 0;
      parentPort.postMessage({ credit: 1 });
    }
  }
}

let out = [];
function flush() {
  if (out.length > 0) parentPort.postMessage({ values: out });
  out = [];
}
for await (const o of handler(events())) {
  out.push(o);
  if (out.length >= BATCH) flush();
}
flush();
parentPort.postMessage({ end: true });
