// A session that never ends beside short ones on one partition. With checkpoints the partition's input is
// trimmed to the oldest entry a session still needs, so its length stays bounded however long the session
// lives, and what trimming removes is never needed (a kill -9 and a replay in between give the outputs of a
// crash-free run). Without checkpoints the long session pins every entry of the partition since it began, and
// stats() show how old the oldest pinned entry is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { redisProducer } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, expectedTotals, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

const ROUNDS = 40;
/** Short sessions per round, 2 events each then a stop. */
const SHORT = 3;

const xlen = () => client.xLen(`velo:{${currentName}:p0}`);
let currentName = '';

/** Sends round `r`: 10 events of the long session, and SHORT short sessions of their own (2 events, then a stop). */
async function round(producer, r, sent) {
  const batch = [];
  for (let i = 0; i < 10; i++) {
    const n = r * 10 + i;
    sent.get('long').push(n);
    batch.push(['long', { n }]);
  }
  for (let s = 0; s < SHORT; s++) {
    const key = `short${r}-${s}`;
    sent.set(key, [1, 2]);
    batch.push([key, { n: 1 }], [key, { n: 2 }], [key, { n: 0, stop: true }]);
  }
  await producer.sendMany(batch);
  await new Promise((resolve) => setTimeout(resolve, 10));
}

const start = (name, handler) =>
  workerChild(name, { partitions: 1, ttl: 900, idle: 60_000, delayMs: 0, trimInterval: 1, extra: { handler, every: 10 } });

test('with checkpoints, the input is trimmed past a session that never ends to the oldest entry still needed, also across a kill -9: the outputs equal a crash-free run', async () => {
  const name = (currentName = fresh('long'));
  const producer = redisProducer({ client, name, partitions: 1 });
  const sent = new Map([['long', []]]);
  let w = start(name, 'ckpt');
  const workers = [w];
  try {
    await eventually(() => lastStats(w)?.owned.length === 1, 'the worker owns the partition');
    for (let r = 0; r < ROUNDS; r++) {
      if (r === ROUNDS / 2) {
        await killChild(w);
        w = start(name, 'ckpt');
        workers.push(w);
        await eventually(() => lastStats(w)?.owned.length === 1, 'the next worker owns the partition', 30_000);
      }
      await round(producer, r, sent);
    }
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === ROUNDS * (10 + SHORT * 2), 'every output');
    // All that stays, with the long session still live: its events after its last checkpoint (it checkpoints
    // every 10, and its 400 events end at one). (How long the input grew meanwhile depends on how far the
    // sends ran ahead of the trims, which come at lease renewals: not asserted, it is timing.)
    await eventually(async () => (await pendingCount(client, name, 1)) === 0 && (await xlen()) <= 1, 'the input trimmed to what the long session needs', 30_000);
    const outputs = await readAllOutputs(client, name, 1);
    for (const [key, ns] of sent) {
      const mine = outputs.filter((o) => o.key === key);
      assert.equal(new Set(mine.map((o) => o.sid)).size, 1, `${key}: one session`);
      assert.deepEqual(mine.map((o) => o.seq), mine.map((_, i) => i + 1), key);
      assert.deepEqual(mine.map((o) => o.value), expectedTotals(ns), key);
    }
    // (Measured at each lease renewal: the next measure after the last ack.)
    await eventually(() => lastStats(w).pinnedAge === 0, 'nothing pinned');
    await stopChild(w);
  } finally {
    for (const c of workers) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  }
});

test('without checkpoints, a session that never ends pins every entry of its partition since it began, and stats() show the oldest pinned entry\'s age', async () => {
  const name = (currentName = fresh('pinned'));
  const producer = redisProducer({ client, name, partitions: 1 });
  const sent = new Map([['long', []]]);
  const w = start(name, 'totals');
  try {
    await eventually(() => lastStats(w)?.owned.length === 1, 'the worker owns the partition');
    for (let r = 0; r < ROUNDS; r++) await round(producer, r, sent);
    const entries = ROUNDS * (10 + SHORT * 3);
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === ROUNDS * (10 + SHORT * 2), 'every output');
    // Short sessions ended (their entries acked), trims ran, and every entry since the long session's first stays.
    await eventually(async () => (await pendingCount(client, name, 1)) === ROUNDS * 10, 'only the long session pending');
    const first = await eventually(() => lastStats(w).trimmed === 0 && lastStats(w).pinnedAge > 0 && lastStats(w), 'a measure');
    assert.equal(await xlen(), entries, 'nothing trimmed');
    const age = first.partitionPinnedAge[0];
    assert.ok(age > 0 && age === first.pinnedAge);
    await eventually(() => lastStats(w).partitionPinnedAge[0] > age, 'the age grows');
    await stopChild(w);
  } finally {
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  }
});

test('the end of a session of 300,000 events without checkpoints: its commit acks them all in one call (it overflowed the stack before)', async () => {
  const { RedisLog, KeySpace } = createRequire(import.meta.url)('../dist/redis/log/redis-log.js');
  const name = fresh('acks');
  const log = new RedisLog(client, new KeySpace(name), 1, (error) => assert.fail(error));
  const lease = await log.acquire(0, 'w', 5000);
  const acks = Array.from({ length: 300_000 }, (_, i) => `1-${i}`);
  await log.commit(lease, { outputs: [], acks, ended: ['k@1-0'] });
  await log.close();
});
