// A worker process of `node bench/postgres.mjs failover` (bench/postgres.mjs starts, kills and watches it).
// Args: backend (redis | postgres) target (a redis URL, or a postgres port) name partitions keys leaseTtl pollMs [copy]
// (copy: another copy of the package to take Postgres' worker from, in schema velo_base: see --base there)
// The running-total function of bench/redis/child.mjs (one session per key, idleTimeout 0), with checkpoints off.
// Prints `ready`, and `owned <p,p,...> <epoch ms>` whenever its partitions change (checked every pollMs). A line
// `target <n>` on stdin: prints `reached <epoch ms>` once its worker has written n outputs (checked every pollMs).
// SIGTERM: closes the worker (hands off), prints `closed`, exits.
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import pg from 'pg';
import { streamFn as ownStreamFn } from 'velo-stream';
import { redisWorker } from 'velo-stream/redis';
import { postgresWorker as ownWorker } from 'velo-stream/postgres';

const [backend, target, name, partitions, keys, leaseTtl, pollMs, copy = ''] = process.argv.slice(2);
const streamFn = copy === '' ? ownStreamFn : (await import(`${copy}/index.mjs`)).streamFn;
const postgresWorker = copy === '' ? ownWorker : (await import(`${copy}/dist/postgres/index.js`)).postgresWorker;
const now = () => performance.timeOrigin + performance.now();
const fn = streamFn(
  async function* sum(events) {
    let total = 0;
    for await (const e of events) yield { n: e.n, total: (total += e.n) };
  },
  { idleTimeout: 0, maxConcurrent: Number(keys) * 2 },
);
const options = { name, partitions: Number(partitions), leaseTtl: Number(leaseTtl), onError: (e) => console.log(`error ${e?.message}`) };
let end;
let worker;
if (backend === 'redis') {
  const client = createClient({ url: target });
  client.on('error', (error) => console.log(`error ${error.message}`));
  await client.connect();
  worker = redisWorker(fn, { ...options, client });
  end = () => client.close();
} else {
  const pool = new pg.Pool({ host: '127.0.0.1', port: Number(target), user: 'velo', database: 'postgres', max: 20 });
  pool.on('error', () => {});
  worker = postgresWorker(fn, { ...options, pool, schema: copy === '' ? 'velo_bench' : 'velo_base' });
  end = () => pool.end();
}
let shown = null;
let goal = Infinity;
const timer = setInterval(() => {
  const stats = worker.stats();
  const owned = stats.owned.join(',');
  if (owned !== shown) console.log(`owned ${(shown = owned)} ${now()}`);
  if (stats.outputs >= goal) {
    console.log(`reached ${now()}`);
    goal = Infinity;
  }
}, Number(pollMs));
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.startsWith("target ")) goal = Number(line.slice(7));
});
process.once('SIGTERM', async () => {
  clearInterval(timer);
  await worker.close();
  await end();
  console.log('closed');
  process.stdin.destroy();
});
console.log('ready');
