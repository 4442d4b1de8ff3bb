// velo-stream/dashboard with a Redis worker (velo-stream/redis) on a private redis-server: the feed carries its
// partitions, lag per partition, sessions and round trips, and the sessions' function is shown like any other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { fnv1a, redisProducer, redisWorker } from 'velo-stream/redis';
import { dashboard } from 'velo-stream/dashboard';
import { firstSample as sample } from './helpers/dashboard-feed.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, totals, versionedTotals } from './helpers/redis-fixtures.mjs';

useRedis();

test('a Redis worker in the feed: partitions owned, lag per owned partition, sessions, round-trip p99; its sessions listed under its function', async () => {
  const name = fresh('dash');
  // Small buffers and a slow handler: most of the backlog waits in Redis for a while (a lag to see).
  const fn = totals({ idleTimeout: 5000, buffer: 2 }, 5);
  const producer = redisProducer({ client, name, partitions: 2 });
  const dash = dashboard({ functions: [fn] });
  const worker = redisWorker(fn, { client, name, partitions: 2, leaseTtl: 600, readCount: 5 });
  const server = http.createServer(dash);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/feed`;
  try {
    assert.throws(() => dashboard({ workers: [worker, { ...worker }] }), { code: 'ERR_INVALID_ARG_TYPE' });
    const withWorker = dashboard({ functions: [fn], workers: [worker, worker] });
    const server2 = http.createServer(withWorker);
    await new Promise((resolve) => server2.listen(0, '127.0.0.1', resolve));
    const url2 = `http://127.0.0.1:${server2.address().port}/feed`;
    try {
      await eventually(() => worker.stats().owned.length === 2, 'the worker owns both partitions');
      await producer.sendMany(Array.from({ length: 400 }, (_, i) => [`k${i % 4}`, { n: i }]));
      const seen = await eventually(async () => {
        const s = await sample(url2);
        return s.workers[0].lag > 0 ? s : null;
      }, 'a lag in the feed');
      await eventually(async () => (await sample(url2)).workers[0].sessions === 4, 'four sessions in the feed');
      assert.equal(seen.workers.length, 1, 'the same worker twice is one entry');
      const w = seen.workers[0];
      assert.equal(w.name, name);
      assert.equal(w.id, worker.id);
      assert.equal(w.backend, 'redis');
      assert.deepEqual(w.owned, [0, 1]);
      assert.deepEqual(Object.keys(w.partitionLag).sort(), ['0', '1']);
      assert.equal(w.partitionLag[0] + w.partitionLag[1], w.lag);
      assert.ok(w.roundTripP99Ms > 0);
      for (const key of ['held', 'buffered', 'waitingKeys', 'replayed', 'replayedSessions', 'fenced', 'lost', 'errors']) {
        assert.equal(typeof w[key], 'number', key);
      }
      // The sessions are streams of fn, listed as they open.
      const f = seen.functions[0];
      assert.equal(f.name, 'totals');
      assert.ok(f.open > 0 && f.oldest.length > 0, JSON.stringify(f));
    } finally {
      server2.closeAllConnections();
      await new Promise((resolve) => server2.close(resolve));
    }
  } finally {
    await worker.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("a Redis session's label: its sid with the key hidden (the first entry's id and the partition), the whole sid only with showKeys", async () => {
  const name = fresh('dashlabel');
  const fn = totals({ idleTimeout: 10_000, name: 'labelled' });
  const partitions = 4;
  const producer = redisProducer({ client, name, partitions });
  // Sessions open once events come: the dashboards list them from their creation on.
  const worker = redisWorker(fn, { client, name, partitions, leaseTtl: 600 });
  const dashboards = [
    dashboard({ functions: [fn], workers: [worker] }),
    dashboard({ functions: [fn] }),
    dashboard({ functions: [fn], showKeys: true }),
  ];
  const servers = [];
  try {
    const urls = [];
    for (const dash of dashboards) {
      const server = http.createServer(dash);
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      urls.push(`http://127.0.0.1:${server.address().port}/feed`);
    }
    const keys = ['alice@example.com', 'bob <b>'];
    const ids = await producer.sendMany(keys.map((k, i) => [k, { n: i }]));
    const labels = (url) =>
      eventually(async () => {
        const rows = (await sample(url)).functions[0].oldest;
        return rows.length === 2 ? rows.map((r) => r.label).sort() : null;
      }, 'both sessions listed');
    const withPartition = await labels(urls[0]);
    assert.deepEqual(withPartition, keys.map((k, i) => `…@${ids[i]} · p${fnv1a(k) % partitions}`).sort());
    // Without the worker among the dashboard's, the partition is not known: the entry id alone.
    const bare = await labels(urls[1]);
    assert.deepEqual(bare, ids.map((id) => `…@${id}`).sort());
    for (const label of [...withPartition, ...bare]) assert.doesNotMatch(label, /alice|bob/);
    // showKeys: the whole sid, `<key>@<first entry id>`.
    assert.deepEqual(await labels(urls[2]), keys.map((k, i) => `${k}@${ids[i]}`).sort());
  } finally {
    await worker.close();
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }
});

test('versions in the dashboard: each Redis worker shows its version and whether it is superseded; the fleet view counts workers per version and those superseded', async () => {
  const name = fresh('dashv');
  const fleet = fresh('fleetv');
  const v1 = redisWorker(versionedTotals('v1'), { client, name, partitions: 2, leaseTtl: 600, version: 'v1' });
  const v2 = redisWorker(versionedTotals('v2'), {
    client,
    name,
    partitions: 2,
    leaseTtl: 600,
    version: 'v2',
    versions: { v1: versionedTotals('v1') },
  });
  let dash;
  const server = http.createServer((req, res) => dash(req, res));
  try {
    dash = dashboard({ workers: [v1, v2], interval: 100, fleet: { client, name: fleet } });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${server.address().port}`;
    await eventually(() => v1.stats().superseded && v2.stats().owned.length === 2, 'v2 supersedes v1 and owns both partitions');
    const s = await eventually(async () => {
      const got = await sample(`${base}/feed`);
      return got.workers.find((w) => w.id === v1.id)?.superseded === true ? got : null;
    }, 'v1 superseded in the feed');
    const byId = new Map(s.workers.map((w) => [w.id, w]));
    assert.equal(byId.get(v1.id).version, 'v1');
    assert.equal(byId.get(v2.id).version, 'v2');
    assert.equal(byId.get(v2.id).superseded, false);
    assert.equal(typeof byId.get(v2.id).sessionsByVersion, 'object');
    const view = await eventually(async () => {
      const v = await (await fetch(`${base}/fleet`)).json();
      return v.workers[0]?.superseded === 1 ? v : null;
    }, 'the fleet view counts the superseded worker');
    assert.deepEqual(view.workers[0].versions, { v1: 1, v2: 1 });
  } finally {
    await dash?.close();
    await Promise.all([v1.close(), v2.close()]);
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
