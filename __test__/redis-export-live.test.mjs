// An export taken while a worker runs (exportRecording reads a partition in several commands): the worker goes on
// between its reads. A session that began, and wrote outputs, while the export read the outputs is recorded as live,
// so replaying the recorded handler finds no difference, with and without checkReplay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportRecording, redisProducer, redisWorker } from 'velo-stream/redis';
import { replayRecording } from 'velo-stream/testing';
import { longerIdle } from './fixtures/replay-handlers.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';

useRedis();

/**
 * A client for the export on which, when it first reads the output stream, the worker handles `before` first (its
 * output committed), and `after` once that read is answered: the worker's progress between the export's reads.
 */
function racingClient(name, worker, before, after) {
  const producer = redisProducer({ client, name, partitions: 1 });
  const handled = async (pairs) => {
    const outputs = worker.stats().outputs;
    await producer.sendMany(pairs);
    await eventually(async () => worker.stats().outputs >= outputs + pairs.length, 'the worker committed its outputs');
  };
  let raced = false;
  const racing = Object.create(client);
  racing.sendCommand = async (args, options) => {
    const first = !raced && args[0] === 'XRANGE' && String(args[1]).endsWith(':out');
    if (first) {
      raced = true;
      await handled(before);
    }
    const reply = await client.sendCommand(args, options);
    if (first) await handled(after);
    return reply;
  };
  return racing;
}

for (const checkReplay of [false, true]) {
  test(`checkReplay ${checkReplay}: a session begun while the export read the outputs is recorded as live; the recorded handler replays with no difference`, async () => {
    const name = fresh(`race-${checkReplay}`);
    const worker = redisWorker(longerIdle, { client, name, partitions: 1, leaseTtl: 2000, trimInterval: 0, checkReplay });
    try {
      const producer = redisProducer({ client, name, partitions: 1 });
      // Without checkReplay, a session live before the export; with it, none: nothing tells the export that ends are kept.
      if (!checkReplay) {
        await producer.sendMany([['ada', { item: 'book', price: 10 }]]);
        await eventually(async () => worker.stats().outputs === 1, 'ada answered');
      }
      const racing = racingClient(name, worker, [['bob', { item: 'pen', price: 2 }]], [['bob', { item: 'cup', price: 3 }]]);
      const recording = await exportRecording({ client: racing, name, partitions: 1 });
      const [part] = recording.parts;
      const bob = part.outputs.filter((o) => o.key === 'bob');
      assert.equal(bob.length, 1, "bob's first output is recorded, his second is not");
      assert.ok(part.live.includes(bob[0].sid) || part.endsKept, 'bob is live in the recording');
      assert.equal(part.input.filter((e) => e.key === 'bob').length, 2, 'both of his events are in the input read');
      const report = await replayRecording(longerIdle, recording);
      assert.deepEqual(report.differences, []);
      assert.equal(report.ok, true);
    } finally {
      await worker.close();
    }
  });
}
