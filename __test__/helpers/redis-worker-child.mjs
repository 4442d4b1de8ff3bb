// A worker process for the Redis fault tests. Args: url name partitions
// leaseTtl idleTimeout delayMs trimInterval. Prints `owned <p,p,...>` whenever its
// partitions change and `stats <json>` every 100 ms; recovers from Redis
// errors (printed as `error ...` on stdout); on SIGTERM hands off
// (worker.close()), prints `closed <json>` and exits 0.
import { createClient } from 'redis';
import { redisWorker } from 'velo-stream/redis';
import { totals } from './redis-fixtures.mjs';

const [url, name, partitions, leaseTtl, idleTimeout, delayMs, trimInterval] = process.argv.slice(2);
const client = createClient({ url });
client.on('error', () => {});
await client.connect();
const worker = redisWorker(totals({ idleTimeout: Number(idleTimeout) }, Number(delayMs)), {
  client,
  name,
  partitions: Number(partitions),
  leaseTtl: Number(leaseTtl),
  trimInterval: Number(trimInterval),
  onError: (error) => console.log(`error ${error?.message}`),
});
let shown = '';
const timer = setInterval(() => {
  const stats = worker.stats();
  const owned = stats.owned.join(',');
  if (owned !== shown) console.log(`owned ${(shown = owned)}`);
  console.log(`stats ${JSON.stringify(stats)}`);
}, 100);
process.once('SIGTERM', async () => {
  clearInterval(timer);
  await worker.close();
  console.log(`closed ${JSON.stringify(worker.stats())}`);
  await client.close();
});
console.log(`ready ${worker.id}`);
