// node bench/overlap.mjs [items] [rounds]
//
// Overlap at the output buffer: a producer with I/O latency in bursts (a 4 ms wait, then 4 outputs at once: 1 ms
// per output on average) and a consumer of the same speed (1 ms per output), through a buffer of 4. Overlapped,
// the producer's next wait runs while the consumer works through the last burst, and the run takes about `items`
// ms; without overlap (the producer resumed only once the buffer was empty and a read waited), the consumer
// waits through every burst's latency, about twice that. Compared in one process, rounds alternating, medians:
// velo-stream's `streamFn`, Node's `Readable.from` with `highWaterMark: 4` (it refills below its high-water
// mark), and the overlapped ideal (`items` x the consumer's step, measured the same way: a loop of 1 ms timers).
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { streamFn } from '../index.mjs';

const [items = 300, rounds = 5] = process.argv.slice(2).map(Number);
const BUFFER = 4;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function* produce() {
  for (let i = 0; i < items; i++) {
    if (i % BUFFER === 0) await sleep(BUFFER);
    yield i;
  }
}
async function consume(source) {
  const started = performance.now();
  let n = 0;
  for await (const _ of source) {
    n++;
    await sleep(1);
  }
  if (n !== items) throw new Error(`${n} of ${items}`);
  return performance.now() - started;
}

const velo = streamFn(async function* (events) {
  for await (const _ of events) yield* produce();
}, { buffer: BUFFER });

const results = { velo: [], readable: [], ideal: [] };
for (let r = 0; r < rounds; r++) {
  results.velo.push(await consume(velo.open().feed([null])));
  results.readable.push(await consume(Readable.from(produce(), { highWaterMark: BUFFER })));
  const started = performance.now();
  for (let i = 0; i < items; i++) await sleep(1);
  results.ideal.push(performance.now() - started);
}
const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
console.log(
  `${items} outputs, 1 ms per output each side (the producer's in bursts of 4), buffer ${BUFFER}, medians of ${rounds}: velo-stream ${m.velo.toFixed(0)} ms, Readable.from ${m.readable.toFixed(0)} ms, overlapped ideal ${m.ideal.toFixed(0)} ms; velo / ideal ${(m.velo / m.ideal).toFixed(2)}x, velo / Readable ${(m.velo / m.readable).toFixed(2)}x`,
);
