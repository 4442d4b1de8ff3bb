// A worker process of `node bench/postgres.mjs failover` (bench/postgres.mjs starts, kills and watches it).
// Args: backend (redis | postgres) target (a redis URL, or a postgres port) name partitions keys leaseTtl pollMs [copy] [call]
// (copy: another copy of the package to take Postgres' worker from, in schema velo_base: see --base there; call:
// `plain`, the handler calls `compute(e)` per event, or `journal`, through `ctx.run('svc', ...)`: see --journal there)
// The running-total function of bench/redis/child.mjs (one session per key, idleTimeout 0), with checkpoints off.
// Prints `ready`, and `owned <p,p,...> <epoch ms>` whenever its partitions change (checked every pollMs). A line
// `target <n>` on stdin: prints `reached <epoch ms>` once its worker has written n outputs (checked every pollMs).
// SIGTERM: closes the worker (hands off), prints `closed`, exits.
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import pg from 'pg';
import { streamFn as ownStreamFn } from 'velo-stream';
import { redisWorker } from 'velo-stream/redis';
import { postgresWorker as ownWorker } from 'velo-stream/postgres';

const [backend, target, name, partitions, keys, leaseTtl, pollMs, copy = '', call = ''] = process.argv.slice(2);
const streamFn = copy === '' ? ownStreamFn : (await import(`${copy}/index.mjs`)).streamFn;
const postgresWorker = copy === '' ? ownWorker : (await import(`${copy}/dist/postgres/index.js`)).postgresWorker;
const now = () => performance.timeOrigin + performance.now();
/** The call of `call`: a small object from the event, as a service's answer would be (its `n` makes the total). */
const compute = (e) => ({ n: e.n, half: e.n / 2 });
const handlers = {
  async *plain(events) {
    let total = 0;
    for await (const e of events) yield { n: e.n, total: (total += compute(e).n) };
  },
  async *journal(events, ctx) {
    let total = 0;
    for await (const e of events) yield { n: e.n, total: (total += (await ctx.run('svc', () => compute(e))).n) };
  },
};
const fn = streamFn(
  handlers[call] ??
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
  const pool = await traced(new pg.Pool({ host: '127.0.0.1', port: Number(target), user: 'velo', database: 'postgres', max: 20 }));
  pool.on('error', () => {});
  worker = postgresWorker(fn, { ...options, pool, schema: copy === '' ? 'velo_bench' : 'velo_base' });
  end = () => pool.end();
}
/** VELO_BENCH_TRACE=<dir>: every statement's start, duration and first words, to <dir>/<pid>.log (probes). */
async function traced(pool) {
  const dir = process.env.VELO_BENCH_TRACE;
  if (!dir) return pool;
  const lines = [];
  process.on('exit', () => writeFileSync(`${dir}/${process.pid}.log`, lines.join('\n')));
  setInterval(() => writeFileSync(`${dir}/${process.pid}.log`, lines.join('\n')), 200).unref();
  const wrap = (query, via) => (config, ...rest) => {
    const text = typeof config === 'string' ? config : config.text;
    const values = typeof config === 'string' ? rest[0] : config.values;
    const p = typeof values?.[1] === 'number' ? values[1] : '-';
    const t0 = now();
    const waiting = pool.waitingCount ?? 0;
    const done = (r) =>
      lines.push(`${t0.toFixed(1)} ${(now() - t0).toFixed(1)} ${via} p${p} w${waiting} n${r?.rowCount ?? '-'} ${text.replace(/\s+/g, ' ').slice(0, 70)}`);
    const q = query(config, ...rest);
    q?.then(done, () => done());
    return q;
  };
  pool.query = wrap(pool.query.bind(pool), 'pool');
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  setInterval(() => {
    lines.push(`${now().toFixed(1)} 0 loop max ${(delay.max / 1e6).toFixed(1)} mean ${(delay.mean / 1e6).toFixed(1)}`);
    delay.reset();
  }, 50).unref();
  const connect = pool.connect.bind(pool);
  // (pg's own pool.query connects with a callback: that goes through as it is.)
  pool.connect = async (...callback) => {
    if (callback.length > 0) return connect(...callback);
    const t0 = now();
    const c = await connect();
    lines.push(`${t0.toFixed(1)} ${(now() - t0).toFixed(1)} connect`);
    if (!c.__traced) {
      c.query = wrap(c.query.bind(c), 'tx');
      c.__traced = true;
    }
    return c;
  };
  return pool;
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
