// node bench/postgres-vs-pgboss.mjs [rounds]                 drain, live (send), live (sendMany), 3 rounds
// node bench/postgres-vs-pgboss.mjs [rounds] --only drain,send,batch --events 20000 --keys 2000 --rate 1000
//      --seconds 10 --live-keys 1000 --partitions 64 --batch 100 --systems velo,pgboss --durable --trace --base <copy>
//      --warmup 2                                              live runs: 2 s of the same load first, not measured
// npm run bench:pgboss -- 1 --seconds 5                       a short sitting
//
// velo-stream's tier on Postgres beside pg-boss, on the same app: a shopping cart per key (events add or remove
// items; each event's output is the cart's line count and total) and a ledger row per output written in the user's
// own table (`ledger`) in the same transaction as the output's commit (velo) or the job's completion (pg-boss).
// Each system has a private postgres of its own (__test__/helpers, fsync off unless --durable, and
// track_commit_timestamp on), started once; every run gets a fresh database on it, dropped after. Rounds alternate
// the order of the systems.
// - velo: `sessionWorker` with default settings (64 partitions unless --partitions, the sessions' default
//   idleTimeout) and `effects` writing the ledger rows (one INSERT of an unnest per commit); the cart is the
//   session's state (durable by replay: no checkpoint). Producer `sessionProducer` on a pool of its own.
// - pg-boss (12.x): one instance working the queue with `work(name, { batchSize, transactional: true,
//   burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 })`, LISTEN/NOTIFY on
//   (`useListenNotify`, the queue's `notify`), localConcurrency 1 (so each cart's events run in order). The handler
//   reads the batch's carts (`SELECT ... FOR UPDATE`), applies the events in order, and upserts the carts and inserts
//   the ledger rows in one statement, through the transaction pg-boss hands it, in which pg-boss then completes the
//   jobs. The producer is a second pg-boss instance (`send`, `insert`). Both pools: max 10 (pg's default).
// Figures:
// - drain: `events` events (default 20,000) over `keys` keys (2,000), written first (not timed); then the worker
//   starts: events/s from its start to the last ledger row's commit; the first ledger row's commit after the start
//   (firstOutputMs); CPU per event of this process (the worker) and of the server (postmaster and backends, /proc).
// - send / batch (live): `rate` events/s (1,000) over `live-keys` keys (1,000) for `seconds` (10): `send` per event
//   (pg-boss `send`), or one `sendMany` (pg-boss `insert`) of the events due every 5 ms. Send latency p50/p99 (the
//   call's), and send-to-ledger latency p50/p99: from just before the send (the event carries that time) to the
//   ledger row's commit timestamp (pg_xact_commit_timestamp of the row, the server's clock: same machine); CPU per
//   event of this process (worker and producer) and of the server; the event loop's delay p99; and the
//   send-to-ledger p99 of the events sent from 500 ms on (p99After500Ms: without the first half second, where the
//   processes' code is not yet compiled and each connection's server process runs its statements for the first time).
// - velo only: statements and transactions (BEGINs) per event on the worker's pool. --trace: where each live event's
//   time goes (the send, the NOTIFY, the wait, the read, the session, the commit and effects), printed per run.
// --base <copy>: a third system, `velobase`: velo-stream as another copy of the package has it (package.json, index.mjs,
// dist/, native/, node_modules linked), for a change measured before and after in one sitting.
// Prints each run, then the medians per system and velo / pg-boss.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import pg from 'pg';
// pg-boss lives in bench/pgboss (it declares Node >= 22.12: out of the package's own lock); `npm run bench:pgboss`
// installs it there.
let PgBoss;
try {
  ({ PgBoss } = await import('./pgboss/index.mjs'));
} catch (error) {
  console.error(
    `pg-boss is not installed in bench/pgboss: run \`npm install --prefix bench/pgboss\` (or npm run bench:pgboss). ${error.message}`,
  );
  process.exit(2);
}
import { streamFn } from '../index.mjs';
import { sessionProducer, sessionWorker } from 'velo-stream/durable';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';
import { cpuOf, serverCpu } from './postgres/cpu.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(`--${name}`);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at === -1 ? fallback : args[at + 1];
};
const valued = new Set([
  'only',
  'events',
  'keys',
  'rate',
  'seconds',
  'live-keys',
  'partitions',
  'batch',
  'systems',
  'base',
  'velo-pool',
  'warmup',
]);
const plain = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && valued.has(args[i - 1].slice(2))));
const ROUNDS = Number(plain[0] ?? 3);
const ONLY = option('only', 'drain,send,batch').split(',');
const EVENTS = Number(option('events', 20_000));
const KEYS = Number(option('keys', 2000));
const RATE = Number(option('rate', 1000));
const SECONDS = Number(option('seconds', 10));
const LIVE_KEYS = Number(option('live-keys', 1000));
const PARTITIONS = option('partitions', undefined) === undefined ? undefined : Number(option('partitions'));
const BATCH = Number(option('batch', 100));
const BASE = option('base', null);
const SYSTEMS = option('systems', BASE === null ? 'velo,pgboss' : 'velo,velobase,pgboss').split(',');
const DURABLE = flag('durable');
// (--velo-pool: the worker pool's max of `velo` only, default 10; `velobase` keeps 10.)
const VELO_POOL = Number(option('velo-pool', 10));
const TRACE = flag('trace');
// (--warmup <s>: live runs send the same load for s seconds first, not measured.)
const WARMUP = Number(option('warmup', 0));
const TICK_MS = 5;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const epochNow = () => performance.timeOrigin + performance.now();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const round2 = (x) => +x.toFixed(2);

// ---- the app ----------------------------------------------------------------------------------------------------

/** Event n of a cart: mostly adds, every fifth a removal. */
function cartEvent(n, key, t) {
  return { n, key, t, op: n % 5 === 4 ? 'remove' : 'add', sku: `s${n % 7}`, qty: 1 + (n % 3), price: 100 + (n % 50) };
}

/** Applies an event to a cart ({ items: { sku: [qty, price] } }); the output: its line count and total. */
function applyCart(cart, e) {
  if (e.op === 'add') {
    const line = cart.items[e.sku] ?? [0, e.price];
    line[0] += e.qty;
    cart.items[e.sku] = line;
  } else delete cart.items[e.sku];
  let total = 0;
  for (const [qty, price] of Object.values(cart.items)) total += qty * price;
  return { n: e.n, t: e.t, lines: Object.keys(cart.items).length, total };
}

const LEDGER = `CREATE TABLE ledger (n integer PRIMARY KEY, key text NOT NULL, sent_ms double precision NOT NULL,
  lines integer NOT NULL, total bigint NOT NULL)`;
const CARTS = 'CREATE TABLE carts (key text PRIMARY KEY, cart jsonb NOT NULL)';
const LEDGER_INSERT = `INSERT INTO ledger (n, key, sent_ms, lines, total)
  SELECT * FROM unnest($1::integer[], $2::text[], $3::double precision[], $4::integer[], $5::bigint[])`;
const ledgerValues = (rows) => [
  rows.map((r) => r.n),
  rows.map((r) => r.key),
  rows.map((r) => r.t),
  rows.map((r) => r.lines),
  rows.map((r) => r.total),
];

// ---- servers and databases --------------------------------------------------------------------------------------

const servers = {};
for (const system of SYSTEMS)
  servers[system] = await startPostgres({ durable: DURABLE, settings: { track_commit_timestamp: 'on' } });
const stopAll = () => Promise.allSettled(Object.values(servers).map((s) => s.stop()));
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => stopAll().then(() => process.exit(130)));

let fresh = 0;
/** A fresh database on `system`'s server with the user's tables: its config, and drop() (after its pools ended). */
async function database(system) {
  const server = servers[system];
  const name = `run${++fresh}`;
  const admin = new pg.Client(server.config);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const config = { ...server.config, database: name };
  const setup = new pg.Client(config);
  await setup.connect();
  await setup.query(LEDGER);
  await setup.query(CARTS);
  await setup.end();
  return {
    config,
    pid: server.pid,
    async drop() {
      const c = new pg.Client(server.config);
      await c.connect();
      await c.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The ledger's rows: n, the send time and the commit time (epoch ms, the server's clock), by commit time. */
async function ledgerRows(config) {
  const c = new pg.Client(config);
  await c.connect();
  try {
    const { rows } = await c.query(
      `SELECT n, sent_ms, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 AS committed FROM ledger ORDER BY 3`,
    );
    return rows.map((r) => ({ n: r.n, sent: Number(r.sent_ms), committed: Number(r.committed) }));
  } finally {
    await c.end();
  }
}

async function until(check, what, timeout = 300_000, ms = 5) {
  const deadline = performance.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(ms);
  }
}

// ---- velo-stream ------------------------------------------------------------------------------------------------

/**
 * The worker's pool, wrapped: statements and transactions (BEGIN) counted; with --trace, every statement (start,
 * end, kind, partition, the wait for its connection) and every notification the pool's LISTEN connection receives.
 */
function tracedPool(inner) {
  const counted = { statements: 0, transactions: 0 };
  const log = { statements: [], notifications: [], holds: [] };
  const KINDS = [
    ['begin', /^BEGIN/],
    ['commit', /^COMMIT/],
    ['commit8', /commit_[89]\(/],
    ['fence', /fence_4\(/],
    ['read', /^WITH f AS \(SELECT l\.token = \$3 AND l\.until_ms >= .*FOR UPDATE OF c/s],
    ['read', /^WITH w AS \(SELECT \* FROM unnest\(\$2::integer\[\], \$3::text\[\], \$4::integer\[\]\)/],
    ['wait', /^SELECT w\.p FROM unnest/],
    ['effects', /^INSERT INTO ledger/],
    ['renew', /^UPDATE \S+\.leases SET until_ms/],
    ['lag', /^SELECT \(SELECT count\(\*\)/],
    ['trim', /^SELECT coalesce\(\(SELECT ms FROM|^DELETE FROM \S+\.(ends|entries)/],
    ['heartbeat', /^WITH c AS \(SELECT now, CASE WHEN held/],
  ];
  const kindOf = (text) => KINDS.find(([, re]) => re.test(text))?.[0] ?? 'other';
  const record = (config, values, t0, t1, connectMs, via) => {
    const text = typeof config === 'string' ? config : (config?.text ?? '');
    counted.statements++;
    // (A statement that carries its transaction's BEGIN, in its round trip: velo-stream's on node-postgres.)
    if (/^BEGIN/.test(text) || config?.beginsTransaction === true) counted.transactions++;
    if (!TRACE) return;
    const vs = typeof config === 'string' ? values : config?.values;
    const kind = kindOf(text);
    // (Commits of several partitions in one statement: 28 arguments each, the partition second.)
    const p =
      kind === 'commit8' && vs?.length > 28
        ? vs.filter((_, i) => i % 28 === 1)
        : typeof vs?.[1] === 'number'
          ? vs[1]
          : Array.isArray(vs?.[1])
            ? vs[1]
            : null;
    log.statements.push({
      t0,
      t1,
      kind,
      p,
      connectMs,
      via,
      text: kind === 'other' ? text.replace(/\s+/g, ' ').slice(0, 60) : undefined,
    });
    return kind;
  };
  const onClient = (c) => {
    if (c.__traced) return c;
    c.__traced = true;
    const query = c.query.bind(c);
    c.query = (config, values, ...rest) => {
      const t0 = epochNow();
      // (A query object of node-postgres' own, velo-stream's first statement with its BEGIN: told by its callback.)
      if (typeof config?.submit === 'function' && typeof config.callback === 'function') {
        const callback = config.callback;
        config.callback = (error, results) => {
          const kind = record(config, values, t0, epochNow(), 0, 'tx');
          c.__kinds?.push(kind);
          callback(error, results);
        };
        return query(config, values, ...rest);
      }
      const q = query(config, values, ...rest);
      if (q && typeof q.then === 'function') {
        const done = () => {
          const kind = record(config, values, t0, epochNow(), 0, 'tx');
          c.__kinds?.push(kind);
        };
        q.then(done, done);
      }
      return q;
    };
    if (TRACE) {
      const release = c.release.bind(c);
      c.release = (...a) => {
        if (c.__since !== undefined) log.holds.push({ t0: c.__since, t1: epochNow(), what: c.__kinds.filter(Boolean).join('+') });
        c.__since = undefined;
        return release(...a);
      };
    }
    if (TRACE) c.on('notification', (m) => log.notifications.push({ t: epochNow(), p: Number(String(m.payload).split(' ')[0]) }));
    return c;
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'counted') return counted;
      if (prop === 'log') return log;
      if (prop === 'query')
        return (config, values, ...rest) => {
          if (typeof values === 'function' || rest.length > 0) return target.query(config, values, ...rest);
          // (As pg.Pool's query does: a connection, the statement, the connection back; its wait timed.)
          const t0 = epochNow();
          return target.connect().then(async (client) => {
            const t1 = epochNow();
            try {
              const result = await client.query(config, values);
              client.release();
              record(config, values, t1, epochNow(), t1 - t0, 'pool');
              return result;
            } catch (error) {
              client.release(error);
              throw error;
            }
          });
        };
      if (prop === 'connect')
        return async (...callback) => {
          if (callback.length > 0) return target.connect(...callback);
          const t0 = epochNow();
          const c = onClient(await target.connect());
          if (TRACE) {
            log.statements.push({ t0, t1: epochNow(), kind: 'connect', p: null, connectMs: epochNow() - t0, via: 'tx' });
            c.__since = epochNow();
            c.__kinds = [];
          }
          return c;
        };
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

// --base <dir>: a third system, `velobase`, velo-stream as another copy of the package has it (its package.json,
// index.mjs, dist/ and native/, node_modules linked): this copy against that one in one sitting.
const copies = { velo: { streamFn, sessionProducer, sessionWorker } };
if (BASE !== null) {
  const durable = await import(`${BASE}/dist/backends/index.js`);
  copies.velobase = {
    streamFn: (await import(`${BASE}/index.mjs`)).streamFn,
    sessionProducer: durable.sessionProducer,
    sessionWorker: durable.sessionWorker,
  };
}

function veloSystem(db, copy = 'velo') {
  const { streamFn, sessionProducer, sessionWorker } = copies[copy];
  const shared = { schema: 'velo', name: 'carts', ...(PARTITIONS === undefined ? {} : { partitions: PARTITIONS }) };
  const producerPool = new pg.Pool({ ...db.config, max: 10 });
  const workerPool = tracedPool(new pg.Pool({ ...db.config, max: copy === 'velo' ? VELO_POOL : 10 }));
  producerPool.on('error', () => {});
  workerPool.on('error', () => {});
  const producer = sessionProducer({ ...shared, client: producerPool });
  const stamps = { handled: new Map(), effects: new Map() };
  const cart = streamFn(async function* cart(events) {
    const state = { items: {} };
    for await (const e of events) {
      if (TRACE) stamps.handled.set(e.n, epochNow());
      yield applyCart(state, e);
    }
  });
  let worker = null;
  const errors = [];
  return {
    name: copy,
    pool: workerPool,
    stamps,
    partitionOf: (key) => producer.partitionOf(key),
    send: (key, e) => producer.send(key, e),
    sendMany: (pairs) => producer.sendMany(pairs),
    start() {
      worker = sessionWorker(cart, {
        ...shared,
        client: workerPool,
        onError: (error) => errors.push(error),
        effects: async (tx, outputs) => {
          const rows = outputs.filter((o) => 'value' in o).map((o) => ({ ...o.value, key: o.key }));
          if (TRACE) {
            const t = epochNow();
            for (const r of rows) stamps.effects.set(r.n, t);
          }
          if (rows.length > 0) await tx.query(LEDGER_INSERT, ledgerValues(rows));
        },
      });
    },
    ready: async () => {
      const partitions = PARTITIONS ?? 64;
      await until(() => worker.stats().owned.length === partitions, 'the worker owning every partition', 60_000, 20);
      await sleep(1000);
    },
    done: (n) => worker.stats().outputs >= n,
    errors,
    async close() {
      await worker?.close();
      await producerPool.end();
      await workerPool.end();
    },
  };
}

// ---- pg-boss ----------------------------------------------------------------------------------------------------

async function pgbossSystem(db) {
  const QUEUE = 'carts';
  const base = { ...db.config, schema: 'pgboss', max: 10 };
  const errors = [];
  const sender = new PgBoss({ ...base, supervise: false, schedule: false });
  sender.on('error', (error) => errors.push(error));
  await sender.start();
  await sender.createQueue(QUEUE, { notify: true });
  let boss = null;
  let handled = 0;
  return {
    name: 'pgboss',
    send: (key, e) => sender.send(QUEUE, e),
    sendMany: (pairs) =>
      sender.insert(
        QUEUE,
        pairs.map(([, e]) => ({ data: e })),
      ),
    async start() {
      boss = new PgBoss({ ...base, useListenNotify: true });
      boss.on('error', (error) => errors.push(error));
      await boss.start();
      await boss.work(
        QUEUE,
        {
          batchSize: BATCH,
          transactional: true,
          burstWhenBatchFull: true,
          pollingIntervalSeconds: 0.5,
          notifyPollingIntervalSeconds: 0.5,
        },
        async (jobs, tx) => {
          const keys = [...new Set(jobs.map((j) => j.data.key))];
          const { rows } = await tx.executeSql('SELECT key, cart FROM carts WHERE key = ANY($1::text[]) FOR UPDATE', [keys]);
          const carts = new Map(rows.map((r) => [r.key, r.cart]));
          const out = [];
          for (const { data: e } of jobs) {
            let c = carts.get(e.key);
            if (c === undefined) carts.set(e.key, (c = { items: {} }));
            out.push({ ...applyCart(c, e), key: e.key });
          }
          await tx.executeSql(
            `WITH c AS (INSERT INTO carts (key, cart) SELECT * FROM unnest($6::text[], $7::jsonb[])
                          ON CONFLICT (key) DO UPDATE SET cart = EXCLUDED.cart)
             ${LEDGER_INSERT}`,
            [...ledgerValues(out), [...carts.keys()], [...carts.values()].map((c) => JSON.stringify(c))],
          );
          handled += jobs.length;
        },
      );
    },
    ready: () => sleep(1000),
    // (The handler's count runs ahead of its commit by a little: the ledger is then checked.)
    done: (n) => handled >= n,
    errors,
    async close() {
      await boss?.stop({ graceful: true, timeout: 10_000 });
      await sender.stop({ graceful: false, timeout: 1000 });
    },
  };
}

const make = { velo: veloSystem, velobase: (db) => veloSystem(db, 'velobase'), pgboss: pgbossSystem };

// ---- runs -------------------------------------------------------------------------------------------------------

/** Waits for the app's count `n`, then for the ledger to hold `rows` rows. */
async function finished(system, db, n, rows = n) {
  await until(() => system.done(n), `${system.name}: ${n} outputs`);
  const c = new pg.Client(db.config);
  await c.connect();
  try {
    await until(async () => (await c.query('SELECT count(*)::int AS n FROM ledger')).rows[0].n >= rows, 'the ledger', 60_000, 20);
  } finally {
    await c.end();
  }
}

function counts(system, before, events) {
  if (system.pool === undefined) return {};
  const { statements, transactions } = system.pool.counted;
  return {
    statementsPerEvent: round2((statements - before.statements) / events),
    transactionsPerEvent: +((transactions - before.transactions) / events).toFixed(3),
  };
}

async function drain(kind) {
  const db = await database(kind);
  const system = await make[kind](db);
  try {
    const pairs = [];
    for (let n = 0; n < EVENTS; n++) pairs.push([`c${n % KEYS}`, cartEvent(n, `c${n % KEYS}`, 0)]);
    for (let i = 0; i < pairs.length; i += 1000) await system.sendMany(pairs.slice(i, i + 1000));
    await sleep(300);
    const before = { cpu: process.cpuUsage(), server: serverCpu(db.pid), ...(system.pool?.counted ?? {}) };
    const started = epochNow();
    await system.start();
    await finished(system, db, EVENTS);
    const used = process.cpuUsage(before.cpu);
    const serverMs = serverCpu(db.pid) - before.server;
    const rows = await ledgerRows(db.config);
    if (rows.length !== EVENTS) throw new Error(`${kind}: ${rows.length} ledger rows, not ${EVENTS}`);
    if (TRACE && system.pool !== undefined) startup(system, started, rows[0].committed);
    if (system.errors.length > 0)
      console.log(
        `  ${kind} errors: ${system.errors
          .map((e) => e.message)
          .slice(0, 3)
          .join('; ')}`,
      );
    return {
      eventsPerSecond: Math.round(EVENTS / ((rows.at(-1).committed - started) / 1000)),
      firstOutputMs: Math.round(rows[0].committed - started),
      workerCpuUsPerEvent: +((used.user + used.system) / EVENTS).toFixed(1),
      serverCpuUsPerEvent: +((serverMs * 1000) / EVENTS).toFixed(1),
      ...counts(system, before, EVENTS),
    };
  } finally {
    await system.close();
    await db.drop();
  }
}

/** The send-to-ledger latencies, sorted, of the events sent `ms` or more after the first one. */
function after(rows, ms) {
  const first = rows.reduce((t, r) => Math.min(t, r.sent), Infinity);
  return rows
    .filter((r) => r.sent >= first + ms)
    .map((r) => r.committed - r.sent)
    .sort((a, b) => a - b);
}

async function live(kind, many) {
  const db = await database(kind);
  const system = await make[kind](db);
  try {
    await system.start();
    await system.ready();
    const total = RATE * SECONDS;
    const sendMs = [];
    const sentAt = new Map();
    // `count` events from number `from` at RATE a second, by send or by a sendMany per tick; resolves once all sent.
    const drive = async (from, count, timed) => {
      const sends = [];
      const t0 = performance.now();
      let n = from;
      while (n < from + count) {
        const due = from + Math.min(count, Math.floor(((performance.now() - t0) / 1000) * RATE) + 1);
        const pairs = [];
        for (; n < due; n++) {
          const key = `c${n % LIVE_KEYS}`;
          pairs.push([key, cartEvent(n, key, epochNow())]);
        }
        const took = (at) => () => timed && sendMs.push(performance.now() - at);
        if (many && pairs.length > 0) sends.push(system.sendMany(pairs).then(took(performance.now())));
        else for (const [key, e] of pairs) sends.push(system.send(key, e).then(took(performance.now())));
        if (TRACE && timed) for (const [key, e] of pairs) sentAt.set(e.n, { key, t: e.t });
        await sleep(TICK_MS);
      }
      await Promise.all(sends);
    };
    // --warmup: the same load for a few seconds first, its ledger rows then removed: the figures of a warm system.
    const warm = RATE * WARMUP;
    if (warm > 0) {
      await drive(0, warm, false);
      await finished(system, db, warm);
      const c = new pg.Client(db.config);
      await c.connect();
      await c.query('DELETE FROM ledger');
      await c.end();
    }
    const loop = monitorEventLoopDelay({ resolution: 1 });
    const before = { cpu: process.cpuUsage(), server: serverCpu(db.pid), ...(system.pool?.counted ?? {}) };
    loop.enable();
    const t0 = performance.now();
    await drive(warm, total, true);
    await finished(system, db, warm + total, total);
    loop.disable();
    const ms = performance.now() - t0;
    const used = process.cpuUsage(before.cpu);
    const serverMs = serverCpu(db.pid) - before.server;
    const rows = await ledgerRows(db.config);
    if (rows.length !== total) throw new Error(`${kind}: ${rows.length} ledger rows, not ${total}`);
    const latencies = rows.map((r) => r.committed - r.sent).sort((a, b) => a - b);
    sendMs.sort((a, b) => a - b);
    if (system.errors.length > 0)
      console.log(
        `  ${kind} errors: ${system.errors
          .map((e) => e.message)
          .slice(0, 3)
          .join('; ')}`,
      );
    const result = {
      achievedPerSecond: Math.round((total / ms) * 1000),
      p50Ms: round2(quantile(latencies, 0.5)),
      p99Ms: round2(quantile(latencies, 0.99)),
      p99After500Ms: round2(quantile(after(rows, 500), 0.99)),
      sendP50Ms: round2(quantile(sendMs, 0.5)),
      sendP99Ms: round2(quantile(sendMs, 0.99)),
      cpuUsPerEvent: +((used.user + used.system) / total).toFixed(1),
      serverCpuUsPerEvent: +((serverMs * 1000) / total).toFixed(1),
      loopP99Ms: round2(loop.percentile(99) / 1e6),
      ...counts(system, before, total),
    };
    if (TRACE && system.pool !== undefined) attribute(system, rows, sentAt);
    return result;
  } finally {
    await system.close();
    await db.drop();
  }
}

// ---- --trace: where a live event's time goes (velo) --------------------------------------------------------------

/** The first item of a list sorted by `at` with `at(x) >= t` (binary search). */
function firstFrom(list, t, at) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at(list[mid]) < t) lo = mid + 1;
    else hi = mid;
  }
  return list[lo];
}

function attribute(system, rows, sentAt) {
  const { statements, notifications } = system.pool.log;
  const byP = new Map();
  const put = (p, x, what) => {
    if (!byP.has(p)) byP.set(p, { notify: [], read: [], commit8: [] });
    byP.get(p)[what].push(x);
  };
  for (const x of notifications) put(x.p, x, 'notify');
  for (const s of statements) {
    if (s.kind !== 'read' && s.kind !== 'commit8') continue;
    for (const p of Array.isArray(s.p) ? s.p : [s.p]) if (typeof p === 'number') put(p, s, s.kind);
  }
  for (const lists of byP.values()) {
    lists.notify.sort((a, b) => a.t - b.t);
    lists.read.sort((a, b) => a.t0 - b.t0);
    lists.commit8.sort((a, b) => a.t0 - b.t0);
  }
  const waits = statements.filter((s) => s.kind === 'wait').sort((a, b) => a.t0 - b.t0);
  const parts = {
    'send start to NOTIFY heard': [],
    'NOTIFY to read start': [],
    '  of it: wait statement after NOTIFY': [],
    'read statement': [],
    'read end to handler': [],
    'handler to commit_8 start': [],
    'commit_8 statement': [],
    'commit_8 end to effects': [],
    'effects to commit timestamp': [],
    'total (send start to commit)': [],
  };
  const total = 'total (send start to commit)';
  /** Each matched event's parts, for the tail's. */
  const each = [];
  for (const r of rows) {
    const sent = sentAt.get(r.n);
    if (sent === undefined) continue;
    const p = system.partitionOf(sent.key);
    const lists = byP.get(p);
    if (lists === undefined) continue;
    const heard = firstFrom(lists.notify, sent.t, (x) => x.t);
    const read = firstFrom(lists.read, heard?.t ?? sent.t, (x) => x.t0);
    const handled = system.stamps.handled.get(r.n);
    const effects = system.stamps.effects.get(r.n);
    const commit8 = handled === undefined ? undefined : firstFrom(lists.commit8, handled, (x) => x.t0);
    if (heard === undefined || read === undefined || handled === undefined || effects === undefined || commit8 === undefined)
      continue;
    const wait = firstFrom(waits, heard.t, (x) => x.t0);
    parts['send start to NOTIFY heard'].push(heard.t - sent.t);
    parts['NOTIFY to read start'].push(read.t0 - heard.t);
    if (wait !== undefined && wait.t0 < read.t0) parts['  of it: wait statement after NOTIFY'].push(wait.t1 - wait.t0);
    parts['read statement'].push(read.t1 - read.t0);
    parts['read end to handler'].push(handled - read.t1);
    parts['handler to commit_8 start'].push(commit8.t0 - handled);
    parts['commit_8 statement'].push(commit8.t1 - commit8.t0);
    parts['commit_8 end to effects'].push(effects - commit8.t1);
    parts['effects to commit timestamp'].push(r.committed - effects);
    parts['total (send start to commit)'].push(r.committed - r.sent);
    each.push(Object.fromEntries(Object.keys(parts).map((k) => [k, parts[k].at(-1)])));
  }
  const waitsForConnections = statements.filter((s) => s.connectMs > 0.5);
  // The tail: the worst 2 % of events by total, each part's mean over them (where the p99's time goes).
  const tail = each.sort((a, b) => b[total] - a[total]).slice(0, Math.max(1, Math.ceil(each.length / 50)));
  const meanOf = (what) => tail.reduce((sum, x) => sum + (x[what] ?? 0), 0) / tail.length;
  console.log(`  trace: ${parts[total].length} of ${rows.length} events matched (ms: p50 / p90 / p99 / mean of the worst 2 %)`);
  for (const [what, xs] of Object.entries(parts)) {
    if (xs.length === 0) continue;
    xs.sort((a, b) => a - b);
    console.log(
      `    ${what.padEnd(38)} ${[0.5, 0.9, 0.99].map((q) => quantile(xs, q).toFixed(2).padStart(7)).join(' ')} ${meanOf(what).toFixed(2).padStart(7)}`,
    );
  }
  const kinds = {};
  for (const s of statements) kinds[s.kind] = (kinds[s.kind] ?? 0) + 1;
  console.log(
    `    statements by kind per event: ${Object.entries(kinds)
      .map(([k, c]) => `${k} ${(c / rows.length).toFixed(3)}`)
      .join(', ')}`,
  );
  const connects = statements
    .filter((s) => s.via === 'pool' || s.kind === 'connect')
    .map((s) => s.connectMs)
    .sort((a, b) => a - b);
  console.log(
    `    waits for a pool connection: ${waitsForConnections.length} over 0.5 ms of ${connects.length}; p50 ${quantile(connects, 0.5).toFixed(2)} p99 ${quantile(connects, 0.99).toFixed(2)} max ${connects.at(-1).toFixed(1)} ms`,
  );
  const others = {};
  for (const s of statements) if (s.kind === 'other') others[s.text] = (others[s.text] ?? 0) + 1;
  for (const [text, c] of Object.entries(others)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6))
    console.log(`    other ${c}: ${text}`);
  const holds = {};
  for (const h of system.pool.log.holds) {
    const x = (holds[h.what] ??= { n: 0, ms: 0 });
    x.n++;
    x.ms += h.t1 - h.t0;
  }
  const pooled = {};
  for (const s of statements.filter((x) => x.via === 'pool')) {
    const x = (pooled[s.kind] ??= { n: 0, ms: 0 });
    x.n++;
    x.ms += s.t1 - s.t0;
  }
  const span = (rows.at(-1).committed - rows[0].sent) / 1000;
  console.log(
    `    connections held (connection-seconds per second; n, mean ms): ${[...Object.entries(holds), ...Object.entries(pooled)].map(([k, x]) => `${k} ${(x.ms / 1000 / span).toFixed(2)} (${x.n}, ${(x.ms / x.n).toFixed(1)})`).join('; ')}`,
  );
  // Per second of the run: the events sent in it (median and most send-to-commit), and the statements started in it.
  const first = rows.reduce((m, r) => Math.min(m, r.sent), Infinity);
  const seconds = [];
  for (const r of rows) (seconds[Math.floor((r.sent - first) / 1000)] ??= { lat: [], kinds: {} }).lat.push(r.committed - r.sent);
  for (const st of statements) {
    const b = seconds[Math.floor((st.t0 - first) / 1000)];
    if (b === undefined) continue;
    b.kinds[st.kind] = (b.kinds[st.kind] ?? 0) + 1;
    b.ms ??= {};
    b.ms[st.kind] = (b.ms[st.kind] ?? 0) + (st.t1 - st.t0);
  }
  seconds.forEach((b, i) => {
    if (b === undefined) return;
    b.lat.sort((x, y) => x - y);
    const k = ['read', 'commit8', 'wait', 'renew', 'lag', 'trim', 'heartbeat', 'other']
      .map(
        (x) =>
          `${x} ${b.kinds[x] ?? 0}${b.kinds[x] > 0 && (x === 'read' || x === 'commit8') ? ` (${(b.ms[x] / b.kinds[x]).toFixed(1)} ms)` : ''}`,
      )
      .join(' ');
    console.log(`    second ${i}: p50 ${quantile(b.lat, 0.5).toFixed(1)} max ${b.lat.at(-1).toFixed(1)} ms; ${k}`);
  });
  const reads = statements.filter((s) => s.kind === 'read').length;
  console.log(
    `    reads ${reads}, events per read ${(rows.length / reads).toFixed(2)}; commits ${kinds.commit8 ?? 0}, events per commit ${(rows.length / (kinds.commit8 ?? 1)).toFixed(2)}; notifications ${notifications.length}`,
  );
}

/** --trace, drain: the worker's start up to its first ledger row, by the statements it ran (ms from the start). */
function startup(system, started, firstRow) {
  const before = system.pool.log.statements.filter((s) => s.t0 < firstRow);
  const byText = new Map();
  for (const s of before) {
    const what = s.kind === 'other' ? s.text.slice(0, 40) : s.kind;
    const x = byText.get(what) ?? { n: 0, first: Infinity, last: 0, ms: 0 };
    x.n++;
    x.first = Math.min(x.first, s.t0 - started);
    x.last = Math.max(x.last, s.t1 - started);
    x.ms += s.t1 - s.t0;
    byText.set(what, x);
  }
  console.log(
    `  startup trace: first ledger row at ${(firstRow - started).toFixed(0)} ms; statements before it (count, first start, last end, mean ms):`,
  );
  for (const [what, x] of [...byText].sort((a, b) => a[1].first - b[1].first)) {
    console.log(
      `    ${what.padEnd(42)} ${String(x.n).padStart(4)} ${x.first.toFixed(0).padStart(6)} ${x.last.toFixed(0).padStart(6)} ${(x.ms / x.n).toFixed(1).padStart(7)}`,
    );
  }
}

// ---- rounds -----------------------------------------------------------------------------------------------------

const FIELDS = {
  drain: ['eventsPerSecond', 'firstOutputMs', 'workerCpuUsPerEvent', 'serverCpuUsPerEvent'],
  send: ['p50Ms', 'p99Ms', 'p99After500Ms', 'sendP50Ms', 'sendP99Ms', 'cpuUsPerEvent', 'serverCpuUsPerEvent', 'loopP99Ms'],
  batch: ['p50Ms', 'p99Ms', 'p99After500Ms', 'sendP50Ms', 'sendP99Ms', 'cpuUsPerEvent', 'serverCpuUsPerEvent', 'loopP99Ms'],
};
const RUN = { drain, send: (kind) => live(kind, false), batch: (kind) => live(kind, true) };

try {
  const velo = PARTITIONS ?? 64;
  console.log(
    `${servers[SYSTEMS[0]].version}, ${DURABLE ? 'durable (fsync on)' : 'fsync off'}; velo ${velo} partitions; pg-boss batchSize ${BATCH}; ` +
      `drain ${EVENTS} events / ${KEYS} keys; live ${RATE}/s over ${LIVE_KEYS} keys for ${SECONDS} s; ${new Date().toISOString()}`,
  );
  const runs = {};
  for (const mode of ONLY) runs[mode] = Object.fromEntries(SYSTEMS.map((s) => [s, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ONLY) {
      for (const kind of round % 2 === 0 ? SYSTEMS : [...SYSTEMS].reverse()) {
        const result = await RUN[mode](kind);
        runs[mode][kind].push(result);
        console.log(`${mode.padEnd(5)} ${round + 1} ${kind.padEnd(6)} ${JSON.stringify(result)}`);
      }
    }
  }
  for (const mode of ONLY) {
    const medians = {};
    for (const kind of SYSTEMS) {
      const fields = Object.keys(runs[mode][kind][0] ?? {});
      medians[kind] = Object.fromEntries(fields.map((f) => [f, median(runs[mode][kind].map((r) => r[f]))]));
    }
    console.log(`${mode} medians: ${JSON.stringify(medians)}`);
    const ratio = (a, b) => FIELDS[mode].map((f) => `${f} ${(medians[a][f] / medians[b][f]).toFixed(2)}`).join(', ');
    for (const kind of ['velo', 'velobase'])
      if (medians[kind] && medians.pgboss) console.log(`${mode} ${kind} / pg-boss: ${ratio(kind, 'pgboss')}`);
    if (medians.velo && medians.velobase) console.log(`${mode} velo / velobase: ${ratio('velo', 'velobase')}`);
  }
} finally {
  await stopAll();
}
