// Soak: many open/send/close cycles, then many abandoned streams, with heap
// and RSS sampled after gc. A leak shows as a line that keeps rising.
//
//   npm run soak                         # 1,000,000 cycles + 100,000 abandoned
//   node --expose-gc bench/soak.mjs --cycles 200000 --abandoned 20000
//
// With --redis, the randomized soak of velo-stream/redis instead
// (bench/redis-soak.mjs): 3 worker processes on a private redis-server,
// 20,000 sessions (1,000 live at once), a worker killed -9 and restarted
// every 2-5 s while producers send, the invariants checked at the end.
//
//   npm run soak -- --redis [--seed N] [--sessions 20000] [--concurrent 1000] [--checkpoint N (a checkpoint every N events of a key)] [--timers (timers at the session boundaries)] [--caps (maxSessionEvents 8, maxSessionAge 5 s, maxSessionTimers 2)]
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';

const MB = 2 ** 20;
const tick = () => new Promise((resolve) => setImmediate(resolve));

async function settleGarbage() {
  // Finalizers (which give back the slots of collected streams) run as tasks
  // of their own after a collection: let the loop turn, timers included.
  for (let i = 0; i < 8; i++) {
    global.gc();
    await tick();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Memory and `extra()` (read after the collection, not before). */
async function sample(label, extra) {
  await settleGarbage();
  const m = process.memoryUsage();
  return { label, heapMB: m.heapUsed / MB, rssMB: m.rss / MB, ...extra() };
}

/**
 * Runs the soak and returns the samples. `onSample` sees each as it is taken.
 * Every cycle checks its own output; the function throws on any wrong value.
 */
export async function soak({ cycles, abandoned, samples = 10, onSample = () => {} }) {
  if (typeof global.gc !== 'function') throw new Error('run with node --expose-gc');
  async function* soakEcho(events) {
    for await (const e of events) yield { echo: e };
  }
  const fn = streamFn(soakEcho, { buffer: 8 });
  const out = [];
  const fns = [fn];
  const record = async (label, extra) => {
    const s = await sample(label, () => ({ ...extra, open: fns.reduce((n, f) => n + f.stats().open, 0) }));
    out.push(s);
    onSample(s);
  };
  await record('start', { done: 0 });
  const every = Math.max(1, Math.floor(cycles / samples));
  for (let i = 1; i <= cycles; i++) {
    const s = fn.open();
    await s.send(i);
    const r = await s.recv();
    if (r.echo !== i) throw new Error(`cycle ${i}: got ${JSON.stringify(r)}`);
    if (i % 2) {
      s.end();
      for await (const _ of s) throw new Error('no output expected after end');
    } else {
      await s.cancel();
    }
    if (i % every === 0) await record('cycles', { done: i });
  }
  // Abandoned streams (never ended, never read), of both kinds: one that can
  // never end (no idle deadline) is garbage collected; one whose idle
  // deadline runs is held until the deadline ends it, then freed.
  const neverEnds = streamFn(soakEcho, { buffer: 8, idleTimeout: 0, maxConcurrent: abandoned + 16 });
  const idleEnds = streamFn(soakEcho, { buffer: 8, idleTimeout: 5, maxConcurrent: abandoned + 16 });
  fns.push(neverEnds, idleEnds);
  const perBatch = Math.max(1, Math.floor(abandoned / samples));
  for (let done = 0; done < abandoned;) {
    const n = Math.min(perBatch, abandoned - done);
    (() => {
      for (let k = 0; k < n; k++) {
        void neverEnds.open().send({ payload: k });
        void idleEnds.open().send({ payload: k });
      }
    })();
    done += n;
    while (idleEnds.stats().open > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await record('abandoned', { done });
  }
  return { samples: out, stats: fn.stats(), neverEnds: neverEnds.stats(), idleEnds: idleEnds.stats() };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      cycles: { type: 'string', default: '1000000' },
      abandoned: { type: 'string', default: '100000' },
      redis: { type: 'boolean', default: false },
      seed: { type: 'string' },
      sessions: { type: 'string', default: '20000' },
      concurrent: { type: 'string', default: '1000' },
      checkpoint: { type: 'string', default: '0' },
      timers: { type: 'boolean', default: false },
      caps: { type: 'boolean', default: false },
    },
  });
  const t0 = performance.now();
  if (values.redis) {
    const { redisSoak } = await import('./redis-soak.mjs');
    const seed = values.seed !== undefined ? Number(values.seed) : randomInt(2 ** 31);
    console.log(`redis soak, seed ${seed}`);
    const summary = await redisSoak({
      seed,
      sessions: Number(values.sessions),
      concurrent: Number(values.concurrent),
      events: [3, 12],
      chance: 0.03,
      maxGap: 1000,
      idle: 3000,
      killEvery: [2000, 5000],
      settleTimeout: 300_000,
      every: Number(values.checkpoint),
      timers: values.timers,
      // Small enough to be hit by sessions of 3-12 events 0-1 s apart.
      caps: values.caps ? { maxSessionEvents: 8, maxSessionAge: 5000, maxSessionTimers: 2 } : {},
      log: (line) => console.log(line),
    });
    console.log(`invariants hold: ${JSON.stringify(summary)}`);
  } else {
    console.log('phase      done        heap MB   rss MB   open');
    const { stats, neverEnds, idleEnds } = await soak({
      cycles: Number(values.cycles),
      abandoned: Number(values.abandoned),
      onSample: (s) =>
        console.log(
          `${s.label.padEnd(10)} ${String(s.done).padStart(9)}   ${s.heapMB.toFixed(1).padStart(7)}  ${s.rssMB.toFixed(1).padStart(7)}  ${String(s.open).padStart(5)}`,
        ),
    });
    console.log(`stats ${JSON.stringify(stats)}`);
    console.log(`abandoned, no idle deadline (collected): ${JSON.stringify(neverEnds)}`);
    console.log(`abandoned, idle deadline (ended by it): ${JSON.stringify(idleEnds)}`);
  }
  console.log(`${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
