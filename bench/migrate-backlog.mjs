// node bench/migrate-backlog.mjs [sessions] [migrateMs] [rounds] [--redis | --postgres] [--base <copy>]
//
// A deploy with a slow `migrate` onto a backlog: how soon the new version answers (defaults: 2,000 live sessions over
// 8 partitions, a `migrate` holding the event loop 5 ms per call, 3 rounds, both backends; private servers from
// __test__/helpers). Per run: a v1 worker opens a checkpointed session on each key (one event each) and closes; a
// backlog of one event per key is written; then a v2 worker with `migrate` starts in this process and adopts them.
// Measured from just before the v2 worker's start:
// - firstMs: the first v2 output read back (`sessionOutputs`), and adoptedAtFirst: `migrate` calls made by then;
// - allMs: every key's v2 output read back; migrateMs: the calls' time in all (the event loop held by them).
// --base <copy>: the same runs on another copy of the package (its index.mjs and dist/), the kinds in turn.
// Order of magnitude only: one machine, the servers on it.
import { resolve } from 'node:path';
import * as velo from '../index.mjs';
import * as durable from 'velo-stream/durable';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';

const args = process.argv.slice(2);
const baseAt = args.indexOf('--base');
const baseDir = baseAt < 0 ? null : resolve(args[baseAt + 1]);
const nums = args.filter((a, i) => !a.startsWith('--') && i !== baseAt + 1).map(Number);
const [SESSIONS = 2000, MIGRATE_MS = 5, ROUNDS = 3] = nums;
const PARTITIONS = 8;
const servers = args.includes('--redis') ? ['redis'] : args.includes('--postgres') ? ['postgres'] : ['redis', 'postgres'];
const copies = { this: { velo, durable } };
if (baseDir !== null)
  copies.base = { velo: await import(`${baseDir}/index.mjs`), durable: await import(`${baseDir}/dist/backends/index.js`) };

const redis = servers.includes('redis') ? await startRedis() : null;
const pg = servers.includes('postgres') ? await startPostgres() : null;
const client = redis === null ? null : await redis.client();
const pool = pg === null ? null : pg.pool({ max: 10 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(check, what, ms = 300_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function handler(streamFn, v, onFirst) {
  return streamFn(
    async function* cart(events, ctx) {
      let { total = 0, from } = ctx.restored ?? {};
      for await (const e of events) {
        if (v === 'v2') onFirst();
        total += e.n;
        yield { v, total, from };
        ctx.checkpoint({ total, from });
      }
    },
    { idleTimeout: 600_000 },
  );
}

let runs = 0;
async function once(server, copy) {
  const { velo: v, durable: d } = copies[copy];
  const name = `mb${++runs}`;
  const shared =
    server === 'redis'
      ? { client, name, partitions: PARTITIONS }
      : { client: pool, schema: 'velo_mb', name, partitions: PARTITIONS };
  const reading = server === 'postgres' ? { pollInterval: 20 } : {};
  const producer = d.sessionProducer(shared);
  const keys = Array.from({ length: SESSIONS }, (_, i) => `k${i}`);
  const got = [];
  const controller = new AbortController();
  const reader = (async () => {
    for await (const o of d.sessionOutputs({ ...shared, ...reading, signal: controller.signal })) got.push(o);
  })().catch((error) => {
    if (!controller.signal.aborted) throw error;
  });
  const v1 = d.sessionWorker(handler(v.streamFn, 'v1'), { ...shared, ...reading, version: 'v1' });
  for (let i = 0; i < keys.length; i += 500) await producer.sendMany(keys.slice(i, i + 500).map((k) => [k, { n: 1 }]));
  await until(() => got.length >= SESSIONS, 'the v1 outputs');
  await v1.close();
  for (let i = 0; i < keys.length; i += 500) await producer.sendMany(keys.slice(i, i + 500).map((k) => [k, { n: 2 }]));
  let calls = 0;
  let spent = 0;
  let adoptedAtFirst;
  const started = performance.now();
  const v2 = d.sessionWorker(
    handler(v.streamFn, 'v2', () => (adoptedAtFirst ??= calls)),
    {
      ...shared,
      ...reading,
      version: 'v2',
      migrate: (state, fromVersion) => {
        const t0 = performance.now();
        while (performance.now() < t0 + MIGRATE_MS);
        calls++;
        spent += performance.now() - t0;
        return { ...state, from: fromVersion };
      },
    },
  );
  await until(() => got.length > SESSIONS, 'the first v2 output');
  const firstMs = performance.now() - started;
  await until(() => got.length >= 2 * SESSIONS, 'every v2 output');
  const allMs = performance.now() - started;
  const lost = v2.stats().lost;
  await v2.close();
  controller.abort();
  await reader;
  return { firstMs: Math.round(firstMs), adoptedAtFirst, allMs: Math.round(allMs), migrateMs: Math.round(spent), lost };
}

try {
  const results = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const server of servers) {
      const order = round % 2 === 0 ? Object.keys(copies) : Object.keys(copies).reverse();
      for (const copy of order) {
        const r = await once(server, copy);
        (results[`${server} ${copy}`] ??= []).push(r);
        console.log(`${round + 1} ${server} ${copy} ${JSON.stringify(r)}`);
      }
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [kind, rs] of Object.entries(results)) {
    const m = Object.fromEntries(Object.keys(rs[0]).map((f) => [f, median(rs.map((r) => r[f]))]));
    console.log(`median ${kind} ${JSON.stringify(m)}`);
  }
} finally {
  await client?.quit();
  await pool?.end();
  await Promise.allSettled([redis?.stop(), pg?.stop()]);
}
