// velo-stream/durable on Redis: sessionWorker, sessionProducer and sessionOutputs (and a key's reader, its cursor,
// the versions view and a fleet limiter) on a node-redis client run the function as velo-stream/redis does; and
// velo-stream/redis' deprecated names still run it, on the same keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  fleetLimiter,
  functionName,
  keyCursor,
  keyOutputs,
  sessionOutputs,
  sessionProducer,
  sessionVersions,
  sessionWorker,
} from 'velo-stream/durable';
import { redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { totals } from './helpers/redis-fixtures.mjs';

useRedis();

/** The first `n` outputs of `reader` (fails after `ms`). */
async function take(reader, n, ms = 20_000) {
  const got = [];
  const timer = setTimeout(() => reader[Symbol.asyncDispose](), ms);
  try {
    for await (const item of reader) {
      got.push(item);
      if (got.length === n) break;
    }
  } finally {
    clearTimeout(timer);
  }
  assert.equal(got.length, n, `${got.length} of ${n} outputs within ${ms} ms`);
  return got;
}

test('sessionWorker, sessionProducer and sessionOutputs round trip on a Redis client', async () => {
  const fn = totals({ idleTimeout: 60_000 });
  const shared = { client, name: functionName(fn, fresh('durable')), partitions: 4 };
  const worker = sessionWorker(fn, { ...shared, leaseTtl: 2000 });
  const producer = sessionProducer(shared);
  try {
    const from = await keyCursor({ ...shared, key: 'a' });
    await producer.sendMany([
      ['a', { n: 1 }],
      ['b', { n: 10 }],
      ['a', { n: 2 }],
    ]);
    const outputs = await take(sessionOutputs(shared), 3);
    const a = outputs.filter((o) => o.key === 'a').map((o) => o.value.total);
    assert.deepEqual(a, [1, 3]);
    assert.deepEqual(
      outputs.filter((o) => o.key === 'b').map((o) => o.value.total),
      [10],
    );
    const ofA = await take(keyOutputs({ ...shared, key: 'a', from }), 2);
    assert.deepEqual(
      ofA.map((o) => o.value.total),
      [1, 3],
    );
    assert.equal(worker.stats().outputs >= 3, true);
    const status = await sessionVersions(shared).status();
    assert.equal(typeof status, 'object');
  } finally {
    await worker.close();
  }
});

test('fleetLimiter on a Redis client: stats() says backendDown (and redisDown)', async () => {
  const limiter = fleetLimiter({ client, name: fresh('lim'), concurrency: 1, whenBackendFails: 'fail-open' });
  try {
    const permit = await limiter.acquire('x');
    assert.equal(permit.source, 'redis');
    permit.release();
    const stats = limiter.stats();
    assert.equal(stats.backendDown, false);
    assert.equal(stats.redisDown, false);
  } finally {
    await limiter.close();
  }
});

test("velo-stream/redis' deprecated names still run the function, on the keys velo-stream/durable reads", async () => {
  const fn = totals({ idleTimeout: 60_000 });
  const shared = { client, name: fresh('old'), partitions: 2 };
  const worker = redisWorker(fn, shared);
  try {
    await redisProducer(shared).send('k', { n: 5 });
    const [old] = await take(redisOutputs(shared), 1);
    assert.equal(old.value.total, 5);
    const [same] = await take(sessionOutputs(shared), 1);
    assert.deepEqual(same, old);
  } finally {
    await worker.close();
  }
});

test('a fleet limiter full at its concurrency refuses with no wait (no Retry-After); one held back by its rate, with one', async () => {
  const full = fleetLimiter({ client, name: fresh('full'), concurrency: 1, mode: 'reject' });
  const rated = fleetLimiter({ client, name: fresh('rated'), rate: { limit: 1, period: 60_000 }, mode: 'reject' });
  try {
    const permit = await full.acquire({});
    const refused = await full.acquire({}).catch((error) => error);
    assert.equal(refused.code, 'ERR_VELO_RATE_LIMITED');
    assert.equal(refused.status, 429);
    assert.equal(refused.retryAfter, undefined, 'a full concurrency knows no wait');
    assert.equal(refused.headers?.['retry-after'], undefined);
    permit.release();
    (await rated.acquire({})).release();
    const held = await rated.acquire({}).catch((error) => error);
    assert.equal(held.code, 'ERR_VELO_RATE_LIMITED');
    assert.ok(held.retryAfter > 0, `the rate's wait: ${held.retryAfter}`);
  } finally {
    await Promise.all([full.close(), rated.close()]);
  }
});

test("sessionOutputs' count is 1 to 10,000 on Redis, as on Postgres: 10,001 is refused, 10,000 reads", async () => {
  const fn = totals({ idleTimeout: 60_000 });
  const shared = { client, name: functionName(fn, fresh('count')), partitions: 2 };
  for (const [name, read] of [
    ['sessionOutputs', (count) => sessionOutputs({ ...shared, count })],
    ['redisOutputs', (count) => redisOutputs({ ...shared, count })],
    ['keyOutputs', (count) => keyOutputs({ ...shared, key: 'k', count })],
  ]) {
    for (const count of [10_001, 100_000, 0]) {
      assert.throws(() => read(count), { code: 'ERR_OUT_OF_RANGE', message: new RegExp(`^${name}\\(\\): `) }, `${name} ${count}`);
    }
  }
  const worker = sessionWorker(fn, { ...shared, leaseTtl: 2000 });
  try {
    await sessionProducer(shared).sendMany([
      ['a', { n: 1 }],
      ['b', { n: 2 }],
    ]);
    const outputs = await take(sessionOutputs({ ...shared, count: 10_000 }), 2);
    assert.deepEqual(outputs.map((o) => o.value.total).sort(), [1, 2]);
    assert.equal((await take(keyOutputs({ ...shared, key: 'a', count: 10_000 }), 1))[0].value.total, 1);
  } finally {
    await worker.close();
  }
});
