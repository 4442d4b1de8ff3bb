// Resumable client streams under faults: an EventSource (the `eventsource` package) behind a proxy that cuts its
// connection at seeded random points (in the headers, in the middle of an event), a worker killed -9 mid-stream
// and replaced, the reader's own Redis connection cut and healed, and a server process that must end by itself
// once its clients have left. Each run counts what the client got: every output of the key exactly once, in
// order, and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { fileURLToPath } from 'node:url';
import { start } from './helpers/child.mjs';
import { client, fresh, killChild, lastStats, redis, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, expectedTotals, totals } from './helpers/redis-fixtures.mjs';
import { startProxy } from './helpers/tcp-proxy.mjs';
import { cuttingProxy, follow, keyServer, redisConnections, rng, until } from './helpers/resume.mjs';

useRedis();

const PARTITIONS = 4;
const range = (from, n) => Array.from({ length: n }, (_, i) => from + i);

/** Sends `ns` to `key` in rounds of `size`, each round with an event for each of `noise` keys, `pause` ms apart. */
async function trickle(producer, key, noise, ns, size, pause) {
  for (let i = 0; i < ns.length; i += size) {
    const batch = [];
    for (const n of ns.slice(i, i + size)) {
      for (const other of noise) batch.push([other, { n: 10_000 + n }]);
      batch.push([key, { n }]);
    }
    await producer.sendMany(batch);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/** Checks that `state` got exactly the totals of `ns`, in order, each with its own id. */
function exactlyOnce(state, ns, what) {
  const got = state.messages.map((m) => m.data);
  const expected = expectedTotals(ns);
  if (got.length !== expected.length || JSON.stringify(got) !== JSON.stringify(expected)) {
    const counts = new Map();
    for (const m of got) counts.set(m.n, (counts.get(m.n) ?? 0) + 1);
    const repeated = [...counts].filter(([, c]) => c > 1).map(([n]) => n);
    const missing = ns.filter((n) => !counts.has(n));
    assert.fail(
      `${what}: ${got.length} messages for ${expected.length} outputs; repeated ${JSON.stringify(repeated)}, missing ${JSON.stringify(missing)}`,
    );
  }
  assert.equal(new Set(state.messages.map((m) => m.id)).size, got.length, `${what}: one id per message`);
}

for (const seed of [11, 29, 1234]) {
  test(`SSE through a proxy that cuts every connection at a random byte (seed ${seed}): the EventSource reconnects with Last-Event-ID, and gets every output once, in order`, async (t) => {
    const name = fresh('cut');
    const key = 'stream';
    const w = redisWorker(totals({ idleTimeout: 60_000 }, 2), {
      client,
      name,
      partitions: PARTITIONS,
      onError: (error) => assert.fail(String(error)),
    });
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    const server = await keyServer({ client, name, partitions: PARTITIONS, retry: 5, heartbeat: 0 });
    const proxy = await cuttingProxy(server.port, rng(seed));
    const f = follow(`${proxy.url}/sse/${key}`);
    try {
      const ns = range(0, 150);
      await trickle(producer, key, ['noise-a', 'noise-b'], ns, 10, 20);
      await until(
        () => f.state.messages.length >= 150,
        '150 messages',
        60_000,
        () => `seed ${seed}: ${f.state.messages.length} so far`,
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      exactlyOnce(f.state, ns, `seed ${seed}`);
      t.diagnostic(
        `seed ${seed}: ${proxy.counts.cuts} cuts, ${f.state.opens} responses opened, ${f.state.messages.length} messages`,
      );
      assert.ok(proxy.counts.cuts >= 5, `seed ${seed}: only ${proxy.counts.cuts} cuts`);
      assert.ok(f.state.opens >= 5, `seed ${seed}: only ${f.state.opens} responses`);
    } finally {
      f.close();
      await proxy.close();
      await server.close();
      await w.close();
    }
  });
}

test('a worker killed -9 mid-stream (its connection also cut at random points, seed 77): the next owner replays the session, and the client still gets every output once, in order; exit codes and stderr checked', async (t) => {
  const name = fresh('kill');
  const key = 'llm';
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const server = await keyServer({ client, name, partitions: PARTITIONS, retry: 5, heartbeat: 0 });
  const proxy = await cuttingProxy(server.port, rng(77), { min: 400, max: 4000 });
  const f = follow(`${proxy.url}/sse/${key}`);
  const first = workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle: 60_000, delayMs: 15 });
  let second;
  try {
    await eventually(() => lastStats(first)?.owned.length === PARTITIONS, 'the first worker owns every partition');
    const ns = range(0, 120);
    await producer.sendMany(ns.map((n) => [key, { n }]).concat(ns.map((n) => ['other', { n }])));
    await until(() => f.state.messages.length >= 40, '40 messages before the kill', 30_000);
    await killChild(first);
    const atKill = f.state.messages.length;
    second = workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle: 60_000, delayMs: 1 });
    await until(
      () => f.state.messages.length >= 120,
      'the 120 messages',
      60_000,
      () => `${f.state.messages.length} so far`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    exactlyOnce(f.state, ns, 'across the kill');
    const stats = lastStats(second);
    assert.ok(stats.replayed > 0, `the new owner replayed the live session's input (${stats.replayed} entries)`);
    t.diagnostic(
      `killed at message ${atKill}; the new owner replayed ${stats.replayed} entries; ${proxy.counts.cuts} cuts, ${f.state.opens} responses`,
    );
    assert.ok(atKill < 120, 'the kill came mid-stream');
    const closed = await stopChild(second);
    assert.equal(closed.owned.length, 0);
  } finally {
    f.close();
    if (first.child.exitCode === null && first.child.signalCode === null) first.child.kill('SIGKILL');
    if (second && second.child.exitCode === null && second.child.signalCode === null) second.child.kill('SIGKILL');
    await proxy.close();
    await server.close();
  }
});

test("the reader's own Redis connection cut mid-stream, and new ones refused for a while: it reconnects and goes on from its position; the client gets every output once, in order, on one response", async () => {
  const name = fresh('conn');
  const key = 'k';
  const w = redisWorker(totals({ idleTimeout: 60_000 }, 5), {
    client,
    name,
    partitions: PARTITIONS,
    onError: (error) => assert.fail(String(error)),
  });
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const tcp = await startProxy(redis.port);
  const viaProxy = createClient({ url: tcp.url });
  viaProxy.on('error', () => {});
  await viaProxy.connect();
  const server = await keyServer({ client: viaProxy, name, partitions: PARTITIONS, heartbeat: 0 });
  const f = follow(`${server.url}/sse/${key}`);
  try {
    const ns = range(0, 100);
    const sending = producer.sendMany(ns.map((n) => [key, { n }]));
    for (const at of [20, 50, 80]) {
      await until(() => f.state.messages.length >= at, `${at} messages`);
      tcp.cut();
      await new Promise((resolve) => setTimeout(resolve, 300));
      tcp.heal();
    }
    await sending;
    await until(
      () => f.state.messages.length >= 100,
      'the 100 messages',
      30_000,
      () => `${f.state.messages.length} so far`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    exactlyOnce(f.state, ns, 'across three cuts');
    assert.equal(f.state.opens, 1, 'the response stayed open: the reader reconnected by itself');
    assert.ok(tcp.stats().refused > 0 || tcp.stats().accepted >= 4, JSON.stringify(tcp.stats()));
  } finally {
    f.close();
    await server.close();
    viaProxy.destroy();
    await tcp.stop();
    await w.close();
  }
});

test('a server process whose clients left (one after an output, one while its reader waited) ends by itself once it closes its HTTP server and Redis client: redisSse leaves no reader, timer or connection behind', async () => {
  const name = fresh('exit');
  const w = redisWorker(totals({ idleTimeout: 60_000 }), {
    client,
    name,
    partitions: PARTITIONS,
    onError: (error) => assert.fail(String(error)),
  });
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const child = start(
    [fileURLToPath(new URL('./helpers/resume-server-child.mjs', import.meta.url)), redis.url, name, String(PARTITIONS)],
    {
      timeout: 30_000,
    },
  );
  try {
    await eventually(() => w.stats().owned.length === PARTITIONS, 'the worker owns every partition');
    const port = Number((await child.waitFor(/^listening (\d+)$/m))[1]);
    const before = await redisConnections(client);
    const a = follow(`http://127.0.0.1:${port}/sse/a`);
    const b = follow(`http://127.0.0.1:${port}/sse/b`);
    await until(() => a.state.opens === 1 && b.state.opens === 1, 'both responses open');
    await until(async () => (await redisConnections(client)) === before + 2, "the two readers' connections");
    await producer.send('a', { n: 5 });
    await until(() => a.state.messages.length === 1, "a's output");
    a.close();
    // b's reader is waiting for an output that never comes; b leaves (heartbeats went by meanwhile).
    await new Promise((resolve) => setTimeout(resolve, 500));
    b.close();
    await until(async () => (await redisConnections(client)) === before, 'both readers closed their connections', 5000);
    child.child.stdin.end();
    const { stdout } = await child.finished();
    assert.match(stdout, /^closed 2$/m);
    assert.doesNotMatch(stdout, /redis error/);
  } finally {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
    await w.close();
  }
});
