// The scenarios of `npm run bench`: each runs velo-stream and its baselines
// on the same handler and the same input, and checks the outputs every time.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { once } from 'node:events';
import { batch, limiter, streamFn, task } from 'velo-stream';
import { average as runningAverage, averageObjects as runningAverageObjects } from './workers/handlers.mjs';
import {
  BoundedQueue,
  batchMap,
  collect,
  mapOrdered,
  mapUnordered,
  openBuffered,
  openMeasured,
  openQueued,
  pipeBuffered,
  pipeCancellable,
  runDuplex,
  runPMap,
  runQueued,
  runReadableMap,
} from './baselines.mjs';
import { prng } from './prng.mjs';

// ----- handlers shared by every variant -----
// (The running averages are the worker-thread benchmark's too: workers/handlers.mjs.)

async function* passThrough(events) {
  for await (const e of events) yield e;
}

async function* addOne(events) {
  for await (const e of events) yield e + 1;
}

async function* timesTwo(events) {
  for await (const e of events) yield e * 2;
}

async function* minusThree(events) {
  for await (const e of events) yield e - 3;
}

const numbers = (n) => Array.from({ length: n }, (_, i) => i);

function checkAverages(out, n) {
  assert.equal(out.length, n);
  assert.equal(out[n - 1], (n - 1) / 2);
}

const throughput = (events, ms) => (events / ms) * 1000;

/** S2's loop over a hand-written stream (`{ queue, outputs }` of bench/baselines.mjs): `n` sends ahead of a `for await` reader. */
async function liveAhead({ queue, outputs }, n) {
  const producing = (async () => {
    for (let i = 0; i < n; i++) await queue.send(i);
    queue.end();
  })();
  let count = 0;
  for await (const _ of outputs) count++;
  await producing;
  assert.equal(count, n);
}

/** A dev dependency (p-limit, p-queue); `LIMITERS_FROM=<dir>` loads it from another install (as bench/instructions.cjs). */
async function importDev(name) {
  const dir = process.env.LIMITERS_FROM;
  if (dir === undefined) return import(name);
  const { createRequire } = await import('node:module');
  const { pathToFileURL } = await import('node:url');
  return import(pathToFileURL(createRequire(pathToFileURL(`${dir}/`)).resolve(name)).href);
}

/** Times `fn`, returns events per second. */
async function timed(events, fn) {
  const t0 = performance.now();
  await fn();
  return throughput(events, performance.now() - t0);
}

// ----- scenarios -----

/**
 * The scenarios at a size: 'full' (npm run bench), 'quick' (-- --quick, under
 * a minute), or 'test' (tiny: npm test runs each variant once to check its
 * outputs, never its speed).
 */
export function scenarios(size = 'full') {
  const pick = (full, quick, test) => (size === 'full' ? full : size === 'quick' ? quick : test);
  const N = pick(1_000_000, 200_000, 2_000);
  const velo = {
    avg: streamFn(runningAverage),
    avgObj: streamFn(runningAverageObjects),
    pass: streamFn(passThrough),
    many: streamFn(runningAverage, { maxConcurrent: 20_000 }),
    pipe: streamFn(addOne).pipe(streamFn(timesTwo)).pipe(streamFn(minusThree)),
  };

  const list = [];

  {
    const input = numbers(N);
    list.push({
      id: 'S1',
      title: `run() over ${N.toLocaleString('en-US')} numbers, running average`,
      kind: 'throughput',
      variants: {
        velo: () => timed(N, async () => checkAverages(await velo.avg.run(input), N)),
        a: () => timed(N, async () => checkAverages(await runQueued(runningAverage, input), N)),
        b: () => timed(N, async () => checkAverages(await runDuplex(runningAverage, input), N)),
      },
      targets: [
        ['a', '>=', 1.0],
        ['b', '>=', 4.0],
      ],
    });
  }

  {
    const input = numbers(N).map((i) => ({ id: i, value: i }));
    const check = (out) => {
      assert.equal(out.length, N);
      assert.deepEqual(out[N - 1], { id: N - 1, average: (N - 1) / 2 });
    };
    list.push({
      id: 'S1o',
      title: `run() over ${N.toLocaleString('en-US')} objects {id, value}`,
      kind: 'throughput',
      variants: {
        velo: () => timed(N, async () => check(await velo.avgObj.run(input))),
        a: () => timed(N, async () => check(await runQueued(runningAverageObjects, input))),
        b: () => timed(N, async () => check(await runDuplex(runningAverageObjects, input))),
      },
      targets: [
        ['a', '>=', 1.0],
        ['b', '>=', 4.0],
      ],
    });
  }

  {
    const n = pick(500_000, 100_000, 1_000);
    list.push({
      id: 'S2',
      title: `live: one stream, await send() loop and for-await consumer, ${n.toLocaleString('en-US')} events`,
      kind: 'throughput',
      variants: {
        velo: () =>
          timed(n, async () => {
            const s = velo.avg.open();
            const producing = (async () => {
              for (let i = 0; i < n; i++) await s.send(i);
              s.end();
            })();
            let count = 0;
            for await (const v of s) count++;
            await producing;
            assert.equal(count, n);
          }),
        a: () =>
          timed(n, async () => {
            const { queue, outputs } = openQueued(runningAverage);
            const producing = (async () => {
              for (let i = 0; i < n; i++) await queue.send(i);
              queue.end();
            })();
            let count = 0;
            for await (const v of { [Symbol.asyncIterator]: () => outputs }) count++;
            await producing;
            assert.equal(count, n);
          }),
        d: () => timed(n, () => liveAhead(openBuffered(runningAverage), n)),
        // (d) with the figures and idle deadline velo-stream keeps per event, by hand (BENCHMARKS.md, S2).
        f: () =>
          timed(n, async () => {
            const opened = openMeasured(runningAverage);
            await liveAhead(opened, n);
            assert.equal(opened.figures.eventsOut, n);
          }),
        b: () =>
          timed(n, async () => {
            const d = Duplex.from(runningAverage);
            const producing = (async () => {
              for (let i = 0; i < n; i++) if (!d.write(i)) await once(d, 'drain');
              d.end();
            })();
            let count = 0;
            for await (const v of d) count++;
            await producing;
            assert.equal(count, n);
          }),
      },
      labels: { f: '(f) (d) with figures, idle' },
      targets: [
        ['d', '>=', 1.0],
        ['a', '>=', 0.8],
      ],
    });
  }

  {
    const n = pick(100_000, 20_000, 200);
    const roundTrips = async (send, recv) => {
      const samples = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await send(i);
        const v = await recv();
        samples[i] = (performance.now() - t0) * 1000;
        if (v !== i) assert.equal(v, i);
      }
      return samples;
    };
    list.push({
      id: 'S3',
      title: `live round trip: await send(e); await recv(), ${n.toLocaleString('en-US')} times`,
      kind: 'latency',
      variants: {
        velo: async () => {
          const s = velo.pass.open();
          const samples = await roundTrips(
            (e) => s.send(e),
            () => s.recv(),
          );
          await s.cancel();
          return samples;
        },
        a: async () => {
          const { queue, outputs } = openQueued(passThrough);
          const samples = await roundTrips(
            (e) => queue.send(e),
            async () => (await outputs.next()).value,
          );
          queue.end();
          return samples;
        },
        d: async () => {
          const { queue, outputs } = openBuffered(passThrough);
          const samples = await roundTrips(
            (e) => queue.send(e),
            async () => (await outputs.next()).value,
          );
          queue.end();
          return samples;
        },
      },
      targets: [
        ['p50', '<=', 2],
        ['p99', '<=', 10],
        ['a', 'p50<=', 1.3],
        ['a', 'p99<=', 1.3],
      ],
    });
  }

  {
    const n = pick(20_000, 5_000, 50);
    const perStream = async (once1) => {
      const samples = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await once1(i);
        samples[i] = (performance.now() - t0) * 1000;
      }
      return samples;
    };
    list.push({
      id: 'S4',
      title: `open -> send one event -> first output -> done, ${n.toLocaleString('en-US')} streams`,
      kind: 'latency',
      variants: {
        velo: () =>
          perStream(async (i) => {
            const s = velo.pass.open();
            await s.send(i);
            const first = await s.recv();
            s.end();
            for await (const _ of s);
            if (first !== i || s.state !== 'done') assert.fail(`stream ${i}: ${first} ${s.state}`);
          }),
        a: () =>
          perStream(async (i) => {
            const { queue, outputs } = openQueued(passThrough);
            await queue.send(i);
            const first = (await outputs.next()).value;
            queue.end();
            const last = await outputs.next();
            if (first !== i || !last.done) assert.fail(`stream ${i}`);
          }),
        d: () =>
          perStream(async (i) => {
            const { queue, outputs } = openBuffered(passThrough);
            await queue.send(i);
            const first = (await outputs.next()).value;
            queue.end();
            const last = await outputs.next();
            if (first !== i || !last.done) assert.fail(`stream ${i}`);
          }),
        // (d) with the figures and idle deadline velo-stream keeps per stream, by hand (BENCHMARKS.md, S4).
        f: () =>
          perStream(async (i) => {
            const { queue, outputs, figures } = openMeasured(passThrough);
            await queue.send(i);
            const first = (await outputs.next()).value;
            queue.end();
            const last = await outputs.next();
            if (first !== i || !last.done || figures.eventsOut !== 1) assert.fail(`stream ${i}`);
          }),
        b: () =>
          perStream(async (i) => {
            const d = Duplex.from(passThrough);
            d.write(i);
            d.end();
            const out = [];
            for await (const v of d) out.push(v);
            if (out[0] !== i) assert.fail(`stream ${i}`);
          }),
      },
      labels: { f: '(f) (d) with figures, idle' },
      targets: [
        ['median', '<=', 5],
        ['a', 'median<=', 2],
      ],
    });
  }

  for (const streams of pick([1_000, 10_000], [1_000], [50])) {
    const per = 100;
    const input = numbers(per);
    const total = streams * per;
    const all = async (runOne) => {
      const results = await Promise.all(Array.from({ length: streams }, () => runOne(input)));
      for (const out of results) checkAverages(out, per);
    };
    list.push({
      id: streams === 10_000 ? 'S5' : `S5-${streams >= 1000 ? streams / 1000 + 'k' : streams}`,
      title: `${streams.toLocaleString('en-US')} concurrent streams x ${per} events, total`,
      kind: 'throughput',
      variants: {
        velo: () => timed(total, () => all((events) => velo.many.run(events))),
        a: () => timed(total, () => all((events) => runQueued(runningAverage, events))),
        b: () => timed(total, () => all((events) => runDuplex(runningAverage, events))),
      },
      targets: streams >= 1_000 ? [['a', '>=', 1.0]] : [],
    });
  }

  {
    const idle = pick(100_000, 20_000, 200);
    const idleFn = streamFn(passThrough, { maxConcurrent: idle });
    const measure = async (openOne, closeAll) => {
      const gc = () => {
        for (let i = 0; i < 4; i++) global.gc();
      };
      await new Promise((r) => setImmediate(r));
      gc();
      const h0 = process.memoryUsage().heapUsed;
      const r0 = process.memoryUsage().rss;
      const held = new Array(idle);
      for (let i = 0; i < idle; i++) held[i] = openOne();
      await new Promise((r) => setImmediate(r));
      gc();
      const h1 = process.memoryUsage().heapUsed;
      const r1 = process.memoryUsage().rss;
      await closeAll(held);
      return { heapKB: (h1 - h0) / idle / 1024, rssKB: Math.max(0, r1 - r0) / idle / 1024 };
    };
    list.push({
      id: 'S6',
      title: `memory of ${idle.toLocaleString('en-US')} idle open streams (per stream, after gc)`,
      kind: 'memory',
      variants: {
        velo: () =>
          measure(
            () => idleFn.open(),
            (held) => Promise.all(held.map((s) => s.cancel())),
          ),
        a: () =>
          measure(
            () => {
              const o = openQueued(passThrough);
              void o.outputs.next();
              return o;
            },
            async (held) => held.forEach((o) => o.queue.end()),
          ),
        b: () =>
          measure(
            () => Duplex.from(passThrough),
            async (held) => held.forEach((d) => d.destroy()),
          ),
      },
      targets: [
        ['total', '<=', 2],
        ['b', 'total<=', 1.0],
      ],
    });
  }

  {
    const input = numbers(N);
    const check = (out) => {
      assert.equal(out.length, N);
      assert.equal(out[N - 1], (N - 1 + 1) * 2 - 3);
    };
    list.push({
      id: 'S7',
      title: `three-stage pipe over ${N.toLocaleString('en-US')} numbers`,
      kind: 'throughput',
      variants: {
        velo: () => timed(N, async () => check(await velo.pipe.run(input))),
        c: () =>
          timed(N, async () => {
            const out = [];
            for await (const v of minusThree(timesTwo(addOne(input)))) out.push(v);
            check(out);
          }),
        // What (c) costs with the promises of velo-stream's stages kept by hand: (d) buffered stages that run
        // ahead, (e) no buffers but a wait of its own per stage that a cancel settles (BENCHMARKS.md, S7).
        d: () => timed(N, async () => check(await collect(pipeBuffered([addOne, timesTwo, minusThree], input)))),
        e: () => timed(N, async () => check(await collect(pipeCancellable([addOne, timesTwo, minusThree], input)))),
      },
      labels: { d: '(d) bounded stages, pumps', e: '(e) (c), cancellable waits' },
      targets: [['c', '>=', 0.9]],
    });
  }

  {
    const n = pick(100_000, 20_000, 200);
    const frames = Array.from({ length: 64 }, () => Buffer.alloc(64 * 1024, 1));
    const input = Array.from({ length: n }, (_, i) => frames[i % frames.length]);
    const check = (out) => {
      assert.equal(out.length, n);
      for (let i = 0; i < n; i++) if (out[i] !== input[i]) assert.fail(`frame ${i} is not the same Buffer object`);
    };
    list.push({
      id: 'S8',
      title: `${n.toLocaleString('en-US')} x 64 KiB Buffers through a pass-through (same object out)`,
      kind: 'throughput',
      variants: {
        velo: () => timed(n, async () => check(await velo.pass.run(input))),
        a: () => timed(n, async () => check(await runQueued(passThrough, input))),
      },
      targets: [['a', '>=', 1.0]],
    });
  }

  {
    // S10: the per-item overhead of a task stage, with a mapper that does nothing.
    const n = N;
    const concurrency = 16;
    const input = numbers(n);
    const addOneAsync = async (x) => x + 1;
    const check = (out) => {
      assert.equal(out.length, n);
      for (let i = 0; i < n; i++) if (out[i] !== i + 1) assert.fail(`output ${i} is ${out[i]}`);
    };
    const stage = task(addOneAsync, { concurrency });
    list.push({
      id: 'S10',
      title: `task(async x => x + 1, { concurrency: ${concurrency} }), run() over ${n.toLocaleString('en-US')} numbers`,
      kind: 'throughput',
      chart: 'tasks',
      variants: {
        velo: () => timed(n, async () => check(await stage.run(input))),
        pmap: () => timed(n, async () => check(await runPMap(input, addOneAsync, { concurrency }))),
        readable: () => timed(n, async () => check(await runReadableMap(input, addOneAsync, concurrency))),
        hand: () => timed(n, async () => check(await collect(mapOrdered(input, addOneAsync, concurrency)))),
      },
      targets: [
        ['pmap', '>=', 2.0],
        ['readable', '>=', 3.0],
        ['hand', '>=', 1.0],
      ],
    });
  }

  for (const ordered of [true, false]) {
    // S11: a mapper with latency, where what counts is keeping `concurrency`
    // calls busy. Latencies are whole milliseconds from 0 to 5 (0: no timer),
    // drawn once from a seeded PRNG: Node's timers count whole milliseconds
    // (a 2.7 ms timer fires after about 2.2 ms, measured), so fractional
    // latencies would make the ideal below unreachable or flattering.
    const n = pick(20_000, 5_000, 200);
    const concurrency = 64;
    const random = prng(12);
    const latency = Uint8Array.from({ length: n }, () => Math.floor(random() * 6));
    const idealMs = latency.reduce((sum, ms) => sum + ms, 0) / concurrency;
    const input = numbers(n);
    const slow = (i) => (latency[i] === 0 ? Promise.resolve(i) : new Promise((resolve) => setTimeout(resolve, latency[i], i)));
    const check = ordered
      ? (out) => {
          assert.equal(out.length, n);
          for (let i = 0; i < n; i++) if (out[i] !== i) assert.fail(`output ${i} is ${out[i]}`);
        }
      : (out) => {
          assert.equal(out.length, n);
          const seen = new Uint8Array(n);
          for (const i of out) seen[i]++;
          assert.ok(
            seen.every((k) => k === 1),
            'every item once',
          );
        };
    const stage = task(slow, { concurrency, ordered });
    const hand = ordered ? mapOrdered : mapUnordered;
    // The hand-written ring holds a finished result's slot until it is
    // yielded, so behind a slow head fewer than 64 calls run. A task stage
    // instead holds up to `buffer` (default 256) finished results besides its
    // 64 running calls; pMapIterable does the same with `backpressure`.
    const held = 256;
    const pmapOptions = ordered ? { concurrency, backpressure: concurrency + held } : { concurrency, preserveOrder: false };
    list.push({
      id: ordered ? 'S11' : 'S11u',
      title: `task with 0-5 ms latency per call, concurrency ${concurrency}, ${n.toLocaleString('en-US')} items, ${ordered ? 'ordered' : 'as completed'}`,
      kind: 'throughput',
      chart: 'tasks',
      reference: 'ideal',
      labels: ordered
        ? { pmap: `pMapIterable, backpressure ${concurrency + held}` }
        : { pmap: 'pMapIterable, preserveOrder: false', hand: 'hand-written map, as completed' },
      variants: {
        velo: () => timed(n, async () => check(await stage.run(input))),
        pmap: () => timed(n, async () => check(await runPMap(input, slow, pmapOptions))),
        hand: () => timed(n, async () => check(await collect(hand(input, slow, concurrency)))),
        // Not run: the throughput of perfect scheduling (sum of latencies / concurrency).
        ideal: async () => throughput(n, idealMs),
      },
      // Within 10 % of the ideal: wall time <= 1.1 x ideal, so throughput >= 0.91 x.
      targets: [['ideal', '>=', 0.91]],
    });
  }

  {
    // S12: batching, a trivial call per batch of 100.
    const n = N;
    const maxSize = 100;
    const input = numbers(n);
    const sum = async (items) => {
      let total = 0;
      for (let i = 0; i < items.length; i++) total += items[i];
      return total;
    };
    const check = (out) => {
      assert.equal(out.length, Math.ceil(n / maxSize));
      assert.equal(out[0], ((maxSize - 1) * maxSize) / 2);
      assert.equal(
        out.reduce((a, b) => a + b, 0),
        ((n - 1) * n) / 2,
      );
    };
    const stage = batch(sum, { maxSize });
    list.push({
      id: 'S12',
      title: `batch(sum, { maxSize: ${maxSize} }), run() over ${n.toLocaleString('en-US')} numbers`,
      kind: 'throughput',
      chart: 'tasks',
      labels: { hand: 'hand-written batcher' },
      variants: {
        velo: () => timed(n, async () => check(await stage.run(input))),
        hand: () => timed(n, async () => check(await collect(batchMap(input, sum, maxSize)))),
      },
      targets: [['hand', '>=', 2.0]],
    });
  }

  {
    // S13: what a permit costs a task call: S10's stage with an in-process limiter that never makes a call wait
    // (concurrency 1,000,000), against the same stage without (issue 41: >= 0.9x).
    const n = N;
    const concurrency = 16;
    const input = numbers(n);
    const addOneAsync = async (x) => x + 1;
    const check = (out) => {
      assert.equal(out.length, n);
      for (let i = 0; i < n; i++) if (out[i] !== i + 1) assert.fail(`output ${i} is ${out[i]}`);
    };
    const limited = task(addOneAsync, { concurrency, limiter: limiter({ concurrency: 1_000_000, name: 'bench-S13' }) });
    const plain = task(addOneAsync, { concurrency });
    list.push({
      id: 'S13',
      title: `task(async x => x + 1, { concurrency: ${concurrency}, limiter }) against no limiter, run() over ${n.toLocaleString('en-US')} numbers`,
      kind: 'throughput',
      chart: 'tasks',
      labels: { plain: 'the same stage without a limiter' },
      variants: {
        velo: () => timed(n, async () => check(await limited.run(input))),
        plain: () => timed(n, async () => check(await plain.run(input))),
      },
      targets: [['plain', '>=', 0.9]],
    });
  }

  {
    // S14: per permit, the same job in each library: async calls, at most 16 at once, under a rate that never binds
    // (p-queue's `intervalCap`; p-limit has no rate), 16 started at a time and awaited.
    const n = pick(300_000, 100_000, 1_000);
    const waves = async (run) => {
      let done = 0;
      const call = async () => {
        done++;
      };
      for (let i = 0; i < n; i += 16) {
        const wave = [];
        for (let k = 0; k < 16; k++) wave.push(run(call));
        await Promise.all(wave);
      }
      assert.equal(done, Math.ceil(n / 16) * 16);
    };
    const local = limiter({ concurrency: 16, rate: { limit: 1_000_000_000, period: 1000 }, name: 'bench-S14' });
    list.push({
      id: 'S14',
      title: `per permit: ${n.toLocaleString('en-US')} async calls, 16 at once, under a rate that never binds`,
      kind: 'throughput',
      labels: { plimit: 'p-limit (no rate)', pqueue: "p-queue's intervalCap" },
      variants: {
        velo: () => timed(n, () => waves((fn) => local.acquire().then((p) => fn().finally(() => p.release())))),
        plimit: async () => {
          const limit = (await importDev('p-limit')).default(16);
          return timed(n, () => waves((fn) => limit(fn)));
        },
        pqueue: async () => {
          const PQueue = (await importDev('p-queue')).default;
          const queue = new PQueue({ concurrency: 16, intervalCap: 1_000_000_000, interval: 1000 });
          return timed(n, () => waves((fn) => queue.add(fn)));
        },
      },
      targets: [
        ['plimit', '>=', 1.0],
        ['pqueue', '>=', 1.0],
      ],
    });
  }

  return list;
}

export { BoundedQueue };
