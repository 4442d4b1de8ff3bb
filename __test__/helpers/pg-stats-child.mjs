// A worker process for the takeover stats test, on Postgres or Redis. Args: backend ('postgres' | 'redis'), the
// connection (a JSON pg.Pool config, or a Redis URL), name, partitions, leaseTtl. Prints `stats <json>` (the
// worker's stats()) every 50 ms; on SIGTERM closes the worker (hands off), prints `closed <json>` and exits 0.
import { streamFn } from '../../index.mjs';

const [backend, connection, name, partitions, leaseTtl] = process.argv.slice(2);
const fn = streamFn(
  async function* count(events) {
    let n = 0;
    for await (const e of events) yield { n: ++n, e };
  },
  { idleTimeout: 0 },
);
const options = { name, partitions: Number(partitions), leaseTtl: Number(leaseTtl), onError: () => {} };
let worker;
let end = async () => {};
if (backend === 'postgres') {
  const { default: pg } = await import('pg');
  const { postgresWorker } = await import('velo-stream/postgres');
  const pool = new pg.Pool(JSON.parse(connection));
  pool.on('error', () => {});
  worker = postgresWorker(fn, { ...options, pool, schema: 'velo_stats' });
  end = () => pool.end();
} else {
  const { createClient } = await import('redis');
  const { redisWorker } = await import('velo-stream/redis');
  const client = createClient({ url: connection });
  client.on('error', () => {});
  await client.connect();
  worker = redisWorker(fn, { ...options, client });
  end = () => client.close();
}
const print = () => process.stdout.write(`stats ${JSON.stringify(worker.stats())}\n`);
const timer = setInterval(print, 50);
print();
process.once('SIGTERM', async () => {
  clearInterval(timer);
  await worker.close();
  process.stdout.write(`closed ${JSON.stringify(worker.stats())}\n`);
  await end();
  process.exit(0);
});
