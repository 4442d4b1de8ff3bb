// Worker series in Prometheus on both backends (a private redis-server and a private postgres): every series is
// `velo_worker_*` labelled `backend` by the worker's own backend, a Postgres worker's carry `backend="postgres"`
// and no name or help text of theirs calls it Redis; sessions adopted by `migrate` are counted; the deprecated
// `registerRedisWorkerMetrics` also emits the old `velo_redis_*` names, as they were, marked deprecated.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { redisWorker } from 'velo-stream/redis';
import { registerRedisWorkerMetrics, registerWorkerMetrics } from 'velo-stream/prometheus';
import { startPostgres } from './helpers/postgres-server.mjs';
import { startRedis } from './helpers/redis-server.mjs';
import { checkpointed, eventually, totals } from './helpers/redis-fixtures.mjs';

let postgres;
let redis;
let pool;
let client;
before(async () => {
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
  pool = postgres.pool({ max: 8 });
  client = await redis.client();
});
after(async () => {
  await Promise.all([postgres?.stop(), redis?.stop()]);
});

let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;

/** A scrape: its samples (`name{labels}` -> value, each once) and each metric's help text. */
async function scrape(registry) {
  const samples = new Map();
  const help = new Map();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      const [name, ...text] = line.slice(7).split(' ');
      help.set(name, text.join(' '));
      continue;
    }
    if (line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    assert.ok(!samples.has(line.slice(0, at)), `duplicate sample ${line}`);
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { samples, help };
}

/** A sample's value by its metric name and the worker it is of, or undefined. */
function valueOf(samples, name, worker, more = '') {
  for (const [key, value] of samples) {
    if (key.startsWith(`${name}{`) && key.includes(`worker="${worker.id}"`) && key.includes(more)) return value;
  }
  return undefined;
}

test('a Postgres worker\'s series: velo_worker_* labelled backend="postgres", no name or help text calling it Redis; a Redis worker\'s beside it labelled backend="redis"', async () => {
  const pgWorker = postgresWorker(totals(), { pool, name: fresh('pgm'), partitions: 2, leaseTtl: 1500 });
  const rdWorker = redisWorker(totals(), { client, name: fresh('rdm'), partitions: 2, leaseTtl: 1500 });
  try {
    assert.equal(pgWorker.backend, 'postgres');
    assert.equal(rdWorker.backend, 'redis');
    await eventually(
      () => pgWorker.stats().owned.length === 2 && rdWorker.stats().owned.length === 2,
      'both workers own their partitions',
      30_000,
    );
    // Postgres alone: nothing in the scrape names Redis.
    const alone = new Registry();
    registerWorkerMetrics(alone, [pgWorker]);
    const text = await alone.metrics();
    assert.doesNotMatch(text, /redis/i);
    const { samples, help } = await scrape(alone);
    assert.ok(samples.size > 30, `${samples.size} samples`);
    for (const key of samples.keys()) {
      assert.match(key, /^velo_worker_[a-z_]+\{backend="postgres",fn="pgm-[^"]+",worker="[^"]+"/, key);
    }
    for (const [name, text] of help) {
      assert.match(name, /^velo_worker_/);
      assert.doesNotMatch(text, /redis|deprecated/i, name);
    }
    assert.equal(valueOf(samples, 'velo_worker_partitions_owned', pgWorker), 2);
    assert.equal(valueOf(samples, 'velo_worker_migrated_sessions_total', pgWorker), 0);
    assert.ok(valueOf(samples, 'velo_worker_round_trip_seconds_count', pgWorker) > 0);

    // Both backends in one registry: each worker's series labelled by its own backend.
    const both = new Registry();
    registerWorkerMetrics(both, () => [pgWorker, rdWorker]);
    const mixed = (await scrape(both)).samples;
    const backends = new Map();
    for (const key of mixed.keys()) {
      const [, backend, worker] = /backend="([^"]+)",fn="[^"]+",worker="([^"]+)"/.exec(key);
      assert.ok(!backends.has(worker) || backends.get(worker) === backend, key);
      backends.set(worker, backend);
    }
    assert.deepEqual(Object.fromEntries(backends), { [pgWorker.id]: 'postgres', [rdWorker.id]: 'redis' });
    assert.equal(valueOf(mixed, 'velo_worker_partitions_owned', rdWorker), 2);
  } finally {
    await Promise.all([pgWorker.close(), rdWorker.close()]);
  }
});

test('migrated sessions: a Postgres worker of v2 adopting a v1 session (migrate) counts it in velo_worker_migrated_sessions_total; a later v2 owner, restoring it, does not', async () => {
  const name = fresh('pgmigrate');
  const options = { pool, name, partitions: 1, leaseTtl: 1500 };
  const producer = postgresProducer({ pool, name, partitions: 1 });
  const v1 = postgresWorker(checkpointed('v1'), { ...options, version: 'v1' });
  await producer.sendMany([
    ['k', { n: 1 }],
    ['k', { n: 2 }],
  ]);
  await eventually(() => v1.stats().checkpoints >= 1 && v1.stats().outputs === 2, 'two v1 outputs and a checkpoint', 30_000);
  await v1.close();
  const v2 = postgresWorker(checkpointed('v2'), {
    ...options,
    version: 'v2',
    migrate: (state, fromVersion) => ({ ...state, from: fromVersion }),
  });
  try {
    const registry = new Registry();
    registerWorkerMetrics(registry, [v2]);
    assert.equal(valueOf((await scrape(registry)).samples, 'velo_worker_migrated_sessions_total', v2), 0);
    await producer.send('k', { n: 3 });
    await eventually(() => v2.stats().migrated === 1, 'the v1 session adopted by v2', 30_000);
    const { samples } = await scrape(registry);
    assert.equal(valueOf(samples, 'velo_worker_migrated_sessions_total', v2, 'backend="postgres"'), 1);
    assert.equal(valueOf(samples, 'velo_worker_sessions_by_version', v2, 'version="v2"'), 1);
    await eventually(() => v2.stats().outputs === 1 && v2.stats().checkpoints >= 1, 'the adopted session committed', 30_000);
  } finally {
    await v2.close();
  }
  // The session is v2's now (its converted checkpoint committed with the adoption): a later owner restores it.
  let calls = 0;
  const again = postgresWorker(checkpointed('v2'), {
    ...options,
    version: 'v2',
    migrate: (state, fromVersion) => (calls++, { ...state, from: fromVersion }),
  });
  try {
    await producer.send('k', { n: 4 });
    await eventually(() => again.stats().outputs === 1, 'the restored session answers', 30_000);
    assert.deepEqual([again.stats().migrated, again.stats().restored, calls], [0, 1, 0]);
  } finally {
    await again.close();
  }
});

test('registerRedisWorkerMetrics (deprecated): the velo_worker_* series, and the old velo_redis_* names as they were (fn and worker labels), their help marked deprecated', async () => {
  const pgWorker = postgresWorker(totals(), { pool, name: fresh('pgold'), partitions: 2, leaseTtl: 1500 });
  try {
    await eventually(() => pgWorker.stats().owned.length === 2, 'the worker owns its partitions', 30_000);
    const registry = new Registry();
    registerRedisWorkerMetrics(registry, [pgWorker], { prefix: 'app_' });
    const { samples, help } = await scrape(registry);
    const oldNames = [...help.keys()].filter((n) => n.startsWith('app_redis_'));
    const newNames = [...help.keys()].filter((n) => n.startsWith('app_worker_'));
    assert.equal(oldNames.length + newNames.length, help.size, 'no other series');
    // Every old name has its new one; the migrated count has no old name.
    assert.deepEqual(
      oldNames.map((n) => n.replace('app_redis_', 'app_worker_')),
      newNames.filter((n) => n !== 'app_worker_migrated_sessions_total'),
    );
    for (const name of oldNames) {
      assert.match(
        help.get(name),
        new RegExp(`^Deprecated .*use ${name.replace('app_redis_', 'app_worker_')}, labelled backend\\. `),
      );
    }
    for (const [key, value] of samples) {
      if (!key.startsWith('app_redis_')) continue;
      assert.match(key, /^app_redis_[a-z_]+\{fn="[^"]+",worker="[^"]+"/, 'the labels of before: no backend');
      const twin = key.replace('app_redis_', 'app_worker_').replace('{', '{backend="postgres",');
      // (Gauges and counters read at one scrape: the same value, but the round trips may move between the two reads.)
      if (!/round_trip|renewal/.test(key)) assert.equal(samples.get(twin), value, key);
      else assert.ok(samples.has(twin), key);
    }
    assert.equal(valueOf(samples, 'app_redis_partitions_owned', pgWorker), 2);
  } finally {
    await pgWorker.close();
  }
});
