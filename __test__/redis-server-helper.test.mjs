// The Redis tests' server helper starts the server it says it starts: redis-server from PATH, or
// $VELO_REDIS_SERVER (npm run test:valkey sets it to a valkey-server, and $VELO_REDIS_EXPECT to `valkey`), a
// single server and the nodes of a Cluster alike. So a run of the Redis suites "against Valkey" cannot pass
// against a redis-server that happened to be on PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverVersion, startRedis, startRedisCluster } from './helpers/redis-server.mjs';

/** The server's own account of itself (INFO server): { name, version }. Valkey names itself and keeps redis_version at 7.2.4. */
async function identify(client) {
  const info = String(await client.sendCommand(['INFO', 'server']));
  const field = (name) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1].trim();
  const valkey = field('valkey_version');
  return valkey ? { name: 'valkey', version: valkey } : { name: 'redis', version: field('redis_version') };
}

const expected = serverVersion();

test('the server the helper names is the one that runs, and the one the run asked for', async () => {
  if (process.env.VELO_REDIS_EXPECT) assert.equal(expected.name, process.env.VELO_REDIS_EXPECT, `VELO_REDIS_EXPECT: ${expected.text}`);
  else assert.equal(expected.name, process.env.VELO_REDIS_SERVER ? expected.name : 'redis', 'redis-server from PATH without VELO_REDIS_SERVER');
  const redis = await startRedis();
  try {
    assert.deepEqual(await identify(await redis.client()), { name: expected.name, version: expected.version });
  } finally {
    await redis.stop();
  }
});

test('a Cluster is made of that server too', async () => {
  const cluster = await startRedisCluster(3);
  try {
    for (const node of cluster.nodes) {
      assert.deepEqual(await identify(await node.client()), { name: expected.name, version: expected.version });
    }
    const c = await cluster.client();
    await c.set('{a}x', '1');
    assert.equal(await c.get('{a}x'), '1');
  } finally {
    await cluster.stop();
  }
});
