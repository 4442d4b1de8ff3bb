import { streamFn } from 'velo-stream';
async function* passThrough(events) { for await (const e of events) yield e; }
const N = 50000;
for (const idleTimeout of [30000, 0]) {
  const fn = streamFn(passThrough, { maxConcurrent: N, idleTimeout });
  for (let r = 0; r < 3; r++) {
    global.gc(); global.gc();
    const h0 = process.memoryUsage().heapUsed;
    const held = []; for (let i = 0; i < N; i++) held.push(fn.open());
    await new Promise((r) => setImmediate(r));
    global.gc(); global.gc();
    const h1 = process.memoryUsage().heapUsed;
    console.log(`idle ${idleTimeout}: ${((h1 - h0) / N).toFixed(0)} B heap/stream`);
    await Promise.all(held.map((s) => s.cancel()));
  }
}
// baseline pieces
global.gc(); let h0 = process.memoryUsage().heapUsed;
const gens = []; for (let i = 0; i < N; i++) { const g = passThrough({ [Symbol.asyncIterator]() { return this; }, next: () => new Promise(() => {}) }); g.next(); gens.push(g); }
global.gc(); console.log('started async generator parked on input:', ((process.memoryUsage().heapUsed - h0) / N).toFixed(0), 'B');
