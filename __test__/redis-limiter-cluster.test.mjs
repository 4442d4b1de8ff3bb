// redisLimiter on a real Redis Cluster (three masters, like redis-cluster.test.mjs): every key of a limiter is in
// the slot of its `{name}` hash tag, the scripts run there, and waiters are woken through the shard channel.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { redisLimiter } from 'velo-stream/redis';
import { startRedisCluster } from './helpers/redis-server.mjs';

let cluster;
let client;
before(async () => {
  cluster = await startRedisCluster(3);
  client = await cluster.client();
});
after(async () => {
  await cluster?.stop();
});

test('cluster: keyed concurrency with a waiter woken across processes, reject-mode rate, setLimits; all keys on one master', async () => {
  const name = 'fleet';
  const options = { client, name, concurrency: 1, key: (item) => item, leaseTtl: 2000 };
  const a = redisLimiter(options);
  const b = redisLimiter(options);
  const rate = redisLimiter({ client, name: 'budget', rate: { limit: 3, period: 60_000 }, mode: 'reject' });
  try {
    const held = await a.acquire('t1');
    const other = await b.acquire('t2');
    const waiting = b.acquire('t1');
    let woken;
    waiting.then((p) => (woken = p));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(woken, undefined);
    held.release();
    const granted = await waiting;
    assert.equal(granted.source, 'redis');
    granted.release();
    other.release();

    const admitted = [];
    for (let i = 0; i < 5; i++)
      admitted.push(
        await rate.acquire(0).then(
          () => true,
          (e) => e.code,
        ),
      );
    assert.deepEqual(admitted, [true, true, true, 'ERR_VELO_RATE_LIMITED', 'ERR_VELO_RATE_LIMITED']);
    await a.setLimits({ concurrency: 2 });
    const two = [await a.acquire('t3'), await b.acquire('t3')];
    for (const p of two) p.release();

    // Every key of the limiter lives on the one master that owns its slot.
    const owners = [];
    for (const node of cluster.nodes) {
      const c = await node.client();
      owners.push((await c.sendCommand(['KEYS', `velo:lim:{${name}}*`])).length);
    }
    assert.equal(owners.filter((n) => n > 0).length, 1, `keys per master: ${owners}`);
  } finally {
    await a.close();
    await b.close();
    await rate.close();
  }
});
