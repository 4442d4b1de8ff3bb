import { streamFn } from 'velo-stream';
async function* runningAverage(events) { let n = 0, sum = 0; for await (const e of events) { n++; sum += e; yield sum / n; } }
const fn = streamFn(runningAverage, { maxConcurrent: 20000 });
const input = Array.from({ length: 100 }, (_, i) => i);
for (let r = 0; r < 4; r++) {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 10000 }, () => fn.run(input)));
  console.log(((performance.now() - t0)).toFixed(0), 'ms');
}
