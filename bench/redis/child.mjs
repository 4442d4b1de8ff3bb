// A consumer process of `npm run bench:redis` (bench/redis.mjs starts and
// measures it). Args: url name kind partitions keys leaseTtl pollMs
//   kind velo:  a velo-stream redisWorker, one session per key (a running total; idleTimeout 0);
//   kind naive: the naive baseline (bench/redis/naive.mjs) over the sessions k0..k<keys-1>.
// Prints `ready`, and for velo `owned <p,p,...> <epoch ms>` when it finds its
// partitions changed (checked every pollMs). A line `report` on stdin prints `report <json>`: events
// handled, and the latency of those that carried a send time `t` (epoch ms,
// performance.timeOrigin + performance.now(): comparable across processes).
// SIGTERM: stops (velo: hands off), prints `closed`, exits 0.
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import { redisWorker } from 'velo-stream/redis';
import { naiveConsumer } from './naive.mjs';

const [url, name, kind, partitions, keys, leaseTtl, pollMs] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const client = createClient({ url });
client.on('error', (error) => console.log(`error ${error.message}`));
await client.connect();

const latencies = [];
let handled = 0;
const onEvent = (event) => {
  handled++;
  if (event.t !== undefined) latencies.push(now() - event.t);
};

let stop;
let stats = () => ({});
if (kind === 'velo') {
  const fn = streamFn(
    async function* sum(events) {
      let total = 0;
      for await (const e of events) {
        onEvent(e);
        yield { n: e.n, total: (total += e.n) };
      }
    },
    { idleTimeout: 0, maxConcurrent: Number(keys) * 2 },
  );
  const worker = redisWorker(fn, { client, name, partitions: Number(partitions), leaseTtl: Number(leaseTtl), onError: (e) => console.log(`error ${e?.message}`) });
  let shown = null;
  const timer = setInterval(() => {
    const owned = worker.stats().owned.join(',');
    if (owned !== shown) console.log(`owned ${(shown = owned)} ${now()}`);
  }, Number(pollMs));
  stop = async () => {
    clearInterval(timer);
    await worker.close();
  };
  stats = () => worker.stats();
} else if (kind === 'naive') {
  const consumer = naiveConsumer(client, {
    name,
    sessionKeys: Array.from({ length: Number(keys) }, (_, i) => `k${i}`),
    handle: (total = 0, e) => [total + e.n, { n: e.n, total: total + e.n }],
    onEvent,
  });
  stop = () => consumer.stop();
  stats = () => consumer.stats();
} else throw new Error(`unknown kind ${kind}`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'report') {
    latencies.sort((a, b) => a - b);
    console.log(`report ${JSON.stringify({ handled, latencies: latencies.map((x) => Math.round(x * 1000) / 1000), stats: stats() })}`);
    latencies.length = 0;
  }
});
process.once('SIGTERM', async () => {
  await stop();
  console.log('closed');
  await client.close();
  process.stdin.destroy();
});
console.log('ready');
