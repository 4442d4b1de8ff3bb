// node bench/postgres.mjs [events] [keys] [rounds] [--durable]
//
// The worker on Postgres and on Redis side by side in one sitting: a drain. Private servers on 127.0.0.1
// (__test__/helpers): a redis-server without persistence, and a postgres with fsync off (--durable: fsync and
// synchronous_commit on). Per round and backend (the order alternating): a backlog of `events` events over `keys`
// keys is written with the backend's producer (not timed), then one worker in this process (16 partitions, the
// running-total function of bench/redis/drain.mjs, one output per event) drains it; measured from the worker's
// start to its last output committed (`stats().outputs`): events/s, and this process's CPU per event (the worker:
// the producer is idle by then). Prints each run, the medians per backend, and Postgres' figures as a ratio of
// Redis'. Order of magnitude only: one machine, both servers on it.
import { performance } from 'node:perf_hooks';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';
import { sumFn, writeBacklog } from './redis/drain.mjs';

const args = process.argv.slice(2);
const durable = args.includes('--durable');
const [events = 20_000, keys = 1_000, rounds = 3] = args.filter((a) => !a.startsWith('--')).map(Number);
const PARTITIONS = 16;

const redis = await startRedis();
const pg = await startPostgres({ durable });
const client = await redis.client();
const pool = pg.pool({ max: 20 });

let fresh = 0;
const backends = {
  redis: () => {
    const shared = { client, name: `drain${++fresh}`, partitions: PARTITIONS };
    return { producer: redisProducer(shared), worker: () => redisWorker(sumFn(keys), { ...shared, trimInterval: 0 }) };
  },
  postgres: () => {
    const shared = { pool, schema: 'velo_bench', name: `drain${++fresh}`, partitions: PARTITIONS };
    return { producer: postgresProducer(shared), worker: () => postgresWorker(sumFn(keys), { ...shared, trimInterval: 0 }) };
  },
};

async function drain(kind) {
  const { producer, worker: start } = backends[kind]();
  await writeBacklog(producer, events, keys);
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  const worker = start();
  while (worker.stats().outputs < events) await new Promise((resolve) => setTimeout(resolve, 20));
  const ms = performance.now() - t0;
  const used = process.cpuUsage(cpu);
  await worker.close();
  return { eventsPerSecond: Math.round((events / ms) * 1000), cpuUsPerEvent: +((used.user + used.system) / events).toFixed(1) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = { redis: [], postgres: [] };
try {
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ['redis', 'postgres'] : ['postgres', 'redis'];
    for (const kind of order) {
      const result = await drain(kind);
      runs[kind].push(result);
      console.log(`round ${round + 1} ${kind.padEnd(8)} ${JSON.stringify(result)}`);
    }
  }
  const summary = {};
  for (const kind of Object.keys(runs)) {
    summary[kind] = {
      eventsPerSecond: median(runs[kind].map((r) => r.eventsPerSecond)),
      cpuUsPerEvent: median(runs[kind].map((r) => r.cpuUsPerEvent)),
    };
  }
  console.log(`medians (${events} events, ${keys} keys, ${durable ? 'durable' : 'fsync off'}): ${JSON.stringify(summary)}`);
  const ratio = (what) => (summary.postgres[what] / summary.redis[what]).toFixed(2);
  console.log(`postgres / redis: drain rate ${ratio('eventsPerSecond')}, worker CPU per event ${ratio('cpuUsPerEvent')}`);
} finally {
  await redis.stop();
  await pg.stop();
}
