// npm run bench:workers [-- --quick] [-- --only W1,W4]
//
// workerFn (handlers on worker threads) against the ways a user would do the
// same without it: the handler in-process (streamFn), Piscina with one task
// per event, and a hand-written worker per stream fed through its MessagePort
// in batches (bench/baselines.mjs). As in bench/run.mjs, contenders run
// interleaved in this one process, the order rotating every round, and ratios
// are taken within the run. Results: bench/workers-results.json and
// bench/charts/workers.svg (a quick run: under bench/quick/, see out.mjs).
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Piscina } from 'piscina';
import { streamFn, workerFn } from '../index.mjs';
import * as handlers from './workers/handlers.mjs';
import { PinnedWorker, runPinned, runPiscina } from './baselines.mjs';
import { barChart } from './svg.mjs';
import { writeOut } from './out.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
  },
});
const rounds = Number(args.rounds ?? (args.quick ? 3 : 5));
const only = args.only ? new Set(args.only.split(',')) : null;
const pick = (full, quick) => (args.quick ? quick : full);
const HANDLERS = new URL('./workers/handlers.mjs', import.meta.url);
const TASKS = new URL('./workers/tasks.mjs', import.meta.url).href;
const cores = os.availableParallelism();

const worker = (name, threads, config = {}) => workerFn(HANDLERS, { export: name, threads, ...config });
const piscina = new Piscina({ filename: TASKS, minThreads: cores, maxThreads: cores });

function check(cond, what) {
  if (!cond) throw new Error(`wrong output: ${what}`);
}

const numbers = (n) => Array.from({ length: n }, (_, i) => i);
const objects = (n) => Array.from({ length: n }, (_, i) => ({ id: i, value: i }));

/** Random-looking RGB frames (so the motion score has work to do), reused round-robin. */
function frames(count, width = 640, height = 480) {
  return Array.from({ length: count }, (_, f) => {
    const rgb = new Uint8Array(width * height * 3);
    let x = 2463534242 + f;
    for (let i = 0; i < rgb.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      rgb[i] = x & 0xff;
    }
    return rgb;
  });
}

const list = [];

{
  const N = pick(1_000_000, 200_000);
  const input = numbers(N);
  const fns = { velo: worker('average', 1), inproc: streamFn(handlers.average) };
  const ok = (out) => check(out.length === N && out[N - 1] === (N - 1) / 2, 'averages');
  list.push({
    id: 'W1',
    title: `run() over ${N.toLocaleString('en-US')} numbers across the thread boundary, running average`,
    unit: 'events/s',
    events: N,
    targets: [['velo', '>=', 1e6, 'events/s'], ['piscina', 5], ['pinned', 2]],
    contenders: {
      velo: async () => ok(await fns.velo.run(input)),
      piscina: async () => check((await runPiscina(piscina, 'average', input)).length === N, 'piscina'),
      pinned: async () => ok(await runPinned('average', input)),
      inproc: async () => ok(await fns.inproc.run(input)),
    },
  });
}

{
  const N = pick(300_000, 60_000);
  const input = objects(N);
  const fns = { velo: worker('averageObjects', 1), inproc: streamFn(handlers.averageObjects) };
  const ok = (out) => check(out.length === N && out[N - 1].average === (N - 1) / 2, 'object averages');
  list.push({
    id: 'W2',
    title: `run() over ${N.toLocaleString('en-US')} small objects across the thread boundary`,
    unit: 'events/s',
    events: N,
    targets: [['velo', '>=', 3e5, 'events/s'], ['piscina', 5], ['pinned', 2]],
    contenders: {
      velo: async () => ok(await fns.velo.run(input)),
      piscina: async () => check((await runPiscina(piscina, 'averageObjects', input)).length === N, 'piscina'),
      pinned: async () => ok(await runPinned('averageObjects', input)),
      inproc: async () => ok(await fns.inproc.run(input)),
    },
  });
}

{
  const N = pick(20_000, 5_000);
  const fn = worker('echo', 1);
  list.push({
    id: 'W3',
    title: `live round trip, await send(); await recv(), ${N.toLocaleString('en-US')} times`,
    unit: 'round trips/s',
    events: N,
    latency: true,
    targets: [['pinned', 1]],
    contenders: {
      velo: async (lat) => {
        const s = fn.open();
        for (let i = 0; i < N; i++) {
          const t = process.hrtime.bigint();
          await s.send(i);
          check((await s.recv()) === i, 'echo');
          lat.push(Number(process.hrtime.bigint() - t) / 1000);
        }
        await s.end();
        for await (const _ of s);
      },
      pinned: async (lat) => {
        const w = new PinnedWorker('echo', 1);
        const draining = w.outputs();
        for (let i = 0; i < N; i++) {
          const t = process.hrtime.bigint();
          check((await w.roundTrip(i)) === i, 'echo');
          lat.push(Number(process.hrtime.bigint() - t) / 1000);
        }
        w.end();
        for await (const _ of draining);
      },
    },
  });
}

{
  const streams = 8;
  const perStream = pick(40, 12);
  const input = frames(4);
  const total = streams * perStream;
  const runFrames = async (fn) => {
    const outs = await Promise.all(
      Array.from({ length: streams }, (_, s) => fn.run(Array.from({ length: perStream }, (_, f) => input[(s + f) % input.length]))),
    );
    check(outs.every((o) => o.length === perStream && o[0].gray.length === 640 * 480), 'gray frames');
  };
  const fns = {
    velo1: worker('grayscale', 1, { buffer: 4 }),
    velo: worker('grayscale', cores, { buffer: 4 }),
    inproc: streamFn(handlers.grayscale, { buffer: 4 }),
  };
  list.push({
    id: 'W4',
    title: `CPU-bound: ${streams} streams x ${perStream} frames 640x480 RGB -> gray + motion score`,
    unit: 'frames/s',
    events: total,
    loopDelay: true,
    targets: [['inproc', 1.7]],
    contenders: {
      velo: () => runFrames(fns.velo),
      velo1: () => runFrames(fns.velo1),
      inproc: () => runFrames(fns.inproc),
    },
  });
}

{
  const MiB = 1 << 20;
  const N = pick(400, 100);
  const fn = worker('byteLength', 1, { buffer: 8 });
  const moving = worker('byteLength', 1, { buffer: 8, transfer: true });
  // Distinct payloads: one value sent twice in a batch is serialized once.
  const payloads = Array.from({ length: N }, (_, i) => Buffer.alloc(MiB, i));
  list.push({
    id: 'W5',
    title: `${N} payloads of 1 MiB to a worker (it yields their length)`,
    unit: 'GB/s',
    events: N,
    bytes: N * MiB,
    targets: [],
    contenders: {
      velo: async () => check((await fn.run(payloads)).every((n) => n === MiB), 'lengths'),
      veloTransfer: async () => {
        // Transferred buffers cannot be reused: fresh ones each run, as for the transferring baseline.
        const fresh = Array.from({ length: N }, () => Buffer.allocUnsafeSlow(MiB));
        check((await moving.run(fresh)).every((n) => n === MiB), 'lengths');
      },
      pinned: async () => {
        const out = await runPinned('byteLength', payloads, 8);
        check(out.every((n) => n === MiB), 'lengths');
      },
      pinnedTransfer: async () => {
        const w = new PinnedWorker('byteLength', 8);
        const collecting = (async () => {
          let n = 0;
          for await (const len of w.outputs()) n += len === MiB ? 1 : 0;
          return n;
        })();
        for (let i = 0; i < N; i += 8) {
          const batch = Array.from({ length: Math.min(8, N - i) }, () => Buffer.allocUnsafeSlow(MiB)); // transferred buffers cannot be reused
          await w.sendBatch(batch, batch.map((b) => b.buffer));
        }
        w.end();
        check((await collecting) === N, 'lengths');
      },
    },
  });
}

/**
 * The main thread's responsiveness while a contender runs: a 1 ms interval
 * records how late each tick fires. Its p99 (ms) is what a server's other
 * requests would wait. (perf_hooks' monitorEventLoopDelay records nothing
 * while the loop is blocked throughout, which is the case to catch.)
 */
function loopTicker() {
  const late = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - last - 1));
    last = now;
  }, 1);
  return {
    stop() {
      clearInterval(timer);
      late.push(Math.max(0, performance.now() - last - 1));
      late.sort((a, b) => a - b);
      return late[Math.min(late.length - 1, Math.floor(0.99 * late.length))];
    },
  };
}

const LABELS = {
  velo: `velo-stream workerFn (${cores} threads where several streams)`,
  velo1: 'velo-stream workerFn, 1 thread',
  veloTransfer: 'velo-stream workerFn, transfer: true',
  inproc: 'velo-stream streamFn, in-process',
  piscina: 'Piscina, one task per event',
  pinned: 'hand-written worker per stream, MessagePort batches',
  pinnedTransfer: 'hand-written worker, MessagePort, transferred',
};

const results = [];
for (const sc of list) {
  if (only && !only.has(sc.id)) continue;
  const names = Object.keys(sc.contenders);
  // Warm-up: threads started, code optimised.
  for (const n of names) await sc.contenders[n]([]);
  const perName = Object.fromEntries(names.map((n) => [n, { rates: [], lat: [], delayP99: [] }]));
  for (let r = 0; r < rounds; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    for (const n of order) {
      global.gc?.();
      const lat = [];
      const ticks = loopTicker();
      const t = process.hrtime.bigint();
      await sc.contenders[n](lat);
      const s = Number(process.hrtime.bigint() - t) / 1e9;
      const delays = ticks.stop();
      perName[n].rates.push(sc.bytes ? sc.bytes / s / 1e9 : sc.events / s);
      perName[n].delayP99.push(delays);
      if (sc.latency) perName[n].lat.push(...lat);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const pct = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
  const stats = Object.fromEntries(
    names.map((n) => [
      n,
      {
        median: median(perName[n].rates),
        loopDelayP99Ms: median(perName[n].delayP99),
        ...(sc.latency ? { p50Us: pct(perName[n].lat, 0.5), p99Us: pct(perName[n].lat, 0.99) } : {}),
      },
    ]),
  );
  const ratios = Object.fromEntries(names.filter((n) => n !== 'velo').map((n) => [n, stats.velo.median / stats[n].median]));
  results.push({ id: sc.id, title: sc.title, unit: sc.unit, stats, ratios, labels: Object.fromEntries(names.map((n) => [n, LABELS[n]])) });

  console.log(`\n${sc.id}: ${sc.title}`);
  for (const n of names) {
    const st = stats[n];
    const rate = sc.unit === 'GB/s' ? `${st.median.toFixed(2)} GB/s` : `${(st.median / 1e3).toFixed(1)}K ${sc.unit}`;
    const lat = sc.latency ? `  p50 ${st.p50Us.toFixed(1)} µs  p99 ${st.p99Us.toFixed(1)} µs` : '';
    const ratio = n === 'velo' ? '' : `  velo/this ${ratios[n].toFixed(2)}x`;
    console.log(`  ${LABELS[n].padEnd(56)} ${rate.padStart(14)}  loop delay p99 ${st.loopDelayP99Ms.toFixed(1)} ms${lat}${ratio}`);
  }
  if (sc.latency) console.log(`  p50 velo/pinned ${(stats.velo.p50Us / stats.pinned.p50Us).toFixed(2)}x (target <= 1)`);
}
await piscina.destroy();

const machine = `${os.cpus().length} cores, Node ${process.versions.node}${args.quick ? ', quick run' : ''}`;
const file = writeOut('workers-results.json', args.quick, JSON.stringify({ machine, rounds, results }, null, 2));
const COLORS = { velo: '#d9480f', velo1: '#f08c00', veloTransfer: '#ffa94d', inproc: '#5c940d', piscina: '#7048e8', pinned: '#1c7ed6', pinnedTransfer: '#74c0fc' };
const chart = writeOut(
  'charts/workers.svg',
  args.quick,
  barChart({
    title: `Worker threads: throughput, median of ${rounds} interleaved rounds (each scenario on its own scale)`,
    unit: machine,
    groupScale: true,
    groups: results.map((r) => ({
      name: `${r.id}: ${r.title}`,
      bars: Object.entries(r.stats).map(([n, st]) => ({ label: LABELS[n], value: st.median, color: COLORS[n] })),
    })),
    format: (v) => (v < 100 ? `${v.toFixed(2)} GB/s` : v >= 1e6 ? `${(v / 1e6).toFixed(2)}M/s` : `${(v / 1e3).toFixed(1)}K/s`),
  }),
);
console.log(`\nresults: ${file}, chart: ${chart}`);
