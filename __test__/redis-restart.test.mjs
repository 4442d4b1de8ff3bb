// redis-server restarts under a running worker: with an append-only file
// (fsync always) nothing is lost and nothing is duplicated; without
// persistence the worker reports the data loss with a clear error
// (ERR_VELO_LOG_RESET) and goes on with what is sent after it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis } from './helpers/redis-server.mjs';
import { checkOutputs, eventually, expectedTotals, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 4;

async function scenario(aof, check, beforeRestart = async () => ({})) {
  const redis = await startRedis({ aof });
  const errors = [];
  let worker;
  try {
    const client = await redis.client();
    const name = 'restart';
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    worker = redisWorker(totals({ idleTimeout: 3000 }, 2), {
      client,
      name,
      partitions: PARTITIONS,
      leaseTtl: 1000,
      onError: (error) => errors.push(error),
    });
    await eventually(() => worker.stats().owned.length === PARTITIONS, 'the worker owns every partition');
    const sent = new Map();
    const send = async (from, to) => {
      const pairs = [];
      for (let i = from; i < to; i++) {
        const key = `k${i % 10}`;
        sent.set(key, [...(sent.get(key) ?? []), i]);
        pairs.push([key, { n: i }]);
      }
      await producer.sendMany(pairs);
    };
    await send(0, 100);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length >= 20, 'some outputs');
    const more = await beforeRestart({ client, name });
    await redis.restart();
    await check({ client, name, send, sent, errors, worker, ...more });
  } finally {
    await worker?.close();
    await redis.stop();
  }
}

test('restart with AOF: the worker reconnects and goes on; outputs once each, as without the restart', async () => {
  await scenario(true, async ({ client, name, send, sent, errors }) => {
    await send(100, 200);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === 200, '200 outputs', 30_000);
    await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0, 'nothing pending', 30_000);
    checkOutputs(await readAllOutputs(client, name, PARTITIONS), new Map([...sent].map(([k, ns]) => [k, expectedTotals(ns)])));
    assert.deepEqual(
      errors.filter((e) => e.code === 'ERR_VELO_LOG_RESET'),
      [],
      'no data loss reported',
    );
    // The lost connections reached onError with the library's code, the client's error as the cause.
    // Every error reported has a code of the library's (a server still loading its data answers LOADING: that too).
    assert.deepEqual(
      errors.filter((e) => typeof e.code !== 'string').map((e) => e.message),
      [],
      'errors without a code',
    );
    const lost = errors.filter((e) => e.code === 'ERR_VELO_REDIS_CONNECTION');
    assert.ok(lost.length > 0, `connection errors reported: ${errors.map((e) => e.code ?? e.message).join(', ')}`);
    for (const e of lost) {
      assert.equal(e.name, 'RedisConnectionError');
      assert.ok(e.cause instanceof Error, 'the client error is its cause');
    }
  });
});

test('restart with AOF: redisOutputs loops (plain and with a group) go on across it, each output once', async () => {
  // Before, a read lost with its connection ended the loop with the client's 'Socket closed unexpectedly'.
  const controller = new AbortController();
  const collect = (client, name, group) => {
    const items = [];
    const done = (async () => {
      for await (const item of redisOutputs({ client, name, partitions: PARTITIONS, group, signal: controller.signal }))
        items.push(item);
    })();
    return { items, done };
  };
  await scenario(
    true,
    async ({ client, name, send, sent, plain, grouped }) => {
      await send(100, 200);
      try {
        await eventually(() => plain.items.length >= 200 && grouped.items.length >= 200, 'both loops read 200 outputs', 30_000);
      } finally {
        controller.abort();
      }
      await plain.done;
      await grouped.done;
      const expected = new Map([...sent].map(([k, ns]) => [k, expectedTotals(ns)]));
      for (const { items } of [plain, grouped]) {
        const outputs = items.map((i) => ({ sid: i.sid, seq: i.seq, key: i.key, value: i.value }));
        checkOutputs(outputs, expected);
      }
    },
    async ({ client, name }) => {
      const loops = { plain: collect(client, name), grouped: collect(client, name, 'g') };
      // Both loops are reading (past their set-up) when the server goes down.
      await eventually(() => loops.plain.items.length > 0 && loops.grouped.items.length > 0, 'both loops reading');
      return loops;
    },
  );
});

test('restart without persistence: ERR_VELO_LOG_RESET naming the cause, then events sent afterwards are served', async () => {
  await scenario(false, async ({ client, name, send, errors }) => {
    await eventually(() => errors.some((e) => e.code === 'ERR_VELO_LOG_RESET'), 'the data loss reported', 30_000);
    const reset = errors.find((e) => e.code === 'ERR_VELO_LOG_RESET');
    assert.match(reset.message, /the Redis server lost data \(a restart without persistence/);
    // Two epochs, named as what they are (it read "went back from 1 to 1" when the epoch started over at 1).
    assert.match(reset.message, /did not grow \(it was \d+ when this worker last held the partition, and is \d+ now\)/);
    const before = (await readAllOutputs(client, name, PARTITIONS)).length;
    assert.equal(before, 0, 'the server has nothing from before');
    await send(200, 240);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === 40, 'the new events served', 30_000);
  });
});

test('restart without persistence: a redisOutputs loop with a group makes its group again and goes on with what is written afterwards', async () => {
  // The group went with the data: its reads answered NOGROUP, which ended the loop with node-redis' own error.
  const controller = new AbortController();
  let grouped;
  await scenario(
    false,
    async ({ send, errors }) => {
      await eventually(() => errors.some((e) => e.code === 'ERR_VELO_LOG_RESET'), 'the data loss reported', 30_000);
      const before = grouped.items.length;
      await send(200, 240);
      try {
        await eventually(
          () => grouped.items.length === before + 40 || grouped.failed !== undefined,
          'the new outputs read',
          30_000,
        );
      } finally {
        controller.abort();
      }
      await grouped.done;
      assert.equal(grouped.failed, undefined, `the loop ended with ${grouped.failed?.message}`);
      const after = grouped.items.slice(before).map((i) => i.value);
      assert.equal(after.length, 40);
    },
    async ({ client, name }) => {
      const items = [];
      grouped = { items, failed: undefined };
      grouped.done = (async () => {
        for await (const item of redisOutputs({ client, name, partitions: PARTITIONS, group: 'g', signal: controller.signal }))
          items.push(item);
      })().catch((error) => (grouped.failed = error));
      await eventually(() => items.length > 0, 'the loop reading');
      return {};
    },
  );
});
