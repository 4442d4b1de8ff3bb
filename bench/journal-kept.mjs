// node --expose-gc bench/journal-kept.mjs [package dir]   (default: this copy)
//
// The heap a session's journal keeps on a drain without checkpoints: 1,000 sessions over 16 partitions, 100
// journaled calls each (`Journal.run` with a body that answers at once, a small object as in bench/redis.mjs's
// `drains --journal`), each partition's open entries taken by a commit every 440 of its calls (as the Redis drain's
// commits carry about 440 outputs), and told written when the build has `written()`. Prints the heap kept at the end
// (after a full GC) against the start, in MB and per call. With another copy's dir, that copy's build is measured.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
const dir = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const load = (file) => import(pathToFileURL(path.join(dir, 'dist', file)).href);
const { Journal } = await load('durable/engine/journal.js');
const { jsonCodec } = await load('durable/common/codec.js');

const SESSIONS = 1000;
const PARTITIONS = 16;
const CALLS = 100;
const PER_COMMIT = 440;
const host = { codec: jsonCodec, maxEventBytes: 1 << 20, maxJournalBytes: 1 << 30, report() {} };
// What `Journal.run` takes of the handler's signal: the signal itself in copies before CallSignal, a `{ signal,
// aborted }` since. A signal that names itself is both.
const signal = new AbortController().signal;
signal.signal = signal;
const queues = Array.from({ length: PARTITIONS }, () => []);
const counts = new Array(PARTITIONS).fill(0);
const journals = Array.from({ length: SESSIONS }, (_, i) => {
  const journal = new Journal(`k${i}@1-0`, 0, undefined, host, String);
  journal.queue = (entry) => queues[i % PARTITIONS].push(entry);
  return journal;
});
const commit = (queue) => {
  for (const entry of queue) {
    entry.take();
    entry.written?.();
  }
  queue.length = 0;
};

globalThis.gc();
const before = process.memoryUsage().heapUsed;
let n = 0;
for (let c = 0; c < CALLS; c++) {
  for (let i = 0; i < SESSIONS; i++) {
    const e = { n: n++ };
    await journals[i].run('svc', () => ({ n: e.n, half: e.n / 2 }), signal);
    const p = i % PARTITIONS;
    if (++counts[p] % PER_COMMIT === 0) commit(queues[p]);
  }
}
for (const queue of queues) commit(queue);
globalThis.gc();
const kept = process.memoryUsage().heapUsed - before;
console.log(
  `${dir}: ${(kept / 1e6).toFixed(1)} MB kept after ${SESSIONS * CALLS} journaled calls, ${Math.round(kept / (SESSIONS * CALLS))} B per call (${journals.length} journals alive)`,
);
