// node bench/first-output.mjs [events] [keys] [rounds] [--redis | --postgres] [--pool <max>] [--base <copy>] [--local] [--profile] [--tx]
//
// How soon a worker started on a backlog makes its first output, on Redis and on Postgres side by side in one sitting
// (defaults: 20,000 events over 2,000 keys, 3 rounds, both backends, the order alternating per round). Private servers
// on 127.0.0.1 (__test__/helpers: a redis-server without persistence, a postgres with fsync off), the function's
// default partitions (64), the pool's default size (10; --pool to change it). Per run: the backlog is written with
// `sessionProducer(...).sendMany` (1,000 events per call, not timed), then `sessionWorker(...)` starts in this process;
// the handler keeps each key's running total, one output per event; on Postgres `effects` writes a ledger row per
// output in the commit's transaction (one INSERT each), as the cart app of the comparison with pg-boss does.
//
// Measured from just before `sessionWorker(...)` (the logs' calls wrapped: each reply as the worker sees it):
// - firstMs: the first commit with outputs answered (on Postgres its ledger rows are committed then); lastMs: every
//   event's output committed (counted once per sid and seq: a replay's commits carry outputs written before).
// - where the time before the first output went: allOwnedMs (the last lease granted), and for the partition that
//   committed first: ownedMs, loadedMs (what the last owner left read: snapshots, openings, journal), readSentMs and
//   readMs (its first entries asked for, in hand), commitSentMs, firstCommitOutputs; readBeforeFirst: entries all
//   partitions had read when the first commit was sent; commitsBefore: commits sent before the first was answered;
//   loopMaxMs: the event loop's longest delay up to the first output (perf_hooks' monitorEventLoopDelay); reads and
//   commits: the calls up to the last output; lost and errors: `stats()` then (leases lost, errors reported).
// - --local: the worker also delivers its outputs locally (`onOutput`, the default `maxUndelivered`, each output
//   taken in a microtask): deliveredMs, the first `onOutput` call, in each run and in the medians.
// - --tx (Postgres): the first transaction that wrote ledger rows: when it asked the pool for a connection, got it,
//   and each statement's round trip. FIRST_DEBUG=1: the first six commits answered (partition, outputs, sent-answered).
// - --profile: V8's CPU profile (node:inspector) from the start to the first output: self time by function.
// --base <copy>: also `redis-base` and `postgres-base`, the same runs on another copy of the package (its
// package.json, index.mjs, dist/ and native/, node_modules linked), the kinds in turn: ratios in one sitting.
// Order of magnitude only: one machine, the servers on it.
import { performance, monitorEventLoopDelay } from 'node:perf_hooks';
import { Session } from 'node:inspector/promises';
import { resolve } from 'node:path';
import * as velo from '../index.mjs';
import * as durable from 'velo-stream/durable';
import * as hooks from '#testing';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';
import { writeBacklog } from './redis/drain.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const valued = new Set(['--pool', '--base'].map((name) => args.indexOf(name) + 1).filter((i) => i > 0));
const poolMax = args.includes('--pool') ? Number(args[args.indexOf('--pool') + 1]) : 10;
const baseDir = args.includes('--base') ? resolve(args[args.indexOf('--base') + 1]) : null;
const nums = args.filter((a, i) => !a.startsWith('--') && !valued.has(i)).map(Number);
const [EVENTS = 20_000, KEYS = 2000, ROUNDS = 3] = nums;
const servers = flag('--redis') ? ['redis'] : flag('--postgres') ? ['postgres'] : ['redis', 'postgres'];
const kinds = baseDir === null ? servers : servers.flatMap((k) => [k, `${k}-base`]);
/** Each copy's package: this one's, and with --base the other's. */
const copies = { '': { velo, durable, hooks } };
if (baseDir !== null) {
  copies['-base'] = {
    velo: await import(`${baseDir}/index.mjs`),
    durable: await import(`${baseDir}/dist/backends/index.js`),
    hooks: await import(`${baseDir}/dist/test-hooks.js`),
  };
}
const copyOf = (kind) => copies[kind.endsWith('-base') ? '-base' : ''];
const serverOf = (kind) => kind.replace(/-base$/, '');
const profile = flag('--profile');
const local = flag('--local');
const SCHEMA = 'velo_first';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (ms) => (ms === undefined ? undefined : Math.round(ms));

/** The run being measured: its start, and the log's calls as the worker made them (wrapped below). */
let run = null;

/** Each call of the logs' `name` timed into the current run: when it was sent and answered, by partition. */
function wrap(Log, name, partitionOf, count) {
  const original = Log.prototype[name];
  Log.prototype[name] = async function (...a) {
    const r = run;
    const sent = performance.now();
    const result = await original.apply(this, a);
    if (r !== null) r.calls.push({ name, p: partitionOf(a), sent, answered: performance.now(), n: count(a, result) });
    if (r !== null && name === 'commit') r.committed(a[1].outputs);
    if (r !== null && name === 'read') r.read += result.entries.length;
    return result;
  };
  if (name === 'commit') {
    const timed = Log.prototype[name];
    Log.prototype[name] = function (...a) {
      if (run !== null && a[1].outputs.length > 0 && run.firstSent === undefined) {
        run.firstSent = performance.now();
        run.readBeforeFirst = run.read;
      }
      if (run !== null && a[1].outputs.length > 0) run.commitsSent++;
      return timed.apply(this, a);
    };
  }
}
for (const Log of Object.values(copies).flatMap((c) => [c.hooks.RedisLog, c.hooks.PgLog])) {
  const lease = (a) => a[0].partition;
  wrap(
    Log,
    'acquire',
    (a) => a[0],
    () => 0,
  );
  wrap(Log, 'snapshots', lease, (_, r) => r.length);
  wrap(Log, 'openings', lease, (_, r) => r.size);
  wrap(Log, 'journal', lease, (_, r) => r.length);
  wrap(Log, 'read', lease, (_, r) => r.entries.length);
  wrap(Log, 'commit', lease, (a) => a[1].outputs.length);
}

const redis = servers.includes('redis') ? await startRedis() : null;
const pg = servers.includes('postgres') ? await startPostgres() : null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => Promise.allSettled([redis?.stop(), pg?.stop()]).then(() => process.exit(130)));
}
const client = redis === null ? null : await redis.client();
const pool = pg === null ? null : tracedPool(pg.pool({ max: poolMax }));

/**
 * The pool with each checkout of the current run traced (asked, granted, each statement's start and end): the first
 * transaction that wrote ledger rows shows where the first commit's time went (`firstTx`).
 */
function tracedPool(inner) {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'connect')
        return async () => {
          const r = run;
          const tx = { asked: performance.now(), granted: 0, statements: [] };
          const c = await target.connect();
          tx.granted = performance.now();
          if (r === null) return c;
          const query = c.query.bind(c);
          const release = c.release.bind(c);
          return new Proxy(c, {
            get(client, key) {
              if (key === 'query')
                return async (...a) => {
                  const text = typeof a[0] === 'string' ? a[0] : a[0].text;
                  const st = { what: text.trim().split(/\s+/).slice(0, 3).join(' '), sent: performance.now(), done: 0 };
                  tx.statements.push(st);
                  try {
                    return await query(...a);
                  } finally {
                    st.done = performance.now();
                  }
                };
              if (key === 'release')
                return (...a) => {
                  tx.released = performance.now();
                  if (r.firstTx === undefined && tx.statements.some((st) => st.what.startsWith('INSERT INTO bench_ledger')))
                    r.firstTx = tx;
                  return release(...a);
                };
              const value = Reflect.get(client, key);
              return typeof value === 'function' ? value.bind(client) : value;
            },
          });
        };
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
if (pool !== null) await pool.query(`CREATE SCHEMA IF NOT EXISTS bench_ledger`);

/** Each key's running total, one output per event, made by a copy's package. */
const totalsOf = (copy) =>
  copy.velo.streamFn(
    async function* totals(events) {
      let total = 0;
      for await (const e of events) yield { total: (total += e.n) };
    },
    { idleTimeout: 60_000, maxConcurrent: KEYS * 2 },
  );

let fresh = 0;

async function once(kind) {
  const name = `first${++fresh}`;
  const server = serverOf(kind);
  const { durable: copy } = copyOf(kind);
  const schema = kind.endsWith('-base') ? `${SCHEMA}_base` : SCHEMA;
  const shared = server === 'redis' ? { client, name } : { client: pool, schema, name };
  await writeBacklog(copy.sessionProducer(shared), EVENTS, KEYS);
  let effects;
  if (server === 'postgres') {
    const table = `bench_ledger.${name}`;
    await pool.query(`CREATE TABLE ${table} (key text, total bigint, sid text, seq int, UNIQUE (sid, seq))`);
    effects = async (tx, outputs) => {
      for (const o of outputs) {
        if ('error' in o) continue;
        await tx.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4)`, [o.key, o.value.total, o.sid, o.seq]);
      }
    };
  }
  let outputs = 0;
  const reported = [];
  let resolveFirst;
  let resolveLast;
  const first = new Promise((resolve) => (resolveFirst = resolve));
  const last = new Promise((resolve) => (resolveLast = resolve));
  const loop = monitorEventLoopDelay({ resolution: 5 });
  const session = profile ? new Session() : null;
  if (session !== null) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.start');
  }
  loop.enable();
  const r = {
    start: performance.now(),
    calls: [],
    read: 0,
    commitsSent: 0,
    firstSent: undefined,
    readBeforeFirst: undefined,
    firstDelivered: undefined,
    /** Outputs committed, each once (a replay's commit carries outputs written before: the log skips them). */
    written: new Set(),
    committed(list) {
      if (list.length === 0) return;
      if (outputs === 0) resolveFirst(performance.now());
      for (const o of list) this.written.add(`${o.sid} ${o.seq}`);
      outputs = this.written.size;
      if (outputs >= EVENTS) resolveLast(performance.now());
    },
  };
  run = r;
  const worker = copy.sessionWorker(totalsOf(copyOf(kind)), {
    ...shared,
    ...(effects === undefined ? {} : { effects }),
    ...(local ? { onOutput: async () => void (r.firstDelivered ??= performance.now()) } : {}),
    onError: (error) => reported.push(error),
  });
  const firstAt = await first;
  loop.disable();
  const loopMaxMs = loop.max / 1e6;
  const prof = session === null ? null : (await session.post('Profiler.stop')).profile;
  session?.disconnect();
  const commitsBefore = r.commitsSent;
  const lastAt = await last;
  run = null;
  const { lost, errors } = worker.stats();
  await worker.close();
  if (server === 'postgres') {
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM bench_ledger.${name}`);
    if (rows[0].n !== EVENTS) throw new Error(`${kind}: ${rows[0].n} ledger rows, not ${EVENTS}`);
    await pool.query(`DROP TABLE bench_ledger.${name}`);
  }
  const at = (t) => t - r.start;
  const acquired = r.calls.filter((c) => c.name === 'acquire');
  const firstCommit = r.calls.find((c) => c.name === 'commit' && c.n > 0);
  const p = firstCommit.p;
  const ofP = (name) => r.calls.find((c) => c.p === p && c.name === name);
  const loads = ['snapshots', 'openings', 'journal'].map(ofP).filter(Boolean);
  const firstRead = r.calls.find((c) => c.p === p && c.name === 'read' && c.n > 0);
  const result = {
    kind,
    firstMs: round(at(firstAt)),
    ...(local ? { deliveredMs: round(at(r.firstDelivered)) } : {}),
    lastMs: round(at(lastAt)),
    allOwnedMs: round(Math.max(...acquired.map((c) => at(c.answered)))),
    ownedMs: round(at(ofP('acquire').answered)),
    loadedMs: round(Math.max(...loads.map((c) => at(c.answered)))),
    readSentMs: round(at(firstRead.sent)),
    readMs: round(at(firstRead.answered)),
    commitSentMs: round(at(firstCommit.sent)),
    firstCommitOutputs: firstCommit.n,
    readBeforeFirst: r.readBeforeFirst,
    commitsBefore,
    loopMaxMs: round(loopMaxMs),
    reads: r.calls.filter((c) => c.name === 'read').length,
    commits: r.calls.filter((c) => c.name === 'commit').length,

    lost,
    errors,
  };
  console.log(JSON.stringify(result));
  for (const error of reported.slice(0, 3)) console.log(`  reported: ${error.code ?? ''} ${error.message}`);
  if (process.env.FIRST_DEBUG)
    console.log(
      r.calls
        .filter((c) => c.name === 'commit')
        .slice(0, 6)
        .map((c) => `p${c.p} n${c.n} ${round(at(c.sent))}-${round(at(c.answered))}`)
        .join(' | '),
    );
  if (r.firstTx !== undefined && flag('--tx')) {
    const tx = r.firstTx;
    const gaps = tx.statements.map((st, i) => round(st.sent - (i === 0 ? tx.granted : tx.statements[i - 1].done)));
    const rtts = tx.statements.map((st) => round(st.done - st.sent));
    console.log(
      `  first ledger transaction: asked ${round(at(tx.asked))} ms, granted ${round(at(tx.granted))}, released ${round(at(tx.released))}; ${tx.statements.length} statements, round trips ${rtts.join(' ')}; gaps ${gaps.join(' ')}`,
    );
  }
  if (prof !== null) printProfile(prof);
  return result;
}

/** The 25 functions with the most self time in `prof`, ms. */
function printProfile(prof) {
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = prof.timeDeltas;
  prof.samples.forEach((id, i) => {
    const n = nodes.get(id);
    const where = n.callFrame.url ? `${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}` : '';
    const key = `${n.callFrame.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + (deltas[i] ?? 0) / 1000);
  });
  const total = [...self.values()].reduce((x, y) => x + y, 0);
  console.log(`  profile to the first output: ${total.toFixed(0)} ms sampled`);
  for (const [key, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25))
    console.log(`  ${ms.toFixed(1).padStart(8)} ms  ${key}`);
}

const all = Object.fromEntries(kinds.map((k) => [k, []]));
try {
  for (let i = 0; i < ROUNDS; i++) {
    const order = i % 2 === 0 ? kinds : [...kinds].reverse();
    for (const kind of order) all[kind].push(await once(kind));
  }
} finally {
  await pool?.end();
  await Promise.allSettled([redis?.stop(), pg?.stop()]);
}
for (const kind of kinds) {
  const rs = all[kind];
  const m = (key) => median(rs.map((x) => x[key]));
  console.log(
    `${kind}: ${EVENTS} events over ${KEYS} keys, ${rs.length} runs: first output median ${m('firstMs')} ms (${rs.map((x) => x.firstMs).join(', ')}), last ${m('lastMs')} ms (${rs.map((x) => x.lastMs).join(', ')})` +
      (local ? `, first onOutput ${m('deliveredMs')} ms (${rs.map((x) => x.deliveredMs).join(', ')})` : ''),
  );
}
