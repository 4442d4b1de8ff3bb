// A read that opens many sessions gives each new session's handler its first event before it opens the next ones
// (PartitionRun's dispatch waits a microtask after an opening: ReadPace.turn), on a private redis-server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from '../index.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';

useRedis();

test("a read's openings: each key's first event reaches its handler before the read's later keys open their sessions", async () => {
  const name = fresh('openings');
  const KEYS = 200;
  // One partition and a backlog of one event per key written before the worker starts: its first read takes them all.
  const producer = redisProducer({ client, name, partitions: 1 });
  await producer.sendMany(Array.from({ length: KEYS }, (_, i) => [`k${i}`, { n: i }]));
  let opened = 0;
  const behind = [];
  const fn = streamFn(
    async function* handler(events) {
      const mine = ++opened;
      for await (const e of events) {
        if (behind.length < KEYS) behind.push(opened - mine);
        yield e.n;
      }
    },
    { idleTimeout: 0 },
  );
  const worker = redisWorker(fn, { client, name, partitions: 1, readCount: 256, leaseTtl: 10_000 });
  try {
    await eventually(() => behind.length === KEYS, 'every first event');
    // Before: every handler got its first event once all 200 sessions had opened (behind up to 199).
    const most = Math.max(...behind);
    assert.ok(most < 16, `a first event waited behind ${most} later openings`);
  } finally {
    await worker.close();
  }
});
