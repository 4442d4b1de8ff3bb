// node bench/redis-drain.mjs [events] [keys]
//
// A first measurement for velo-stream/redis (the full `bench:redis` with
// latency percentiles and 2-worker scaling is still to come): one worker in
// this process drains a backlog of `events` events over `keys` keys from a
// private redis-server (16 partitions), one output written back per event.
// Prints events/s from the worker's start to the last output committed.
import { performance } from 'node:perf_hooks';
import { streamFn } from '../index.mjs';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const events = Number(process.argv[2] ?? 100_000);
const keys = Number(process.argv[3] ?? 1000);
const partitions = 16;
const redis = await startRedis();
try {
  const client = await redis.client();
  const name = 'drain';
  const producer = redisProducer({ client, name, partitions });
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
  while (worker.stats().outputs < events) await new Promise((resolve) => setTimeout(resolve, 5));
  const seconds = (performance.now() - started) / 1000;
  const info = await client.info('cpu');
  console.log(
    JSON.stringify({
      events,
      keys,
      partitions,
      seconds: Number(seconds.toFixed(3)),
      eventsPerSecond: Math.round(events / seconds),
      redisCpu: info.match(/used_cpu_(sys|user):[\d.]+/g),
    }),
  );
  await worker.close();
} finally {
  await redis.stop();
}
