// velo-stream/dashboard with workers of both backends (a private redis-server and a private postgres) under one
// option, `workers`: each in the feed with its backend, `redis` (the feed's old name for them) holding the same
// rows; `redisWorkers`, the option's old name, takes a Postgres worker as before; the fleet view sums a function
// per backend.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresWorker } from 'velo-stream/postgres';
import { redisWorker } from 'velo-stream/redis';
import { dashboard } from 'velo-stream/dashboard';
import { firstSample, fleetView, listen } from './helpers/dashboard-feed.mjs';
import { startPostgres } from './helpers/postgres-server.mjs';
import { startRedis } from './helpers/redis-server.mjs';
import { eventually, totals } from './helpers/redis-fixtures.mjs';

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

test('dashboard({ workers }) with a Postgres worker and a Redis worker: both in the feed, each with its backend; redis holds the same rows', async () => {
  // One function name on both backends: two functions (two logs), told apart by their backend.
  const name = fresh('both');
  const pgWorker = postgresWorker(totals(), { pool, name, partitions: 2, leaseTtl: 1500 });
  const rdWorker = redisWorker(totals(), { client, name, partitions: 2, leaseTtl: 1500 });
  let dash;
  let close;
  try {
    dash = dashboard({ workers: [pgWorker, rdWorker, pgWorker], interval: 100, fleet: { client, name: fresh('fleet') } });
    const served = await listen(dash);
    close = served.close;
    const { url, root } = served;
    await eventually(
      () => pgWorker.stats().owned.length === 2 && rdWorker.stats().owned.length === 2,
      'both workers own their partitions',
      30_000,
    );
    const sample = await eventually(async () => {
      const s = await firstSample(url);
      return s.workers.every((w) => w.owned.length === 2) ? s : null;
    }, 'both workers own their partitions in the feed');
    assert.equal(sample.workers.length, 2, 'the same worker twice is one entry');
    const byBackend = Object.fromEntries(sample.workers.map((w) => [w.backend, w]));
    assert.deepEqual(Object.keys(byBackend).sort(), ['postgres', 'redis']);
    assert.equal(byBackend.postgres.id, pgWorker.id);
    assert.equal(byBackend.redis.id, rdWorker.id);
    for (const w of sample.workers) {
      assert.equal(w.name, name);
      assert.ok(w.roundTripP99Ms > 0, `${w.backend}: round trips measured`);
    }
    // The old name of the rows: the same, for a reader of the release before.
    assert.deepEqual(sample.redis, sample.workers);
    // The fleet view: one row per backend for the one name.
    const view = await eventually(async () => {
      const v = await fleetView(root);
      return v.workers.length === 2 && v.workers.every((t) => t.owned === 2) ? v : null;
    }, 'the fleet view sums each backend');
    assert.deepEqual(
      view.workers.map((t) => [t.name, t.backend, t.workers, t.owned]),
      [
        [name, 'postgres', 1, 2],
        [name, 'redis', 1, 2],
      ],
    );
    assert.deepEqual(view.redis, view.workers);
    assert.deepEqual(view.members[0].sample.workers, view.members[0].sample.redis);
  } finally {
    await dash?.close();
    await close?.();
    await Promise.all([pgWorker.close(), rdWorker.close()]);
  }
});

test("redisWorkers, workers' old name, still takes a worker of either backend; giving both is ERR_INVALID_ARG_VALUE", async () => {
  const pgWorker = postgresWorker(totals(), { pool, name: fresh('old'), partitions: 1, leaseTtl: 1500 });
  let dash;
  let close;
  try {
    dash = dashboard({ redisWorkers: [pgWorker] });
    const served = await listen(dash);
    close = served.close;
    const { url } = served;
    assert.throws(() => dashboard({ workers: [pgWorker], redisWorkers: [pgWorker] }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /give options\.workers or options\.redisWorkers \(its old name\), not both/,
    });
    assert.throws(() => dashboard({ redisWorkers: [pgWorker, { ...pgWorker }] }), {
      code: 'ERR_INVALID_ARG_TYPE',
      message: /every item of "redisWorkers"/,
    });
    assert.throws(() => dashboard({ workers: [{ ...pgWorker }] }), {
      code: 'ERR_INVALID_ARG_TYPE',
      message: /every item of "workers"/,
    });
    const sample = await firstSample(url);
    assert.deepEqual(
      sample.workers.map((w) => [w.id, w.backend]),
      [[pgWorker.id, 'postgres']],
    );
  } finally {
    await dash?.close();
    await close?.();
    await pgWorker.close();
  }
});
