// node bench/postgres.mjs [rounds] [--durable]                 drain and live, 3 rounds, then 3 failovers each
// node bench/postgres.mjs drain [events] [keys] [rounds] [--durable]
// node bench/postgres.mjs live [events/s] [seconds] [rounds] [--durable]
// node bench/postgres.mjs failover [runs] [leaseTtl]
// node bench/postgres.mjs drain [events] [keys] [rounds] --journal   the drain with a handler that calls `compute(e)`
//   per event (redis, postgres) and a third backend, `pgjournal`: Postgres with that call made through
//   `ctx.run('svc', ...)` (a journaled call; bench/postgres/child.mjs), and the ratio pgjournal / postgres
//
// The worker on Postgres and on Redis side by side in one sitting. Private servers on 127.0.0.1 (__test__/helpers):
// a redis-server without persistence, and a postgres with fsync off (--durable: fsync and synchronous_commit on).
// 16 partitions, 1,000 keys, the running-total function of bench/redis/drain.mjs (one output per event). Per round,
// each backend in turn (the order alternating):
// - drain: a backlog of `events` events (default 30,000) written with the backend's producer (not timed), then one
//   worker in this process drains it: events/s from the worker's start to its last output committed
//   (`stats().outputs`); CPU per event of this process (the worker: the producer is idle by then) and of the server
//   (redis-server; postgres: the postmaster and every backend, /proc, exited ones by the postmaster's cutime).
// - live: a producer in this process sends at `events/s` (default 2,000) for `seconds` (default 5), a batch every
//   10 ms; the handler records the time from just before the send to the event reaching it (p50 / p99), and the
//   achieved rate (events / time to the last output); CPU per event of this process (worker and producer) and of
//   the server.
// On Postgres, also the statements per event and per commit/read transaction (the pool wrapped and counted).
// - failover: 2 worker processes (bench/postgres/child.mjs, leaseTtl 2000), every key's session live; kill -9 of
//   one, then one event to each of its keys: the time from the kill to the first new output in one of its
//   partitions (polled every 2 ms), against the budget leaseTtl + 250 ms; split into the wait for the lease (to the
//   survivor's first `owned` line with one of them), of it the part past the first expiry, and the replay; and
//   the time from the first expiry to that output (afterExpiryMs: what the backend adds to the lease; the lease
//   wait is between 2/3 of leaseTtl and all of it, by where in the renewal period the kill fell).
//   VELO_BENCH_TRACE=<dir>: each worker process writes every statement it runs (start, duration, partition) and
//   its event loop's delay to <dir>/<pid>.log, and each run prints the times to read them against.
// Prints each run, then the medians per backend and Postgres' figures as a ratio of Redis'. Order of magnitude
// only: one machine, both servers on it.
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { streamFn } from '../index.mjs';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { start } from '../__test__/helpers/child.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';
import { writeBacklog } from './redis/drain.mjs';
import { cpuOf, serverCpu } from './postgres/cpu.mjs';

const args = process.argv.slice(2);
const durable = args.includes('--durable');
const baseAt = args.indexOf('--base');
const baseDir = baseAt === -1 ? null : args[baseAt + 1];
const journal = args.includes('--journal');
const plain = args.filter((a, i) => !a.startsWith('--') && (baseAt === -1 || i !== baseAt + 1));
const mode = ['drain', 'live', 'failover'].includes(plain[0]) ? plain.shift() : 'all';
const nums = plain.map(Number);
const PARTITIONS = 16;
const KEYS = 1000;
const CHILD = fileURLToPath(new URL('./postgres/child.mjs', import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const epochNow = () => performance.timeOrigin + performance.now();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const redis = await startRedis();
const pg = await startPostgres({ durable });
// (An interrupted run stops its servers too.)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => Promise.allSettled([redis.stop(), pg.stop()]).then(() => process.exit(130)));
}
const client = await redis.client();
const pool = countingPool(pg.pool({ max: 20 }));
const serverPid = { redis: redis.pid, postgres: pg.pid };

/** The pool with every statement counted (`pool.statements`), and the transactions (BEGIN) apart. */
function countingPool(inner) {
  const counted = { statements: 0, transactions: 0 };
  const count = (text) => {
    counted.statements++;
    if (/^BEGIN/.test(typeof text === 'string' ? text : (text?.text ?? ''))) counted.transactions++;
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'counted') return counted;
      if (prop === 'query') return (...a) => (count(a[0]), target.query(...a));
      if (prop === 'connect')
        return async () => {
          const c = await target.connect();
          if (!c.__counted) {
            const query = c.query.bind(c);
            c.query = (...a) => (count(a[0]), query(...a));
            c.__counted = true;
          }
          return c;
        };
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

// --base <dir>: a third backend, `pgbase`, Postgres as another copy of the package has it (its package.json, index.mjs,
// dist/ and native/, node_modules linked): this one's figures against that one's, in the same sitting.
const modules = {
  redis: { streamFn, worker: redisWorker, producer: redisProducer },
  postgres: { streamFn, worker: postgresWorker, producer: postgresProducer },
};
if (baseDir !== null) {
  const base = await import(`${baseDir}/dist/postgres/index.js`);
  const velo = await import(`${baseDir}/index.mjs`);
  modules.pgbase = { streamFn: velo.streamFn, worker: base.postgresWorker, producer: base.postgresProducer, base: true };
}
// --journal: a third backend, `pgjournal`, Postgres with the drain's handler making its call through ctx.run.
if (journal) modules.pgjournal = modules.postgres;
const server = (kind) => (kind === 'redis' ? 'redis' : 'postgres');

/** The function of bench/redis/drain.mjs (each key's running total), made by a backend's copy of the package. */
function sumFn(kind, onEvent = () => {}) {
  return modules[kind].streamFn(
    async function* sum(xs) {
      let total = 0;
      for await (const x of xs) {
        onEvent(x);
        yield { total: (total += x.n) };
      }
    },
    { idleTimeout: 0, maxConcurrent: KEYS * 2 },
  );
}

let fresh = 0;
function backend(kind, fn, extra = {}, name = `b${++fresh}`) {
  const shared =
    kind === 'redis'
      ? { client, name, partitions: PARTITIONS }
      : { pool, schema: kind === 'pgbase' ? 'velo_base' : 'velo_bench', name, partitions: PARTITIONS };
  const producer = modules[kind].producer(shared);
  const worker = () => modules[kind].worker(fn, { ...shared, trimInterval: 0, ...extra });
  return { producer, worker };
}

function meter(kind) {
  const pid = serverPid[server(kind)];
  const before = { cpu: process.cpuUsage(), server: serverCpu(pid), ...pool.counted };
  return (events) => {
    const used = process.cpuUsage(before.cpu);
    const serverMs = serverCpu(pid) - before.server;
    const out = {
      workerCpuUsPerEvent: +((used.user + used.system) / events).toFixed(1),
      serverCpuUsPerEvent: +((serverMs * 1000) / events).toFixed(1),
    };
    if (kind !== 'redis') {
      out.statementsPerEvent = +((pool.counted.statements - before.statements) / events).toFixed(2);
      out.transactionsPerEvent = +((pool.counted.transactions - before.transactions) / events).toFixed(3);
    }
    return out;
  };
}

/** Worker processes (bench/postgres/child.mjs) on `kind`, once each owns its share of the partitions. */
async function startWorkers(kind, count, name, ttl) {
  const target = kind === 'redis' ? redis.url : String(pg.port);
  const copy = kind === 'pgbase' ? baseDir : '';
  const call = !journal ? '' : kind === 'pgjournal' ? 'journal' : 'plain';
  const args = [CHILD, server(kind), target, name, PARTITIONS, KEYS, ttl, 2, copy, call].map(String);
  const children = Array.from({ length: count }, () => start(args, { timeout: 600_000 }));
  await Promise.all(children.map((c) => c.waitFor(/^ready$/m)));
  await until(() => children.every((c) => ownedOf(c)?.length === PARTITIONS / count), 'equal shares', 60_000);
  return children;
}

async function stopWorkers(children) {
  for (const c of children) c.child.kill('SIGTERM');
  for (const c of children) {
    const { stdout } = await c.finished();
    if (/^error /m.test(stdout)) throw new Error(`a worker reported an error:\n${stdout}`);
  }
}

/**
 * A drain, as bench/redis.mjs's: one worker process takes every partition and is stopped (SIGSTOP) while the
 * backlog is written, then resumed; events/s from the resume to the last output stored. CPU per event of the
 * worker process and of the server (/proc).
 */
async function drain(kind, events) {
  const name = `d${++fresh}`;
  const [worker] = await startWorkers(kind, 1, name, 30_000);
  await sleep(300);
  worker.child.kill('SIGSTOP');
  const { producer } = backend(kind, null, {}, name);
  await writeBacklog(producer, events, KEYS);
  const pid = serverPid[server(kind)];
  const before = { worker: cpuOf(worker.child.pid), server: serverCpu(pid) };
  worker.child.stdin.write(`target ${events}\n`);
  const t0 = epochNow();
  worker.child.kill('SIGCONT');
  await worker.waitFor(/^reached (\S+)$/m);
  const seconds = (Number(/^reached (\S+)$/m.exec(worker.stdout)[1]) - t0) / 1000;
  const per = (ms) => +((ms * 1000) / events).toFixed(1);
  const result = {
    eventsPerSecond: Math.round(events / seconds),
    workerCpuUsPerEvent: per(cpuOf(worker.child.pid) - before.worker),
    serverCpuUsPerEvent: per(serverCpu(pid) - before.server),
  };
  await stopWorkers([worker]);
  if ((await outputs(kind, name)) !== events) throw new Error(`${kind}: not ${events} outputs`);
  return result;
}

async function live(kind, rate, seconds) {
  const latencies = [];
  const { producer, worker: startWorker } = backend(kind, sumFn(kind, (x) => latencies.push(epochNow() - x.t)));
  const worker = startWorker();
  while (worker.stats().owned.length < PARTITIONS) await sleep(20);
  await sleep(300);
  const total = rate * seconds;
  const perTick = Math.max(1, Math.round(rate / 100));
  const end = meter(kind);
  const started = performance.now();
  let sent = 0;
  const sends = [];
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + perTick);
    const pairs = [];
    const t = epochNow();
    for (; sent < due; sent++) pairs.push([`k${sent % KEYS}`, { n: sent, t }]);
    if (pairs.length > 0) sends.push(producer.sendMany(pairs));
    await sleep(10);
  }
  await Promise.all(sends);
  while (worker.stats().outputs < total) await sleep(5);
  const ms = performance.now() - started;
  const cpu = end(total);
  await worker.close();
  latencies.sort((a, b) => a - b);
  return {
    achievedPerSecond: Math.round((total / ms) * 1000),
    p50Ms: +quantile(latencies, 0.5).toFixed(2),
    p99Ms: +quantile(latencies, 0.99).toFixed(2),
    ...cpu,
  };
}

async function until(check, what, timeout = 120_000, ms = 10) {
  const deadline = performance.now() + timeout;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(ms);
  }
}

function ownedOf(child) {
  const lines = child.stdout.split('\n').filter((l) => l.startsWith('owned '));
  if (lines.length === 0) return null;
  const list = lines.at(-1).split(' ')[1];
  return list === '' ? [] : list.split(',').map(Number);
}

/** Whether `partitions` hold an output newer than `before` (their count then; on Postgres an id from `since` on). */
async function newer(kind, name, partitions, before, since) {
  if (kind === 'redis') return (await outputs(kind, name, partitions)) > before;
  const { rows } = await pool.query({
    text: `SELECT EXISTS (SELECT 1 FROM ${kind === 'pgbase' ? 'velo_base' : 'velo_bench'}.outputs
             WHERE fn = $1 AND p = ANY($2::int[]) AND ms >= $3) AS x`,
    values: [name, partitions, Math.floor(since)],
  });
  return rows[0].x;
}

/** Outputs so far in `partitions` (all when omitted). */
async function outputs(kind, name, partitions = [...Array(PARTITIONS).keys()]) {
  if (kind === 'redis') {
    const lengths = await Promise.all(partitions.map((p) => client.xLen(`velo:{${name}:p${p}}:out`)));
    return lengths.reduce((x, y) => x + y, 0);
  }
  const { rows } = await pool.query({
    text: `SELECT count(*)::int AS n FROM ${kind === 'pgbase' ? 'velo_base' : 'velo_bench'}.outputs WHERE fn = $1 AND p = ANY($2::int[])`,
    values: [name, partitions],
  });
  return rows[0].n;
}

async function failover(kind, ttl) {
  const name = `f${++fresh}`;
  const [a, b] = await startWorkers(kind, 2, name, ttl);
  const { producer } = backend(kind, null, {}, name);
  let n = 0;
  for (let r = 0; r < 3; r++) await producer.sendMany(Array.from({ length: KEYS }, (_, k) => [`k${k}`, { n: n++ }]));
  await until(async () => (await outputs(kind, name)) >= n, 'the live sessions caught up');
  await sleep(200);
  const mine = ownedOf(a);
  const before = await outputs(kind, name, mine);
  const keysA = Array.from({ length: KEYS }, (_, k) => `k${k}`).filter((key) => mine.includes(producer.partitionOf(key)));
  const killedAt = epochNow();
  a.child.kill('SIGKILL');
  await a.finished().catch((error) => {
    if (!/killed by SIGKILL/.test(String(error))) throw error;
  });
  // When the dead worker's first lease runs out (the server's clock, this machine's).
  const expiredAt =
    kind === 'redis'
      ? Math.min(
          ...(await Promise.all(mine.map((p) => client.sendCommand(['PEXPIRETIME', `velo:{${name}:p${p}}:lease`]))))
            .map(Number)
            .filter((t) => t > 0),
        )
      : Number(
          (
            await pool.query({
              text: `SELECT min(until_ms) AS t FROM ${kind === 'pgbase' ? 'velo_base' : 'velo_bench'}.leases WHERE fn = $1 AND p = ANY($2::int[])`,
              values: [name, mine],
            })
          ).rows[0].t,
        );
  await producer.sendMany(keysA.map((key) => [key, { n: n++ }]));
  await until(() => newer(kind, name, mine, before, killedAt), 'a first output', 60_000, 2);
  const firstOutput = epochNow();
  const taken = b.stdout
    .split('\n')
    .filter((l) => l.startsWith('owned '))
    .map((l) => l.split(' '))
    .find(([, list, at]) => Number(at) > killedAt && list.split(',').map(Number).some((p) => mine.includes(p)));
  await until(async () => (await outputs(kind, name)) >= n, 'every output');
  if (process.env.VELO_BENCH_TRACE) {
    console.log(`trace ${kind} survivor ${b.child.pid} killed ${killedAt.toFixed(1)} expired ${expiredAt} output ${firstOutput.toFixed(1)} mine ${mine}`);
  }
  await stopWorkers([b]);
  return {
    failoverMs: Math.round(firstOutput - killedAt),
    leaseWaitMs: taken === undefined ? null : Math.round(Number(taken[2]) - killedAt),
    // The survivor's part of the lease wait: from the first expiry to its take-over.
    pastExpiryMs: taken === undefined ? null : Math.round(Number(taken[2]) - expiredAt),
    replayMs: taken === undefined ? null : Math.round(firstOutput - Number(taken[2])),
    // From the first expiry to the first output: what the backend adds to the lease (the budget leaves it 250 ms;
    // the lease wait itself depends on where in the renewal period the kill fell).
    afterExpiryMs: Math.round(firstOutput - expiredAt),
    budgetMs: ttl + 250,
  };
}

const runs = Object.fromEntries(Object.keys(modules).map((kind) => [kind, []]));
function summary(fields) {
  const out = {};
  for (const kind of Object.keys(runs)) {
    out[kind] = Object.fromEntries(fields.map((f) => [f, median(runs[kind].map((r) => r[f]).filter((x) => x !== undefined))]));
  }
  return out;
}
async function rounds(n, label, once, fields) {
  for (const kind of Object.keys(runs)) runs[kind] = [];
  for (let round = 0; round < n; round++) {
    const kinds = Object.keys(runs);
    for (const kind of round % 2 === 0 ? kinds : kinds.reverse()) {
      const result = await once(kind);
      runs[kind].push(result);
      console.log(`${label} ${round + 1} ${kind.padEnd(8)} ${JSON.stringify(result)}`);
    }
  }
  const s = summary(fields);
  console.log(`${label} medians: ${JSON.stringify(s)}`);
  for (const kind of Object.keys(runs).filter((k) => k !== 'redis')) {
    console.log(`${label} ${kind} / redis: ${fields.map((f) => `${f} ${(s[kind][f] / s.redis[f]).toFixed(2)}`).join(', ')}`);
  }
  if (journal) console.log(`${label} pgjournal / postgres: ${fields.map((f) => `${f} ${(s.pgjournal[f] / s.postgres[f]).toFixed(2)}`).join(', ')}`);
}

const FAILOVER_FIELDS = ['failoverMs', 'leaseWaitMs', 'pastExpiryMs', 'replayMs', 'afterExpiryMs'];
const DRAIN_FIELDS = ['eventsPerSecond', 'workerCpuUsPerEvent', 'serverCpuUsPerEvent'];
const LIVE_FIELDS = ['achievedPerSecond', 'p50Ms', 'p99Ms', 'workerCpuUsPerEvent', 'serverCpuUsPerEvent'];
try {
  console.log(`postgres ${pg.version}, ${durable ? 'durable (fsync on)' : 'fsync off'}; redis-server without persistence`);
  if (mode === 'drain') {
    const [events = 30_000, , r = 3] = nums;
    await rounds(r, 'drain', (kind) => drain(kind, events), DRAIN_FIELDS);
  } else if (mode === 'live') {
    const [rate = 2000, seconds = 5, r = 3] = nums;
    await rounds(r, 'live', (kind) => live(kind, rate, seconds), LIVE_FIELDS);
  } else if (mode === 'failover') {
    const [r = 3, ttl = 2000] = nums;
    await rounds(r, 'failover', (kind) => failover(kind, ttl), FAILOVER_FIELDS);
  } else {
    const [r = 3] = nums;
    await rounds(r, 'drain', (kind) => drain(kind, 30_000), DRAIN_FIELDS);
    await rounds(r, 'live', (kind) => live(kind, 2000, 5), LIVE_FIELDS);
    await rounds(r, 'failover', (kind) => failover(kind, 2000), FAILOVER_FIELDS);
  }
} finally {
  await redis.stop();
  await pg.stop();
}
