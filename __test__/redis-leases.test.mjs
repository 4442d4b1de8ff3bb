// A lone worker keeps its own leases while it drains a backlog (issue 30): renewals do not wait behind
// reads, commits, lag measures, trims or acquisitions, and their lateness is measured. With no other worker
// anywhere, draining a large backlog must lose no lease, have no write fenced and replay nothing.
import { createRequire } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

useRedis();
const require = createRequire(import.meta.url);

test('a lone worker process drains a backlog of 20,000 keys x 5 events on 64 partitions: no lease lost, nothing fenced, nothing replayed', async () => {
  const name = fresh('leases');
  const partitions = 64;
  const keys = 20_000;
  const rounds = 5;
  const producer = redisProducer({ client, name, partitions });
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < keys; k += 1000) {
      const pairs = [];
      for (let i = k; i < Math.min(keys, k + 1000); i++) pairs.push([`k${i}`, { n: r * keys + i }]);
      await producer.sendMany(pairs);
    }
  }
  const total = keys * rounds;
  // A process of its own, as a deployment runs it: this one's test runner tracks every promise it makes (async
  // hooks), which would slow the drain's every step and not the product's. A short lease makes a late renewal
  // show: renewals are due every 800 ms and a lease lasts 2.4 s.
  const worker = workerChild(name, {
    partitions,
    ttl: 2400,
    idle: 1000,
    delayMs: 0,
    trimInterval: 5000,
    extra: { maxConcurrent: 100_000 },
    timeout: 300_000,
  });
  let stopped = false;
  try {
    // Watched by the worker's own stats, not by reading its outputs back meanwhile: 100,000 outputs read every few
    // ms would load the one Redis (and the two cores) that the worker's renewals need.
    await eventually(() => (lastStats(worker)?.outputs ?? 0) >= total, `${total} outputs`, 240_000);
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'nothing pending', 60_000);
    assert.equal((await readAllOutputs(client, name, partitions)).length, total, 'the outputs in Redis');
    const stats = await stopChild(worker, { queuedTimeouts: true });
    stopped = true;
    assert.equal(stats.lost, 0, `leases lost: ${JSON.stringify(stats.renewals)}`);
    assert.equal(stats.fenced, 0, 'writes fenced');
    assert.equal(stats.replayed, 0, 'entries replayed');
    assert.equal(stats.acquired, partitions, 'each partition taken once');
    assert.equal(stats.outputs, total, 'one output written per event');
    assert.ok(stats.renewals.count > 0, 'renewals are counted');
    assert.ok(
      stats.renewals.lateMax >= 0 && stats.renewals.lateMax < 2400,
      `renewal lateness below the lease: ${JSON.stringify(stats.renewals)}`,
    );
  } finally {
    if (!stopped) await killChild(worker);
  }
});

test('renewal lateness is exported to Prometheus', async () => {
  const name = fresh('lateness');
  const worker = redisWorker(totals({ idleTimeout: 1000 }), { client, name, partitions: 2, leaseTtl: 2400 });
  try {
    await eventually(() => worker.stats().renewals.count > 0, 'a renewal', 30_000);
    const registry = new Registry();
    registerRedisWorkerMetrics(registry, [worker]);
    assert.match(await registry.metrics(), /velo_redis_renewal_lateness_seconds_count\{[^}]*\} [1-9]/);
  } finally {
    await worker.close();
  }
});

test("a worker that wants a held partition takes it once the lease runs out, not at its next balance (leaseTtl/3 later): it tries again at the lease's expiry", async () => {
  const { RedisLog, KeySpace } = require('../dist/redis/log/redis-log.js');
  const name = fresh('heldUntil');
  const log = new RedisLog(client, new KeySpace(name), 1, (error) => assert.fail(error));
  // A dead owner's lease with 1.5 s left; the worker's balance period is 60 s / 3 = 20 s.
  const dead = await log.acquire(0, 'dead', 1500);
  assert.match(dead.token, /^dead:1$/);
  const held = await log.acquire(0, 'other', 1500);
  assert.equal(held.holder, 'dead');
  assert.ok(held.left > 0 && held.left <= 1500, `held: the time its lease has left (${held.left})`);
  const worker = redisWorker(totals({ idleTimeout: 1000 }), { client, name, partitions: 1, leaseTtl: 60_000 });
  try {
    // Its first balance found the lease held; the next one is 20 s away.
    await eventually(() => worker.stats().owned.length === 1, 'the worker owns the partition', 15_000);
    const producer = redisProducer({ client, name, partitions: 1 });
    await producer.send('k', { n: 1 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 'its output');
  } finally {
    await worker.close();
    await log.close();
  }
});

test("a worker at its share wakes when a dead worker's registration runs out, then takes its partitions as their leases run out (not at its next balance)", async () => {
  const { RedisLog, KeySpace } = require('../dist/redis/log/redis-log.js');
  // A worker tries partitions from a random start: half the time it takes the free one first and, at its share,
  // tries the dead worker's only once that worker's registration runs out (the other half it finds it held and
  // waits for its lease). Four rounds.
  for (let round = 0; round < 4; round++) {
    const name = fresh('deadWorker');
    const log = new RedisLog(client, new KeySpace(name), 2, (error) => assert.fail(error));
    // A dead worker: registered, holding partition 0, both for 800 ms more. The live one's balance period is 20 s.
    assert.equal((await log.heartbeat('dead', 800)).live, 1);
    assert.match((await log.acquire(0, 'dead', 800)).token, /^dead:1$/);
    const worker = redisWorker(totals({ idleTimeout: 1000 }), { client, name, partitions: 2, leaseTtl: 60_000 });
    try {
      // Two live workers at its first balance: its share is one partition, the free one.
      await eventually(() => worker.stats().owned.length === 1, 'the free partition');
      assert.deepEqual(worker.stats().owned, [1]);
      await eventually(() => worker.stats().owned.length === 2, "the dead worker's partition too", 15_000);
      const producer = redisProducer({ client, name, partitions: 2 });
      await producer.sendMany(['a', 'b', 'c', 'd'].map((k) => [k, { n: 1 }]));
      await eventually(async () => (await readAllOutputs(client, name, 2)).length === 4, 'their outputs');
    } finally {
      await worker.close();
      await log.close();
    }
  }
});

test("a worker's registration runs out with its leases, not later: a balance between renewals does not extend it (the others take a dead worker's partitions at their leases' expiry)", async () => {
  const { RedisLog, KeySpace } = require('../dist/redis/log/redis-log.js');
  const name = fresh('regWithLeases');
  const keys = new KeySpace(name);
  const log = new RedisLog(client, keys, 1, (error) => assert.fail(error));
  // Renewals every 1 s; its balances too, but each one's period starts when the one before ends.
  const worker = redisWorker(totals({ idleTimeout: 1000 }), { client, name, partitions: 1, leaseTtl: 3000 });
  try {
    await eventually(() => worker.stats().owned.length === 1, 'the worker owns the partition');
    // Another worker, registered for 1.5 s: this one's next balance sees it and wakes again at its expiry, half a
    // renewal period off its renewals' phase (and its share stays the one partition).
    await log.heartbeat('other', 1500);
    // How far the registration runs out past the lease, sampled over 3 s (both on Redis' clock, ms).
    let worst = -Infinity;
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      const [registered, leaseEnd] = await Promise.all([
        client.sendCommand(['ZSCORE', keys.workers(), worker.id]),
        client.sendCommand(['PEXPIRETIME', keys.lease(0)]),
      ]);
      assert.notEqual(registered, null, 'the worker stays registered');
      assert.ok(Number(leaseEnd) > 0, 'the worker holds its lease');
      worst = Math.max(worst, Number(registered) - Number(leaseEnd));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // The registration is renewed just after the leases, on the same connection: a few ms at most.
    assert.ok(worst >= 0 && worst <= 100, `registration past the lease by ${worst} ms`);
    assert.equal(worker.stats().lost, 0);
  } finally {
    await worker.close();
    await log.close();
  }
});
