// velo-stream/redis on a real Redis Cluster: three masters (redis-server --cluster-enabled yes on free ports,
// joined by redis-cli --cluster create, stopped by PID), node-redis createCluster clients. Producers, workers in
// child processes (with kill -9 and SIGSTOP of one), redisOutputs and redisMaterialize; the invariants are read
// from the masters through the Cluster client: every (sid, seq) once, per key in order, equal to a crash-free
// run, nothing pending. Before Cluster support every entry point failed here (a TypeError from the
// single-server sendCommand form, then CROSSSLOT on reads over many partitions).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { redisMaterialize, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedisCluster } from './helpers/redis-server.mjs';
import { killChild, lastStats, sender, stopChild, workerChild } from './helpers/redis-suite.mjs';
import { eventually, readAllOutputs, settled, totals } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 16;
let cluster;
let client;

before(async () => {
  cluster = await startRedisCluster(3);
  client = await cluster.client();
});
after(async () => {
  await cluster?.stop();
});

let names = 0;
const fresh = (what) => `${what}${++names}`;

/**
 * A worker child process on the cluster (the `totals` handler; see redis-worker-child.mjs). Its idle timeout is
 * longer than any pause in sending, takeovers included: each key is one session, as in a crash-free run.
 */
const worker = (name, delayMs = 1) =>
  workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle: 4000, delayMs, url: 'unused', extra: { cluster: cluster.urls } });
const owns = (child, n) => lastStats(child)?.owned.length === n;

/** The partitions whose input stream is on each master (KEYS on each node sees only its own slots). */
async function inputsPerMaster(name) {
  const counts = [];
  for (const node of cluster.nodes) {
    const c = await node.client();
    const keys = await c.sendCommand(['KEYS', `velo:{${name}:p*}`]);
    counts.push(keys.filter((k) => /^velo:\{[^}]+\}$/.test(k)).length);
  }
  return counts;
}

test('cluster: the partitions spread over the three masters; one worker, redisOutputs (plain and with a group) and redisMaterialize read every output once', async () => {
  const name = fresh('spread');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  await sender(producer, 40, sent)(400);
  const w = redisWorker(totals({ idleTimeout: 200 }), { client, name, partitions: PARTITIONS, leaseTtl: 3000 });
  try {
    await settled(client, name, PARTITIONS, sent, 200);
    const spread = await inputsPerMaster(name);
    assert.equal(spread.reduce((a, b) => a + b), PARTITIONS, `every partition's input is on one master: ${spread}`);
    assert.ok(spread.every((n) => n > 0), `each master holds partitions: ${spread}`);

    const written = await readAllOutputs(client, name, PARTITIONS);
    const ids = (items) => items.map((o) => `${o.sid}#${o.seq}`).sort();
    for (const options of [{}, { group: 'g', consumer: 'c1' }]) {
      const seen = [];
      for await (const item of redisOutputs({ client, name, partitions: PARTITIONS, ...options })) {
        seen.push(item);
        if (seen.length === written.length) break;
      }
      assert.deepEqual(ids(seen), ids(written), JSON.stringify(options));
    }

    const materializer = redisMaterialize({
      client,
      name,
      partitions: PARTITIONS,
      group: 'store',
      key: (output) => `store:{${output.key}}`,
      fields: (output) => ({ total: output.value.total }),
    });
    await eventually(() => materializer.stats().applied + materializer.stats().skipped === written.length, 'every output materialized', 30_000);
    await materializer.close();
    for (const [key, ns] of sent) {
      const total = ns.reduce((a, b) => a + b, 0);
      assert.equal(await client.hGet(`store:{${key}}`, 'total'), String(total), key);
    }
  } finally {
    await w.close();
  }
});

for (const fault of ['kill -9', 'SIGSTOP past its lease']) {
  test(`cluster: two workers, ${fault} of one mid-run: every (sid, seq) once, per key in order, equal to a crash-free run, nothing pending`, async () => {
    const name = fresh('fault');
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    const sent = new Map();
    const send = sender(producer, 30, sent);
    // A slow handler: the victim holds buffered events and unwritten outputs when it goes.
    const a = worker(name, 10);
    const b = worker(name, 1);
    try {
      await eventually(() => owns(a, PARTITIONS / 2) && owns(b, PARTITIONS / 2), 'A and B own half each', 30_000);
      await send(300);
      // A is mid-run: sessions of its partitions are live (read, pending) when it goes.
      await eventually(() => lastStats(a)?.outputs > 0 && lastStats(a)?.sessions > 0, 'A has live sessions');
      if (fault === 'kill -9') await killChild(a);
      else a.child.kill('SIGSTOP');
      await eventually(() => owns(b, PARTITIONS), 'B owns every partition', 30_000);
      await send(150);
      if (fault !== 'kill -9') {
        a.child.kill('SIGCONT');
        await eventually(() => lastStats(a)?.owned.length === 0 || owns(a, PARTITIONS / 2), 'A is back', 30_000);
      }
      await send(150);
      await settled(client, name, PARTITIONS, sent, 4000);
      if (fault !== 'kill -9') assert.ok((await stopChild(a)).lost > 0, 'A lost the partitions it held while stopped');
      const stats = await stopChild(b);
      assert.ok(stats.replayedSessions > 0, 'B replayed the sessions A left');
    } finally {
      for (const c of [a, b]) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    }
  });
}
