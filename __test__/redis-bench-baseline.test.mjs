// The naive baseline of `npm run bench:redis` (bench/redis/naive.mjs: a Redis
// stream per session, all named in one XREAD) computes what velo-stream's
// sessions compute: the ratio against it assumes it does the same work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { naiveConsumer, naiveKeys, naiveSend } from '../bench/redis/naive.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, expectedTotals } from './helpers/redis-fixtures.mjs';

useRedis();


test('naive baseline: a backlog and live events over many sessions, read a few per stream per XREAD: every output once, in order, the running totals', async () => {
  const name = fresh('naive');
  const sessionKeys = Array.from({ length: 50 }, (_, i) => `k${i}`);
  const sent = new Map(sessionKeys.map((k) => [k, []]));
  let n = 0;
  const batch = (count) =>
    Array.from({ length: count }, () => {
      const key = sessionKeys[(n * 7) % sessionKeys.length];
      sent.get(key).push(n);
      return [key, { n: n++ }];
    });
  // A backlog first (more per stream than COUNT: several reads), then events while the consumer blocks.
  await naiveSend(client, name, batch(1000));
  const seen = [];
  const consumer = naiveConsumer(client, {
    name,
    sessionKeys,
    handle: (total, e) => {
      const next = (total ?? 0) + e.n;
      return [next, { n: e.n, total: next }];
    },
    onEvent: (e) => seen.push(e.n),
    count: 3,
    block: 100,
  });
  try {
    await eventually(() => consumer.stats().outputs === 1000, 'the backlog handled');
    await naiveSend(client, name, batch(500));
    await new Promise((resolve) => setTimeout(resolve, 150));
    await naiveSend(client, name, batch(500));
    await eventually(() => consumer.stats().outputs === 2000, 'the live events handled');
  } finally {
    await consumer.stop();
  }
  assert.ok(consumer.stats().reads > 1000 / (3 * 50), 'several reads: COUNT bounds each');
  assert.equal(seen.length, 2000);
  assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: 2000 }, (_, i) => i), 'every event once');
  const out = await client.xRange(naiveKeys(name).output, '-', '+');
  assert.equal(out.length, 2000, 'an output written per event');
  const byKey = new Map();
  for (const { message } of out) {
    if (!byKey.has(message.k)) byKey.set(message.k, []);
    byKey.get(message.k).push(JSON.parse(message.v));
  }
  for (const [key, ns] of sent) {
    const expected = expectedTotals(ns).map(({ n, total }) => ({ n, total }));
    assert.deepEqual(byKey.get(key), expected, `${key}: its running totals, in order`);
  }
});
