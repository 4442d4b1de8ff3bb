import { streamFn } from 'velo-stream';
async function* runningAverage(events) { let n = 0, sum = 0; for await (const e of events) { n++; sum += e; yield sum / n; } }
const fn = streamFn(runningAverage);
for (let r = 0; r < 4; r++) {
  const n = 500000; const t0 = performance.now();
  const s = fn.open();
  const producing = (async () => { for (let i = 0; i < n; i++) await s.send(i); s.end(); })();
  let count = 0; for await (const v of s) count++;
  await producing;
  console.log(((performance.now() - t0)).toFixed(0), 'ms');
}
