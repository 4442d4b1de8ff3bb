// Worker metrics (stats() and the Prometheus export): each figure is read
// after a scenario that must move it — a backlog for lag, a killed worker
// child for replays, a stolen lease for fenced writes, a paused redis-server
// for round-trip times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { registerRedisWorkerMetrics, registerStreamMetrics } from 'velo-stream/prometheus';
import { client, fresh, killChild, lastStats, redis, sender, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { checkOutputs, eventually, expectedTotals, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

useRedis();

/** A scrape's samples by `name{labels}`. */
async function scrape(registry) {
  const out = new Map();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    assert.ok(!out.has(line.slice(0, at)), `duplicate sample ${line}`);
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The group's lag on a partition's input, read from Redis. */
async function redisLag(name, p) {
  const [group] = await client.xInfoGroups(`velo:{${name}:p${p}}`);
  return Number(group.lag);
}

test('lag: a backlog behind a slow handler shows as undelivered entries per owned partition, then drains to 0', async () => {
  const name = fresh('lag');
  const producer = redisProducer({ client, name, partitions: 2 });
  // Small reads and buffers: most of the backlog stays unread in Redis while the handler works.
  const worker = redisWorker(totals({ idleTimeout: 200, buffer: 2 }, 5), { client, name, partitions: 2, leaseTtl: 600, readCount: 5 });
  try {
    await eventually(() => worker.stats().owned.length === 2, 'the worker owns both partitions');
    assert.equal(worker.stats().lag, 0);
    const keys = ['a', 'b', 'c', 'd'];
    await producer.sendMany(Array.from({ length: 400 }, (_, i) => [keys[i % 4], { n: i }]));
    const seen = await eventually(() => (worker.stats().lag > 100 ? worker.stats() : null), 'a lag measured');
    assert.equal(seen.partitionLag[0] + seen.partitionLag[1], seen.lag);
    for (const p of [0, 1]) assert.ok(seen.partitionLag[p] <= (await client.xLen(`velo:{${name}:p${p}}`)), 'never more than the input holds');
    await eventually(async () => (await readAllOutputs(client, name, 2)).length === 400, '400 outputs', 30_000);
    await eventually(() => worker.stats().lag === 0, 'the lag measured back at 0');
    assert.equal(await redisLag(name, 0), 0);
    assert.equal(await redisLag(name, 1), 0);
  } finally {
    await worker.close();
  }
});

test('replays: when a worker child is killed, the survivor rebuilds its live sessions (sessions and entries counted), and the export shows it', async () => {
  const name = fresh('replay');
  const partitions = 8;
  const producer = redisProducer({ client, name, partitions });
  const fn = totals({ idleTimeout: 3000 }, 1);
  const survivor = redisWorker(fn, { client, name, partitions, leaseTtl: 1000, trimInterval: 0 });
  const registry = new Registry();
  registerStreamMetrics(registry, [fn]);
  registerRedisWorkerMetrics(registry, [survivor]);
  let closed = false;
  try {
    await eventually(() => survivor.stats().owned.length === partitions, 'the survivor owns every partition');
    const doomed = workerChild(name, { partitions, ttl: 1000, idle: 3000, trimInterval: 0 });
    await eventually(
      () => survivor.stats().owned.length === partitions / 2 && lastStats(doomed)?.owned.length === partitions / 2,
      'half each',
    );
    const sent = new Map();
    const send = sender(producer, 20, sent);
    await send(100);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 100, '100 outputs');
    await eventually(() => lastStats(doomed).sessions > 0, 'the child has live sessions');
    assert.equal(survivor.stats().replayedSessions, 0, 'nothing to replay so far');
    assert.equal(survivor.stats().replayed, 0);
    await killChild(doomed);
    await eventually(() => survivor.stats().owned.length === partitions, 'the survivor took every partition', 30_000);
    await send(40);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 140, '140 outputs', 30_000);
    const stats = survivor.stats();
    assert.ok(stats.replayedSessions > 0, `sessions rebuilt (${stats.replayedSessions})`);
    assert.ok(stats.replayed >= stats.replayedSessions, 'at least an entry per rebuilt session');
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed', 30_000);
    checkOutputs(await readAllOutputs(client, name, partitions), new Map([...sent].map(([k, ns]) => [k, expectedTotals(ns)])));
    await survivor.close();
    closed = true;
    // Stable once closed: the export reads the same figures.
    const after = survivor.stats();
    const s = await scrape(registry);
    const labels = `fn="${name}",worker="${survivor.id}"`;
    assert.equal(s.get(`velo_redis_replayed_sessions_total{${labels}}`), after.replayedSessions);
    assert.equal(s.get(`velo_redis_replayed_entries_total{${labels}}`), after.replayed);
    assert.equal(s.get(`velo_redis_leases_acquired_total{${labels}}`), after.acquired);
    assert.equal(s.get(`velo_redis_leases_released_total{${labels}}`), after.released);
    assert.equal(s.get(`velo_redis_outputs_total{${labels}}`), after.outputs);
    assert.equal(s.get(`velo_redis_partitions_owned{${labels}}`), 0);
    assert.equal(s.get(`velo_redis_round_trip_seconds_count{${labels}}`), after.roundTrip.count);
    assert.equal(s.get(`velo_redis_round_trip_seconds_bucket{${labels},le="+Inf"}`), after.roundTrip.count);
    // The function's own series are still there, next to the worker's.
    assert.equal(s.get(`velo_streams_opened_total{fn="totals"}`), fn.stats().opened);
  } finally {
    if (!closed) await survivor.close();
  }
});

test('fenced: a worker whose lease was taken has its next read refused by Redis, counted, and the partition dropped', async () => {
  const name = fresh('fenced');
  const producer = redisProducer({ client, name, partitions: 1 });
  // A long lease: renewals (every 10 s) stay out of the way; the read is what meets the fence.
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions: 1, leaseTtl: 30_000 });
  const registry = new Registry();
  registerRedisWorkerMetrics(registry, () => [worker, worker]);
  const labels = `fn="${name}",worker="${worker.id}"`;
  try {
    await eventually(() => worker.stats().owned.length === 1, 'the worker owns the partition');
    await producer.send('k', { n: 1 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 'one output');
    let s = await scrape(registry);
    assert.equal(s.get(`velo_redis_partitions_owned{${labels}}`), 1);
    assert.equal(s.get(`velo_redis_fenced_total{${labels}}`), 0);
    // Another worker's lease, as after a takeover the zombie did not notice.
    await client.set(`velo:{${name}:p0}:lease`, 'thief:999', { PX: 60_000 });
    await producer.send('k', { n: 2 });
    await eventually(() => worker.stats().fenced > 0, 'the read refused');
    const stats = worker.stats();
    assert.equal(stats.lost, 1);
    assert.deepEqual(stats.owned, []);
    assert.equal(stats.errors, 0, 'a refusal is not an error');
    assert.equal((await readAllOutputs(client, name, 1)).length, 1, 'nothing written by the zombie');
    s = await scrape(registry);
    assert.equal(s.get(`velo_redis_fenced_total{${labels}}`), stats.fenced);
    assert.equal(s.get(`velo_redis_leases_lost_total{${labels}}`), 1);
    assert.equal(s.get(`velo_redis_partitions_owned{${labels}}`), 0);
  } finally {
    await worker.close();
  }
});

test('round trips: every call is timed; a paused redis-server shows in the slowest ones', async () => {
  const name = fresh('rtt');
  const worker = redisWorker(totals(), { client, name, partitions: 1, leaseTtl: 1500 });
  try {
    await eventually(() => worker.stats().roundTrip.count >= 3, 'a few calls timed');
    const before = worker.stats().roundTrip;
    assert.ok(before.p50 > 0 && before.p50 <= before.p99 && before.p99 <= before.max, JSON.stringify(before));
    // Renewals every 500 ms: one starts within the first 500 ms of a 1000 ms pause, and its reply waits for
    // the resume. A lower bound the pause itself sets, not a speed check.
    redis.pause();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    redis.resume();
    await eventually(() => worker.stats().roundTrip.max >= 400, 'a round trip that spanned the pause');
    assert.ok(worker.stats().roundTrip.count > before.count);
    assert.deepEqual(worker.stats().owned, [0], 'the lease outlived the pause');
  } finally {
    await worker.close();
  }
});

test('registerRedisWorkerMetrics refuses what is not a worker, and two workers with one id', () => {
  const registry = new Registry();
  assert.throws(() => registerRedisWorkerMetrics({}, []), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => registerRedisWorkerMetrics(registry, [{}]), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => registerRedisWorkerMetrics(registry, 5), { code: 'ERR_INVALID_ARG_TYPE' });
  const a = redisWorker(totals(), { client, name: 'same', partitions: 1, workerId: 'w1' });
  const b = redisWorker(totals(), { client, name: 'same', partitions: 1, workerId: 'w1' });
  return Promise.all([a.close(), b.close()]).then(async () => {
    assert.throws(() => registerRedisWorkerMetrics(registry, [a, b]), { code: 'ERR_INVALID_ARG_VALUE' });
    const late = new Registry();
    registerRedisWorkerMetrics(late, () => [a, b]);
    await assert.rejects(late.metrics(), { code: 'ERR_INVALID_RETURN_VALUE' });
  });
});
