// Output retention (`outputRetention: 'acked'`, `outputMaxLen`): the owner trims its partitions' output streams
// to what every consumer group still needs, never an output a group has not acked (a slow group holds them, one
// that has not read them yet too); with no group nothing is trimmed; `outputMaxLen` caps the stream read or
// not. Under a long session with checkpoints and a group reader, both the input and the output stay bounded.
// The server's streams are made of nodes of 10 entries here (`stream-node-max-entries`), so the approximate
// trims (`~`, whole nodes) show on a few hundred outputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { checkpointTotals, eventually, expectedTotals, totals } from './helpers/redis-fixtures.mjs';

useRedis();

const NODE = 10;
const out = (name) => `velo:{${name}:p0}:out`;

/** An in-process worker of one partition that trims at each lease renewal (every 100 ms). */
function worker(fn, name, extra) {
  return redisWorker(fn, {
    client,
    name,
    partitions: 1,
    leaseTtl: 300,
    trimInterval: 1,
    onError: (error) => assert.fail(String(error)),
    ...extra,
  });
}

/** Waits until the worker has renewed its lease `n` more times (each renewal round trims). */
async function renewals(w, n) {
  const from = w.stats().renewals.count;
  await eventually(() => w.stats().renewals.count >= from + n, `${n} lease renewals`);
}

/** `count` entries read by `group` (consumer `c`) from the output stream, not acked: their ids and seqs. */
async function readGroup(name, group, count) {
  const reply = await client.xReadGroup(group, 'c', { key: out(name), id: '>' }, { COUNT: count });
  return (reply?.[0]?.messages ?? []).map((m) => ({ id: m.id, seq: Number(m.message.seq) }));
}

test("outputRetention 'acked' trims only outputs every group has acked: a slow group's pending and unread outputs stay until it acks them", async () => {
  await client.configSet('stream-node-max-entries', String(NODE));
  const name = fresh('acked');
  await client.xGroupCreate(out(name), 'fast', '0', { MKSTREAM: true });
  await client.xGroupCreate(out(name), 'slow', '0');
  const w = worker(totals(), name, { outputRetention: 'acked' });
  const producer = redisProducer({ client, name, partitions: 1 });
  try {
    const ns = Array.from({ length: 300 }, (_, i) => i);
    await producer.sendMany(ns.map((n) => ['k', { n }]));
    await eventually(async () => (await client.xLen(out(name))) === 300, 'every output');
    // The slow group reads 50 and acks the first 20: 30 pending, 250 unread. The fast one reads and acks all.
    const slow = await readGroup(name, 'slow', 50);
    await client.xAck(
      out(name),
      'slow',
      slow.slice(0, 20).map((e) => e.id),
    );
    const fast = await readGroup(name, 'fast', 1000);
    assert.equal(fast.length, 300);
    await client.xAck(
      out(name),
      'fast',
      fast.map((e) => e.id),
    );
    await eventually(() => w.stats().trimmedOutputs > 0, 'a trim up to the slow group');
    await renewals(w, 3);
    // Nothing from the slow group's oldest pending output on is gone; before it at most whole nodes went.
    const left = await client.xRange(out(name), '-', '+');
    assert.ok(left.length >= 300 - 20 && left.length <= 300 - 20 + NODE, `${left.length} outputs left`);
    assert.deepEqual(
      left.slice(-280).map((e) => e.id),
      slow
        .slice(20)
        .map((e) => e.id)
        .concat(fast.slice(50).map((e) => e.id)),
    );
    // The slow group acks what it holds and reads the rest: it gets every output it had not read, in order.
    await client.xAck(
      out(name),
      'slow',
      slow.slice(20).map((e) => e.id),
    );
    const rest = await readGroup(name, 'slow', 1000);
    assert.deepEqual(
      rest.map((e) => e.seq),
      ns.slice(50).map((n) => n + 1),
    );
    await client.xAck(
      out(name),
      'slow',
      rest.map((e) => e.id),
    );
    // Both groups have acked everything: all but the last node (and the entry the groups last read) go.
    await eventually(async () => (await client.xLen(out(name))) <= NODE, 'the outputs trimmed once every group acked them');
    assert.equal(w.stats().trimmedOutputs, 300 - (await client.xLen(out(name))));
  } finally {
    await w.close();
  }
});

test("outputRetention 'acked' trims nothing without a consumer group; outputMaxLen caps the stream, read or not", async () => {
  await client.configSet('stream-node-max-entries', String(NODE));
  const name = fresh('nogroup');
  const producer = redisProducer({ client, name, partitions: 1 });
  let w = worker(totals(), name, { outputRetention: 'acked' });
  try {
    await producer.sendMany(Array.from({ length: 200 }, (_, n) => ['k', { n }]));
    await eventually(async () => (await client.xLen(out(name))) === 200, 'every output');
    await renewals(w, 5);
    assert.equal(await client.xLen(out(name)), 200);
    assert.equal(w.stats().trimmedOutputs, 0);
  } finally {
    await w.close();
  }
  w = worker(totals(), name, { outputMaxLen: 50 });
  try {
    await eventually(async () => (await client.xLen(out(name))) <= 50 + NODE, 'the stream cut to about 50 outputs');
    const left = await client.xRange(out(name), '-', '+');
    assert.ok(left.length >= 50, `at least 50 kept (${left.length})`);
    // The newest are the ones kept.
    assert.equal(Number(left.at(-1).message.seq), 200);
  } finally {
    await w.close();
  }
});

test('outputRetention and outputMaxLen are checked at the call', () => {
  const fn = totals();
  assert.throws(() => redisWorker(fn, { client, name: 'x', outputRetention: 'none' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => redisWorker(fn, { client, name: 'x', outputMaxLen: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => redisWorker(fn, { client, name: 'x', outputMaxLen: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('a long session with checkpoints and a group reader: its input and its outputs both end bounded, and the reader got every output once, in order', async () => {
  await client.configSet('stream-node-max-entries', String(NODE));
  const name = fresh('long');
  const w = worker(checkpointTotals({}, 0, 100), name, { outputRetention: 'acked' });
  const producer = redisProducer({ client, name, partitions: 1 });
  const abort = new AbortController();
  const got = [];
  const reading = (async () => {
    for await (const o of redisOutputs({ client, name, partitions: 1, group: 'readers', signal: abort.signal })) got.push(o);
  })();
  try {
    const EVENTS = 5000;
    for (let n = 0; n < EVENTS; n += 250) {
      await producer.sendMany(Array.from({ length: 250 }, (_, i) => ['long', { n: n + i }]));
      await eventually(() => got.length >= n, 'the reader to keep up');
    }
    await eventually(() => got.length === EVENTS, 'every output read');
    assert.deepEqual(
      got.map((o) => o.value),
      expectedTotals(Array.from({ length: EVENTS }, (_, n) => n)),
    );
    assert.deepEqual(
      got.map((o) => o.seq),
      got.map((_, i) => i + 1),
    );
    // The session lives on: its input down to the events after its last checkpoint (it checkpoints every 100),
    // its outputs down to the reader's last node.
    await eventually(
      async () => (await client.xLen(`velo:{${name}:p0}`)) <= 1 && (await client.xLen(out(name))) <= NODE + 1,
      'the input and the outputs trimmed',
    );
    assert.ok(w.stats().trimmedOutputs >= EVENTS - NODE - 1);
    assert.equal(w.stats().sessions, 1);
  } finally {
    abort.abort();
    await reading;
    await w.close();
  }
});
