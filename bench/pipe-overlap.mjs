// node bench/pipe-overlap.mjs [items] [rounds]
//
// What a pipe's stages running ahead of each other buy when they wait on I/O: three stages that each wait 1 ms
// per item (a timer standing for a call), over `items` items. A pipe of velo-stream stages, and the hand-written
// pipe of bounded stages with pumps ((d) of bench/baselines.mjs), work on three items at once, one per stage, and
// take about `items` ms; chained async generators ((c)), with or without a cancellable wait per stage ((e)), run
// one item through all three stages before the next, about 3 x `items` ms. S7 measures the same four on stages
// that do not wait (BENCHMARKS.md). Compared in one process, rounds alternating, medians.
import { setTimeout as sleep } from 'node:timers/promises';
import { streamFn } from '../index.mjs';
import { collect, pipeBuffered, pipeCancellable } from './baselines.mjs';

const [items = 200, rounds = 5, WAIT = 1] = process.argv.slice(2).map(Number);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const stage = (k) =>
  async function* (events) {
    for await (const e of events) {
      await sleep(WAIT);
      yield e + k;
    }
  };
const handlers = [stage(1), stage(2), stage(3)];
const velo = streamFn(handlers[0]).pipe(streamFn(handlers[1])).pipe(streamFn(handlers[2]));
const input = Array.from({ length: items }, (_, i) => i);

async function timed(run) {
  const started = performance.now();
  const out = await run();
  if (out.length !== items || out[items - 1] !== items - 1 + 6) throw new Error(`wrong outputs: ${out.length}`);
  return performance.now() - started;
}

const variants = {
  velo: () => velo.run(input),
  d: () => collect(pipeBuffered(handlers, input)),
  c: () => collect(handlers[2](handlers[1](handlers[0](input)))),
  e: () => collect(pipeCancellable(handlers, input)),
};
const results = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const names = Object.keys(variants);
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(k + r) % names.length];
    results[name].push(await timed(variants[name]));
  }
}
const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
console.log(
  `${items} items, three stages of 1 ms each, medians of ${rounds}: velo-stream ${m.velo.toFixed(0)} ms, ` +
    `(d) bounded stages ${m.d.toFixed(0)} ms, (c) chained generators ${m.c.toFixed(0)} ms, (e) (c) with cancellable waits ${m.e.toFixed(0)} ms; ` +
    `velo / (c) ${(m.c / m.velo).toFixed(2)}x the throughput`,
);
