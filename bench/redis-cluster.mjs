// node bench/redis-cluster.mjs [events] [keys] [rounds]
//
// One worker (in this process) draining a backlog of `events` events over `keys` keys on 16 partitions, one
// output written back per event, on a single redis-server (createClient) and on a Redis Cluster of three
// masters (createCluster), in alternating rounds; medians. Reports events/s and redis-server CPU per event:
// in all, and per master for the Cluster. Both run on this machine's two cores with the worker, so the
// Cluster cannot show scaling here: what it shows is what Cluster routing costs, and how the work spreads.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { sumFn, writeBacklog } from './redis/drain.mjs';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis, startRedisCluster } from '../__test__/helpers/redis-server.mjs';

const [events = 100_000, keys = 1000, rounds = 3] = process.argv.slice(2).map(Number);
const PARTITIONS = 16;
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU time (user + system) of a process so far, ms, from /proc. */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

let run = 0;
async function drain(client, pids) {
  const name = `drain${++run}`;
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  await writeBacklog(producer, events, keys);
  const fn = sumFn(keys);
  const before = pids.map(cpuMs);
  const started = performance.now();
  const worker = redisWorker(fn, { client, name, partitions: PARTITIONS, leaseTtl: 10_000 });
  while (worker.stats().outputs < events) await sleep(5);
  const seconds = (performance.now() - started) / 1000;
  const perServer = pids.map((pid, i) => +(((cpuMs(pid) - before[i]) * 1000) / events).toFixed(2));
  await worker.close();
  return { eventsPerSecond: Math.round(events / seconds), redisCpuUsPerEvent: +perServer.reduce((a, b) => a + b).toFixed(2), perServer };
}

const single = await startRedis();
const cluster = await startRedisCluster(3);
try {
  const singleClient = await single.client();
  const clusterClient = await cluster.client();
  const results = { single: [], cluster: [] };
  for (let r = 0; r < rounds; r++) {
    results.single.push(await drain(singleClient, [single.pid]));
    results.cluster.push(await drain(clusterClient, cluster.nodes.map((n) => n.pid)));
    console.log(`round ${r + 1}: single ${JSON.stringify(results.single.at(-1))} cluster ${JSON.stringify(results.cluster.at(-1))}`);
  }
  for (const [what, list] of Object.entries(results)) {
    console.log(
      `${what}: ${median(list.map((x) => x.eventsPerSecond))} events/s, redis-server CPU ${median(list.map((x) => x.redisCpuUsPerEvent))} µs per event` +
        (what === 'cluster' ? ` (per master, medians: ${[0, 1, 2].map((i) => median(list.map((x) => x.perServer[i]))).join(' / ')})` : ''),
    );
  }
} finally {
  await single.stop();
  await cluster.stop();
}
