// A worker process with local delivery, for redis-local.test.mjs. Args: url
// name partitions leaseTtl idleTimeout handler extra, handler `totals` (the
// deterministic fixture, 1 ms per event) or `random` (yields `{ n, r:
// Math.random() }`: not deterministic over its inputs), extra a JSON object
// of more worker options. Prints `out <json>` for each output onOutput gets
// (printed synchronously: a pipe on Linux is written at once, so a kill -9
// loses no line printed before it), `owned ...` and `stats <json>` as
// redis-worker-child.mjs does, and `error <code> <message>` for what reaches
// onError. On SIGTERM hands off, prints `closed <json>` and exits 0.
import { createClient } from 'redis';
import { redisWorker } from 'velo-stream/redis';
import { streamFn } from '../../index.mjs';
import { serveChildProtocol, totals } from './redis-fixtures.mjs';

const [url, name, partitions, leaseTtl, idleTimeout, handler, extraJson = '{}'] = process.argv.slice(2);
const extra = JSON.parse(extraJson);
const random = streamFn(
  async function* random(events) {
    for await (const e of events) yield { n: e.n, r: Math.random() };
  },
  { idleTimeout: Number(idleTimeout) },
);
const client = createClient({ url });
client.on('error', () => {});
await client.connect();
const fn = handler === 'random' ? random : totals({ idleTimeout: Number(idleTimeout) }, 1);
const worker = redisWorker(fn, {
  ...extra,
  client,
  name,
  partitions: Number(partitions),
  leaseTtl: Number(leaseTtl),
  onOutput: (output) => console.log(`out ${JSON.stringify(output)}`),
  onError: (error) => console.log(`error ${error?.code} ${error?.message}`),
});
serveChildProtocol(worker, client);
