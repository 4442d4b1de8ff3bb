// node bench/redis.mjs drain [events] [keys]
// node bench/redis.mjs live [events/s] [seconds] [keys]
//
// First measurements for velo-stream/redis (the full `bench:redis` with
// 2-worker scaling, failover time and charts is still to come), one worker in
// this process on a private redis-server, 16 partitions, one output written
// back per event:
// - drain: a backlog of `events` events over `keys` keys; events/s from the
//   worker's start to its last output committed.
// - live: a producer sends at `events/s` for `seconds`; the handler records
//   the time from just before the XADD to the event reaching it (p50, p99).
// Both print the worker's round-trip times to Redis (stats().roundTrip, ms).
import { performance } from 'node:perf_hooks';
import { streamFn } from '../index.mjs';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const [mode = 'drain', a, b, c] = process.argv.slice(2);
const partitions = 16;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

const redis = await startRedis();
try {
  const client = await redis.client();
  const name = mode;
  const producer = redisProducer({ client, name, partitions });
  if (mode === 'drain') {
    const events = Number(a ?? 100_000);
    const keys = Number(b ?? 1000);
    for (let i = 0; i < events; i += 1000) {
      await producer.sendMany(Array.from({ length: Math.min(1000, events - i) }, (_, j) => [`k${(i + j) % keys}`, { n: i + j }]));
    }
    const fn = streamFn(
      async function* sum(xs) {
        let total = 0;
        for await (const x of xs) yield { total: (total += x.n) };
      },
      { idleTimeout: 0, maxConcurrent: keys * 2 },
    );
    const started = performance.now();
    const worker = redisWorker(fn, { client, name, partitions, leaseTtl: 10_000 });
    while (worker.stats().outputs < events) await sleep(5);
    const seconds = (performance.now() - started) / 1000;
    const { roundTrip } = worker.stats();
    console.log(JSON.stringify({ mode, events, keys, partitions, seconds: +seconds.toFixed(3), eventsPerSecond: Math.round(events / seconds), roundTrip }));
    await worker.close();
  } else if (mode === 'live') {
    const rate = Number(a ?? 5000);
    const seconds = Number(b ?? 5);
    const keys = Number(c ?? 1000);
    const latencies = [];
    const fn = streamFn(
      async function* timed(xs) {
        for await (const x of xs) {
          latencies.push(performance.now() - x.t);
          yield { n: x.n };
        }
      },
      { idleTimeout: 0, maxConcurrent: keys * 2 },
    );
    const worker = redisWorker(fn, { client, name, partitions, leaseTtl: 10_000 });
    while (worker.stats().owned.length < partitions) await sleep(5);
    // Batches every 10 ms at the rate asked, each event stamped just before its batch is sent.
    const total = rate * seconds;
    const perTick = Math.max(1, Math.round(rate / 100));
    const start = performance.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + perTick);
      const pairs = [];
      const t = performance.now();
      for (; sent < due; sent++) pairs.push([`k${sent % keys}`, { n: sent, t }]);
      if (pairs.length > 0) void producer.sendMany(pairs);
      await sleep(10);
    }
    while (worker.stats().outputs < total) await sleep(5);
    const sorted = latencies.sort((x, y) => x - y);
    console.log(
      JSON.stringify({
        mode,
        rate,
        seconds,
        keys,
        partitions,
        events: sorted.length,
        p50Ms: +quantile(sorted, 0.5).toFixed(2),
        p99Ms: +quantile(sorted, 0.99).toFixed(2),
        // The worker's calls to Redis (last 1024): where the time goes when p99 is high.
        roundTrip: worker.stats().roundTrip,
      }),
    );
    await worker.close();
  } else throw new Error(`unknown mode ${mode}: drain or live`);
} finally {
  await redis.stop();
}
