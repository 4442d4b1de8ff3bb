// How long a partition goes without committing an output on a loaded machine, Postgres (a worker with `effects`)
// against Redis: `node bench/postgres-stall.mjs <postgres|redis> [seconds=30] [hogs=8] [package dir=.]`. Starts its
// own server, `hogs` busy-looping node children (pinned to CPUs 0-1 with taskset when there is one), a worker of 8
// partitions (leaseTtl 4000: idle limit 2000 ms) and a producer of 200 events/s over 64 keys; prints, per run, the
// gaps between one partition's committed outputs (onOutput) across partitions: max and p99, ms, and the errors by code.
import { spawn, execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const [backend = 'postgres', seconds = '30', hogCount = '8', dir = '.'] = process.argv.slice(2);
const pkg = (sub) => import(pathToFileURL(resolve(dir, sub)).href);
const { streamFn } = await pkg('index.mjs');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let taskset = false;
try {
  execFileSync('taskset', ['-c', '0,1', 'true']);
  taskset = true;
} catch {}
const hogs = Array.from({ length: Number(hogCount) }, () =>
  taskset
    ? spawn('taskset', ['-c', '0,1', process.execPath, '-e', 'for(;;);'], { stdio: 'ignore' })
    : spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' }),
);
const stopHogs = () => hogs.forEach((h) => h.kill('SIGKILL'));
process.once('exit', stopHogs);

const fn = streamFn(
  async function* (events) {
    let total = 0;
    for await (const e of events) yield { n: e.n, total: (total += e.n) };
  },
  { idleTimeout: 0 },
);
const last = new Map();
const gaps = [];
const errors = new Map();
let outputs = 0;
const onOutput = (o) => {
  const now = performance.now();
  const was = last.get(o.partition);
  if (was !== undefined) gaps.push(now - was);
  last.set(o.partition, now);
  outputs++;
};
const onError = (e) => errors.set(e?.code ?? e?.message, (errors.get(e?.code ?? e?.message) ?? 0) + 1);
const shared = { name: 'stall', partitions: 8 };
let server;
let worker;
let producer;
let end = async () => {};
if (backend === 'postgres') {
  server = await startPostgres();
  const pool = server.pool({ max: 10 });
  await pool.query('CREATE TABLE IF NOT EXISTS stall_fx (sid text, seq bigint, total bigint)');
  const { postgresWorker, postgresProducer } = await pkg('dist/postgres/index.js');
  const effects = async (tx, written) => {
    for (const o of written) await tx.query('INSERT INTO stall_fx VALUES ($1, $2, $3)', [o.sid, o.seq, o.value.total]);
  };
  worker = postgresWorker(fn, { ...shared, pool, schema: 'velo_stall', leaseTtl: 4000, onError, onOutput, effects });
  producer = postgresProducer({ ...shared, pool: server.pool({ max: 4 }), schema: 'velo_stall' });
} else {
  server = await startRedis();
  const { redisWorker, redisProducer } = await pkg('dist/redis/index.js');
  worker = redisWorker(fn, { ...shared, client: await server.client(), leaseTtl: 4000, onError, onOutput });
  producer = redisProducer({ ...shared, client: await server.client() });
}
const until = performance.now() + Number(seconds) * 1000;
let n = 0;
while (performance.now() < until) {
  const batch = [];
  for (let i = 0; i < 20; i++, n++) batch.push([`k${n % 64}`, { n: 1 }]);
  await producer.sendMany(batch).catch(onError);
  await sleep(100);
}
await sleep(3000);
stopHogs();
await worker.close();
await end();
await server.stop();
gaps.sort((a, b) => a - b);
const p99 = gaps[Math.floor(gaps.length * 0.99)] ?? 0;
console.log(
  JSON.stringify({
    backend,
    package: dir,
    hogs: hogs.length,
    taskset,
    sent: n,
    outputs,
    maxGapMs: Math.round(gaps.at(-1) ?? 0),
    p99GapMs: Math.round(p99),
    errors: Object.fromEntries(errors),
  }),
);
process.exit(0);
