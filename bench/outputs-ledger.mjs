// A Redis function's outputs into a Postgres ledger, exactly once (docs/durable/outputs.md), against the Redis drain,
// in one sitting:
//
//   node bench/outputs-ledger.mjs [rounds] [events] [--max <batch>] [--quick]
//
// On a private redis-server and a private postgres (durable: fsync on, synchronous_commit on), `rounds` times:
// - drain: a velo-stream worker in a child process (bench/redis/child.mjs, as `bench/redis.mjs drain`: 16
//   partitions, 1,000 keys, a running total per key) drains a backlog of `events` events: events/s from its resume to
//   the last output in Redis;
// - ledger: this process reads those outputs with `sessionOutputs(...).batches({ max })` into a ledger table (one
//   row per output, UNIQUE (sid, seq)), each batch and its position in one transaction guarded by the position it
//   was read after: rows/s from the reader's start to the last row committed;
// - live: both at once, on a new backlog: the reader follows the worker; rows/s from the worker's resume to the last
//   row committed, and the lag of each batch's last output (its commit to Redis -> its row committed) at p50/p99.
// Prints each round and the medians, and ledger / drain (target >= 0.8). Every ledger is checked: one row per event,
// each key's rows in the order of its events. --quick: 1 round of 20,000 events.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { sessionOutputs, sessionProducer } from 'velo-stream/durable';
import { start } from '../__test__/helpers/child.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';
import { writeBacklog } from './redis/drain.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const flag = (name, fallback) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
const positional = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--max'));
const rounds = Number(positional[0] ?? (quick ? 1 : 3));
const events = Number(positional[1] ?? (quick ? 20_000 : 100_000));
const max = flag('--max', 1000);
const PARTITIONS = 16;
const KEYS = 1000;
const CHILD = fileURLToPath(new URL('./redis/child.mjs', import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const quantile = (xs, q) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
/** CPU time (user + system) of a process so far, ms, from /proc (ticks of 10 ms: measure over seconds). */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}
/** CPU time of a process and its children now (postgres: the postmaster and its backends), ms. */
function treeCpuMs(pid) {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  return children.reduce((sum, child) => {
    try {
      return sum + cpuMs(child);
    } catch {
      return sum; // (a backend that ended meanwhile)
    }
  }, cpuMs(pid));
}
/** This process' CPU time so far, ms. */
const ownCpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

const redis = await startRedis();
const postgres = await startPostgres({ durable: true });
const client = await redis.client();
const db = postgres.pool({ max: 4 });

await db.query(`CREATE TABLE ledger (id bigserial PRIMARY KEY, key text NOT NULL, n integer NOT NULL, total bigint NOT NULL,
  sid text NOT NULL, seq integer NOT NULL, UNIQUE (sid, seq))`);
await db.query('CREATE TABLE ledger_position (name text PRIMARY KEY, after jsonb NOT NULL)');

/** One batch into the ledger, guarded; false if the position moved (never here: one reader). */
async function write(name, batch) {
  const tx = await db.connect();
  try {
    await tx.query('BEGIN');
    const moved = await tx.query('UPDATE ledger_position SET after = $2 WHERE name = $1 AND after = $3::jsonb', [
      name,
      batch.to,
      batch.from,
    ]);
    if (moved.rowCount !== 1) {
      await tx.query('ROLLBACK');
      return false;
    }
    const rows = batch.outputs.filter((o) => 'value' in o);
    await tx.query(
      `INSERT INTO ledger (key, n, total, sid, seq)
       SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::integer[])`,
      [
        rows.map((o) => o.key),
        rows.map((o) => o.value.n),
        rows.map((o) => o.value.total),
        rows.map((o) => o.sid),
        rows.map((o) => o.seq),
      ],
    );
    await tx.query('COMMIT');
    return true;
  } catch (error) {
    await tx.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    tx.release();
  }
}

/** Reads `name`'s outputs into the ledger until it holds `events` rows; resolves with the lags (ms) of the batches' last outputs. */
async function ledger(name) {
  await db.query('TRUNCATE ledger');
  await db.query(`INSERT INTO ledger_position VALUES ($1, '{}')`, [name]);
  const lags = [];
  let rows = 0;
  const reader = sessionOutputs({ client, name, partitions: PARTITIONS, after: {} });
  for await (const batch of reader.batches({ max })) {
    if (!(await write(name, batch))) throw new Error('the position moved');
    // An entry id's ms is when Redis stored it (the worker's commit).
    lags.push(Date.now() - Number(batch.outputs.at(-1).id.split('-')[0]));
    if ((rows += batch.outputs.length) >= events) break;
  }
  return lags;
}

/** One row per event, each key's running totals in order (by the ledger's ids). */
async function check() {
  const { rows } = await db.query('SELECT key, n, total FROM ledger ORDER BY id');
  if (rows.length !== events) throw new Error(`${rows.length} rows for ${events} events`);
  const last = new Map();
  for (const r of rows) {
    const before = last.get(r.key) ?? { n: -1, total: 0 };
    if (r.n <= before.n || Number(r.total) !== before.total + r.n)
      throw new Error(`${r.key}: row ${JSON.stringify(r)} after ${JSON.stringify(before)}`);
    last.set(r.key, { n: r.n, total: Number(r.total) });
  }
}

async function outputsInRedis(name) {
  const lengths = await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => client.xLen(`velo:{${name}:p${p}}:out`)));
  return lengths.reduce((a, b) => a + b, 0);
}

/** A stopped worker child with a backlog of `events` waiting for it; `go()` resumes it and returns the time. */
async function backlog(name) {
  const worker = start([CHILD, redis.url, name, 'velo', String(PARTITIONS), String(KEYS), '30000', '100'], { timeout: 600_000 });
  await worker.waitFor(/^owned \d/m);
  await sleep(300);
  worker.child.kill('SIGSTOP');
  await writeBacklog(sessionProducer({ client, name, partitions: PARTITIONS }), events, KEYS);
  return {
    worker,
    go() {
      const t0 = performance.now();
      worker.child.kill('SIGCONT');
      return t0;
    },
    async stop() {
      worker.child.kill('SIGTERM');
      await worker.finished();
    },
  };
}

const results = [];
for (let r = 1; r <= rounds; r++) {
  // Drain, then the ledger of what it wrote.
  const a = await backlog(`drain${r}`);
  const workerCpu0 = cpuMs(a.worker.child.pid);
  const redisCpu0 = cpuMs(redis.pid);
  let t0 = a.go();
  while ((await outputsInRedis(`drain${r}`)) < events) await sleep(20);
  const drainSeconds = (performance.now() - t0) / 1000;
  const workerCpu = cpuMs(a.worker.child.pid) - workerCpu0;
  const redisCpu = cpuMs(redis.pid) - redisCpu0;
  await a.stop();
  t0 = performance.now();
  const readerCpu0 = ownCpuMs();
  const postgresCpu0 = treeCpuMs(postgres.pid);
  await ledger(`drain${r}`);
  const readerCpu = ownCpuMs() - readerCpu0;
  const postgresCpu = treeCpuMs(postgres.pid) - postgresCpu0;
  const ledgerSeconds = (performance.now() - t0) / 1000;
  await check();
  // Live: the reader follows the worker.
  const b = await backlog(`live${r}`);
  const following = ledger(`live${r}`);
  t0 = b.go();
  const lags = await following;
  const liveSeconds = (performance.now() - t0) / 1000;
  await b.stop();
  await check();
  const round = {
    drain: Math.round(events / drainSeconds),
    ledger: Math.round(events / ledgerSeconds),
    workerCpuUs: +((workerCpu * 1000) / events).toFixed(1),
    redisCpuUs: +((redisCpu * 1000) / events).toFixed(1),
    readerCpuUs: +((readerCpu * 1000) / events).toFixed(1),
    postgresCpuUs: +((postgresCpu * 1000) / events).toFixed(1),
    live: Math.round(events / liveSeconds),
    lagP50: quantile(lags, 0.5),
    lagP99: quantile(lags, 0.99),
    batches: lags.length,
  };
  results.push(round);
  console.log(`round ${r}: ${JSON.stringify(round)}`);
  await client.flushAll();
}

const m = (k) => median(results.map((x) => x[k]));
console.log(
  `\n${events.toLocaleString('en-US')} events, ${PARTITIONS} partitions, ${KEYS} keys, max ${max}, ${rounds} round(s), medians:` +
    `\ndrain (Redis worker)        ${m('drain').toLocaleString('en-US')} events/s` +
    `\nledger (outputs -> Postgres) ${m('ledger').toLocaleString('en-US')} rows/s   ledger / drain x${(m('ledger') / m('drain')).toFixed(2)}` +
    `\nCPU per event of the drain: worker ${m('workerCpuUs')} + redis-server ${m('redisCpuUs')} µs;` +
    ` per row of the ledger: reader ${m('readerCpuUs')} + postgres ${m('postgresCpuUs')} µs` +
    `\nlive (both at once)         ${m('live').toLocaleString('en-US')} rows/s end to end, lag p50 ${m('lagP50')} ms, p99 ${m('lagP99')} ms` +
    `\n${new Date().toISOString()}`,
);
await db.end();
await postgres.stop();
await redis.stop();
