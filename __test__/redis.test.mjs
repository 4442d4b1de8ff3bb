// velo-stream/redis against a private redis-server: producers, one worker in
// this process, the output reader. Fault scenarios with worker processes are
// in redis-faults.test.mjs.
import { test } from 'node:test';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import {
  SendError,
  bufferCodec,
  fnv1a,
  jsonCodec,
  redisMaterialize,
  redisOutputs,
  redisProducer,
  redisWorker,
} from 'velo-stream/redis';
import { client, fresh, redis, useRedis } from './helpers/redis-suite.mjs';
import { prng } from '../bench/prng.mjs';
import { checkOutputs, eventually, expectedTotals, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

const require = createRequire(import.meta.url);
useRedis();

test('send() appends to the key partition stream with a hash tag, and resolves with the entry id', async () => {
  const name = fresh('send');
  const producer = redisProducer({ client, name, partitions: 8 });
  const p = producer.partitionOf('user-1');
  assert.equal(p, fnv1a('user-1') % 8);
  // FNV-1a 32 of "a" (the published test vector).
  assert.equal(fnv1a('a'), 0xe40c292c);
  const id = await producer.send('user-1', { n: 1, tags: ['x'] });
  const entries = await client.xRange(`velo:{${name}:p${p}}`, '-', '+');
  assert.deepEqual(entries, [{ id, message: { k: 'user-1', v: '{"n":1,"tags":["x"]}' } }]);
});

test('sendMany() keeps the order per key, one call per partition, ids in the order given', async () => {
  const name = fresh('many');
  const producer = redisProducer({ client, name, partitions: 4 });
  const pairs = [];
  for (let i = 0; i < 600; i++) pairs.push([`k${i % 7}`, { n: i }]);
  const ids = await producer.sendMany(pairs);
  assert.equal(ids.length, 600);
  for (let p = 0; p < 4; p++) {
    const entries = await client.xRange(`velo:{${name}:p${p}}`, '-', '+');
    // Entry ids are unique within a stream only.
    const mine = ids.flatMap((id, i) => (producer.partitionOf(pairs[i][0]) === p ? [[id, i]] : []));
    assert.deepEqual(
      entries.map((e) => e.id),
      mine.map(([id]) => id),
      `partition ${p}: the ids returned, in order`,
    );
    for (const [j, { message }] of entries.entries()) {
      const i = mine[j][1];
      assert.equal(message.k, pairs[i][0]);
      assert.equal(p, producer.partitionOf(message.k));
      assert.deepEqual(JSON.parse(message.v), pairs[i][1]);
    }
    const perKey = new Map();
    for (const { message } of entries) {
      const n = JSON.parse(message.v).n;
      assert.ok((perKey.get(message.k) ?? -1) < n, 'per key in order');
      perKey.set(message.k, n);
    }
  }
});

test('send() and sendMany() of a value JSON cannot carry: the message names the call and the key', async () => {
  const producer = redisProducer({ client, name: fresh('undef'), partitions: 2 });
  await assert.rejects(producer.send('cart-7', undefined), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: 'Could not encode the event of send() for key "cart-7": JSON cannot carry the value undefined',
  });
  await assert.rejects(
    producer.sendMany([
      ['a', 1],
      ['cart-8', () => {}],
    ]),
    {
      code: 'ERR_INVALID_ARG_VALUE',
      message: 'Could not encode the event of sendMany() for key "cart-8": JSON cannot carry the value function',
    },
  );
  // A BigInt stays the codec's failure to encode.
  await assert.rejects(producer.send('cart-9', 1n), { code: 'ERR_VELO_ENCODE', message: /event of send\(\) for key "cart-9"/ });
});

test('jsonCodec carries Buffers anywhere in a value; bufferCodec carries raw bytes', () => {
  const value = { a: Buffer.from([0, 255, 7]), b: [new Uint8Array([1, 2])], c: 'x' };
  const decoded = jsonCodec.decode(Buffer.from(jsonCodec.encode(value)));
  assert.deepEqual(decoded, { a: Buffer.from([0, 255, 7]), b: [Buffer.from([1, 2])], c: 'x' });
  assert.ok(Buffer.isBuffer(decoded.a));
  assert.deepEqual(bufferCodec.decode(Buffer.from(bufferCodec.encode(new Uint8Array([9, 8])))), Buffer.from([9, 8]));
  assert.throws(() => bufferCodec.encode({}), { code: 'ERR_INVALID_ARG_VALUE' });
  // Values JSON has no text for, each named as it is.
  assert.throws(() => jsonCodec.encode(undefined), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: 'JSON cannot carry the value undefined',
  });
  assert.throws(() => jsonCodec.encode(() => {}), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: 'JSON cannot carry the value function',
  });
  assert.throws(() => jsonCodec.encode({ toJSON: () => undefined }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /its toJSON\(\) gave undefined/,
  });
});

test('jsonCodec: values without bytes take plain JSON and the result is the same as the careful path (randomized, seeded)', () => {
  // The careful path, as a reference: a replacer and a reviver for every value.
  const TAG = '$velo:buffer';
  const reference = {
    encode: (value) =>
      JSON.stringify(value, function (key, converted) {
        const raw = this[key];
        return raw instanceof Uint8Array
          ? { [TAG]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') }
          : converted;
      }),
    decode: (data) =>
      JSON.parse(data.toString('utf8'), (_key, value) =>
        value !== null &&
        typeof value === 'object' &&
        !Array.isArray(value) &&
        typeof value[TAG] === 'string' &&
        Object.keys(value).length === 1
          ? Buffer.from(value[TAG], 'base64')
          : value,
      ),
  };
  const random = prng(13);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const leaf = () =>
    pick([
      () => Math.floor(random() * 1000) - 500,
      () => random(),
      () => pick(['', 'text', 'with "$velo:buffer" inside', '\u00e9\u{1F600}', 'a\nb']),
      () => random() < 0.5,
      () => null,
      () => Buffer.from([Math.floor(random() * 256), 1, 2]),
      () => new Uint8Array([9, Math.floor(random() * 256)]),
      () => new Date(1_700_000_000_000 + Math.floor(random() * 1e9)),
      () => ({ [TAG]: 'AAEC' }),
    ])();
  const value = (depth) => {
    if (depth > 3 || random() < 0.3) return leaf();
    if (random() < 0.4) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
    const out = {};
    for (let i = Math.floor(random() * 4); i > 0; i--) out[pick(['a', 'b', 'n', TAG, 'long key'])] = value(depth + 1);
    return out;
  };
  // Deeper than the scan looks (it then takes the careful path).
  let deep = { x: Buffer.from([1]) };
  for (let i = 0; i < 80; i++) deep = { d: deep };
  let plainDeep = { x: 1 };
  for (let i = 0; i < 80; i++) plainDeep = [plainDeep];
  const values = [deep, plainDeep, ...Array.from({ length: 3000 }, () => value(0))];
  for (const v of values) {
    const text = jsonCodec.encode(v);
    assert.equal(text, reference.encode(v));
    assert.deepEqual(jsonCodec.decode(Buffer.from(text)), reference.decode(Buffer.from(text)));
  }
  const cycle = { a: 1 };
  cycle.self = cycle;
  assert.throws(() => jsonCodec.encode(cycle), TypeError);
});

test('bad events and keys are refused at the call with a code, and nothing is written', async () => {
  const name = fresh('bad');
  const producer = redisProducer({ client, name, partitions: 2, maxEventBytes: 100 });
  await assert.rejects(producer.send('k', { s: 'x'.repeat(200) }), {
    code: 'ERR_VELO_EVENT_TOO_LARGE',
    name: 'EventTooLargeError',
    size: 208,
    limit: 100,
  });
  await assert.rejects(producer.send('k', { big: 1n }), { code: 'ERR_VELO_ENCODE' });
  await assert.rejects(producer.send('k', undefined), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(producer.send('', 1), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(producer.send(7, 1), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(producer.send('x'.repeat(1025), 1), { code: 'ERR_OUT_OF_RANGE' });
  // A lone surrogate has no UTF-8 form: such keys would all be written as U+FFFD and share one session.
  for (const key of ['\ud800', 'a\udc00', '\udc00\ud800'])
    await assert.rejects(producer.send(key, 1), { code: 'ERR_INVALID_ARG_VALUE' }, JSON.stringify(key));
  await assert.rejects(
    producer.sendMany([
      ['a', 1],
      ['\ud800', 2],
    ]),
    { code: 'ERR_INVALID_ARG_VALUE' },
  );
  // One bad event in a batch: nothing of the batch is written.
  await assert.rejects(
    producer.sendMany([
      ['a', 1],
      ['b', { s: 'x'.repeat(200) }],
    ]),
    { code: 'ERR_VELO_EVENT_TOO_LARGE' },
  );
  await assert.rejects(producer.sendMany([['a', 1], 'b']), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(producer.sendMany(5), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.deepEqual(await client.keys(`velo:{${name}:*`), []);
  // A byte-exact limit: 100 bytes pass.
  await producer.send('k', 'y'.repeat(98));
});

test('bad options are refused with a code', () => {
  assert.throws(() => redisProducer({ client, name: 'a{b}' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => redisProducer({ client, name: 5 }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => redisProducer({ client, name: 'ok', partitions: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => redisProducer({ client: {}, name: 'ok' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => redisProducer({ client, name: 'ok', codec: { encode() {} } }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => redisWorker((x) => x, { client, name: 'ok' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => redisWorker(totals(), { client, name: 'ok', leaseTtl: 5 }), { code: 'ERR_OUT_OF_RANGE' });
  // A misspelt option would be ignored: every entry point refuses names it does not know.
  assert.throws(() => redisProducer({ client, name: 'ok', maxlag: 5 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "maxlag"/,
  });
  assert.throws(() => redisWorker(totals(), { client, name: 'ok', leaseTTL: 5000 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "leaseTTL"/,
  });
  assert.throws(() => redisOutputs({ client, name: 'ok', grp: 'g' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => redisMaterialize({ client, name: 'ok', key: () => 'k', fields: () => ({}), batchSize: 5 }), {
    code: 'ERR_INVALID_ARG_VALUE',
  });
  // Past Node's longest timer, the renewal timer would fire at once, again and again.
  assert.throws(() => redisWorker(totals(), { client, name: 'ok', leaseTtl: 2 ** 31 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => redisOutputs({ client, name: 'ok', from: 'middle' }), { code: 'ERR_INVALID_ARG_VALUE' });
  // A string of the wrong form is a bad value; a non-string, a bad type.
  assert.throws(() => redisWorker(totals(), { client, name: 'ok', workerId: 'a:b' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => redisWorker(totals(), { client, name: 'ok', workerId: 5 }), { code: 'ERR_INVALID_ARG_TYPE' });
  // A client not connected yet is refused at the call, not by every command later.
  const { createClient } = require('redis');
  const unconnected = createClient({ url: redis.url });
  for (const open of [
    () => redisProducer({ client: unconnected, name: 'ok' }),
    () => redisWorker(totals(), { client: unconnected, name: 'ok' }),
    () => redisOutputs({ client: unconnected, name: 'ok' }),
  ]) {
    assert.throws(open, { code: 'ERR_INVALID_ARG_VALUE', message: /not connected/ });
  }
});

test('one worker: one session per key, outputs numbered per session, idle-close acks everything, hw is forgotten', async () => {
  const name = fresh('one');
  const partitions = 4;
  const producer = redisProducer({ client, name, partitions });
  const worker = redisWorker(totals({ idleTimeout: 200 }), { client, name, partitions, leaseTtl: 1500 });
  try {
    const keys = ['a', 'b', 'c', 'd', 'e'];
    const sent = new Map(keys.map((k) => [k, []]));
    for (let i = 0; i < 50; i++) {
      const key = keys[i % keys.length];
      sent.get(key).push(i);
      await producer.send(key, { n: i });
    }
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 50, '50 outputs');
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed and acked');
    const outputs = await readAllOutputs(client, name, partitions);
    checkOutputs(outputs, new Map(keys.map((k) => [k, expectedTotals(sent.get(k))])));
    for (const o of outputs) assert.match(o.sid, new RegExp(`^${o.key}@\\d+-\\d+$`));
    assert.equal(new Set(outputs.map((o) => o.sid)).size, keys.length, 'one session per key');
    for (let p = 0; p < partitions; p++)
      assert.equal(await client.exists(`velo:{${name}:p${p}}:hw`), 0, 'ended sessions leave no high-water mark');
    assert.equal(worker.stats().sessions, 0);
    assert.deepEqual(worker.stats().owned, [0, 1, 2, 3]);

    // After the idle close, the key's next event opens a new session.
    await producer.send('a', { n: 100 });
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 51, 'the next session');
    const last = (await readAllOutputs(client, name, partitions)).find((o) => o.value.n === 100);
    assert.deepEqual(last.value, { n: 100, total: 100, count: 1 });
    assert.equal(last.seq, 1);
  } finally {
    await worker.close();
  }
  assert.deepEqual(worker.stats().owned, []);
  for (let p = 0; p < partitions; p++)
    assert.equal(await client.exists(`velo:{${name}:p${p}}:lease`), 0, 'close() released the lease');
});

for (const delayMs of [0, 20]) {
  test(`a handler that throws: its error is the session's last output, the session ends at that event, the next one starts right after (${delayMs ? 'slow handler: the next event was buffered' : 'fast handler'})`, async () => {
    const name = fresh('throws');
    const producer = redisProducer({ client, name, partitions: 1 });
    const worker = redisWorker(totals({ idleTimeout: 0 }, delayMs), { client, name, partitions: 1, leaseTtl: 1500 });
    try {
      const ids = await producer.sendMany([
        ['k', { n: 1 }],
        ['k', { n: 2, fail: true }],
        ['k', { n: 3 }],
      ]);
      await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'three outputs');
      // The failed session's two entries are acked; the next session's entry stays pending while it lives.
      await eventually(async () => (await pendingCount(client, name, 1)) === 1, 'the failed session acked');
      await producer.send('k', { n: 4 });
      await eventually(async () => (await readAllOutputs(client, name, 1)).length === 4, 'the next session goes on');
      assert.deepEqual(
        (await readAllOutputs(client, name, 1)).map((o) => [o.sid, o.seq, o.value ?? o.error]),
        [
          [`k@${ids[0]}`, 1, { n: 1, total: 1, count: 1 }],
          [`k@${ids[0]}`, 2, { name: 'Error', message: 'failed at 2', code: 'E_TEST' }],
          [`k@${ids[2]}`, 1, { n: 3, total: 3, count: 1 }],
          [`k@${ids[2]}`, 2, { n: 4, total: 7, count: 2 }],
        ],
      );
      if (delayMs > 0) assert.equal(worker.stats().handedOn, 1, 'the slow handler had n: 3 buffered, untaken');
    } finally {
      await worker.close();
    }
  });
}

for (const delayMs of [0, 3]) {
  test(`a handler that returns by itself (after every third event): each session keeps exactly its three events, the next starts at the fourth, none is lost (${delayMs ? 'slow' : 'fast'} handler)`, async () => {
    const name = fresh('returns');
    const partitions = 4;
    const producer = redisProducer({ client, name, partitions });
    const threes = streamFn(async function* threes(events) {
      let count = 0;
      let total = 0;
      for await (const e of events) {
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
        total += e.n;
        yield { n: e.n, total, count: ++count };
        if (count === 3) return;
      }
    });
    const worker = redisWorker(threes, { client, name, partitions, leaseTtl: 1500 });
    try {
      const sent = new Map();
      let n = 0;
      for (let round = 0; round < 10; round++) {
        const pairs = Array.from({ length: 20 }, (_, i) => [`k${(i * 7 + round) % 8}`, { n: n++ }]);
        const ids = await producer.sendMany(pairs);
        pairs.forEach(([key, e], i) => sent.set(key, [...(sent.get(key) ?? []), { id: ids[i], n: e.n }]));
        await new Promise((resolve) => setTimeout(resolve, round % 3));
      }
      await eventually(async () => (await readAllOutputs(client, name, partitions)).length === n, 'an output per event');
      const outputs = await readAllOutputs(client, name, partitions);
      for (const [key, events] of sent) {
        const expected = events.map((e, i) => {
          const first = i - (i % 3);
          const total = events.slice(first, i + 1).reduce((sum, x) => sum + x.n, 0);
          return { sid: `${key}@${events[first].id}`, seq: (i % 3) + 1, value: { n: e.n, total, count: (i % 3) + 1 } };
        });
        assert.deepEqual(
          outputs.filter((o) => o.key === key).map(({ sid, seq, value }) => ({ sid, seq, value })),
          expected,
          key,
        );
      }
      // Pending: only the entries of the sessions still open (a key's last, unfinished three).
      const open = [...sent.values()].reduce((sum, events) => sum + (events.length % 3), 0);
      await eventually(async () => (await pendingCount(client, name, partitions)) === open, 'finished sessions acked');
    } finally {
      await worker.close();
    }
  });
}

test('sends refused part-way by Redis (maxmemory reached): SendError (ERR_VELO_SEND_FAILED) whose ids say exactly which events are in the log', async () => {
  const name = fresh('oom');
  const partitions = 4;
  const producer = redisProducer({ client, name, partitions });
  const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1]);
  await client.configSet('maxmemory', String(used + 2_000_000));
  try {
    const payload = 'x'.repeat(1000);
    const pairs = Array.from({ length: 5000 }, (_, i) => [`k${i % 16}`, { i, payload }]);
    const error = await producer.sendMany(pairs).then(
      () => assert.fail('5 MB fit in 2 MB'),
      (e) => e,
    );
    assert.ok(error instanceof SendError, String(error));
    assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
    assert.match(error.message, /^sendMany\(\): \d+ of 5000 events written, \d+ not, 0 unknown: OOM /);
    assert.match(String(error.cause?.message), /^OOM /);
    assert.equal(error.ids.length, 5000);
    assert.ok(
      error.ids.every((id) => typeof id === 'string' || id === null),
      'every call answered',
    );
    const written = error.ids.filter((id) => id !== null).length;
    assert.ok(written > 0 && written < 5000, `${written} written`);
    // What Redis holds is exactly what ids says: each written event under its id, no other.
    const inLog = new Map();
    for (let p = 0; p < partitions; p++) {
      for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) inLog.set(JSON.parse(message.v).i, id);
    }
    assert.equal(inLog.size, written);
    error.ids.forEach((id, i) => assert.equal(inLog.get(i) ?? null, id, `event ${i}`));
    // At the limit now: a single send is refused.
    await client.configSet('maxmemory', /used_memory:(\d+)/.exec(await client.info('memory'))[1]);
    const one = await producer.send('k0', { i: -1, payload }).then(
      () => assert.fail('refused'),
      (e) => e,
    );
    assert.ok(one instanceof SendError);
    assert.deepEqual([...one.ids], [null]);
  } finally {
    await client.configSet('maxmemory', '0');
  }
  // Below the limit again, the same producer sends.
  assert.equal(typeof (await producer.send('k0', { i: -2 })), 'string');
});

test('a client made withTypeMapping (Buffers for strings, RESP3) works for producers, workers, redisOutputs and redisMaterialize', async () => {
  // Every command names its reply types: before, a worker on such a client took leases it never used (the
  // token came back as a Buffer), silently, and held the function's partitions from the other workers.
  const { RESP_TYPES } = require('redis');
  const mapped = await redis.client({ RESP: 3 });
  const buffers = mapped.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.SIMPLE_STRING]: Buffer });
  const name = fresh('typemapped');
  const partitions = 3;
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client: buffers, name, partitions, leaseTtl: 1500 });
  try {
    await redisProducer({ client: buffers, name, partitions }).sendMany(
      Array.from({ length: 12 }, (_, i) => [`k${i % 3}`, { n: i }]),
    );
    const items = [];
    // (A stall shows as no outputs for 20 s: the loop ends and the counts below fail.)
    const stalled = AbortSignal.timeout(20_000);
    try {
      for await (const item of redisOutputs({ client: buffers, name, partitions, signal: stalled })) {
        items.push(item);
        if (items.length === 12) break;
      }
    } catch (error) {
      if (!stalled.aborted) throw error;
    }
    assert.equal(items.length, 12, 'every output read');
    const byKey = new Map();
    for (const item of items) byKey.set(item.key, [...(byKey.get(item.key) ?? []), item.value]);
    for (const [key, values] of byKey) assert.deepEqual(values, expectedTotals(values.map((v) => v.n)), key);
    assert.equal(byKey.size, 3);
    assert.deepEqual(worker.stats().owned.sort(), [0, 1, 2]);
    const view = redisMaterialize({
      client: buffers,
      name,
      partitions,
      key: (o) => `tm:${name}:${o.key}`,
      fields: (o) => ({ total: o.value.total }),
    });
    await eventually(async () => (await client.hGet(`tm:${name}:k0`, 'total')) === String(0 + 3 + 6 + 9), 'materialized', 10_000);
    await view.close();
  } finally {
    await worker.close();
  }
});

test('redisOutputs(): from the start, from the end, and with a consumer group acked as the loop moves on', async () => {
  const name = fresh('read');
  const partitions = 3;
  const producer = redisProducer({ client, name, partitions });
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions, leaseTtl: 1500 });
  try {
    await producer.sendMany(Array.from({ length: 30 }, (_, i) => [`k${i % 3}`, { n: i }]));
    const all = [];
    for await (const item of redisOutputs({ client, name, partitions })) {
      all.push(item);
      if (all.length === 30) break;
    }
    for (const item of all) {
      assert.equal(item.partition, fnv1a(item.key) % partitions);
      assert.equal(typeof item.id, 'string');
    }
    const byKey = new Map();
    for (const item of all) byKey.set(item.key, [...(byKey.get(item.key) ?? []), item]);
    for (const [key, items] of byKey) {
      const ns = items.map((i) => i.value.n);
      assert.deepEqual(
        items.map((i) => i.value),
        expectedTotals(ns),
        key,
      );
      assert.deepEqual(
        ns,
        [...ns].sort((a, b) => a - b),
        `${key} in order`,
      );
    }

    // From the end: only what comes after the start.
    const controller = new AbortController();
    const newer = [];
    const reading = (async () => {
      for await (const item of redisOutputs({ client, name, partitions, from: 'end', signal: controller.signal })) {
        newer.push(item.value.n);
        if (newer.length === 2) controller.abort();
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await producer.send('k0', { n: 1000 });
    await producer.send('k0', { n: 1001 });
    await reading;
    assert.deepEqual(newer, [1000, 1001]);

    // A group: the item the loop left on stays pending for the consumer and comes back first.
    const seen = [];
    for await (const item of redisOutputs({ client, name, partitions, group: 'g', consumer: 'c1' })) {
      seen.push(item);
      if (seen.length === 5) break;
    }
    const again = [];
    for await (const item of redisOutputs({ client, name, partitions, group: 'g', consumer: 'c1' })) {
      again.push(item);
      if (again.length === 32 - 4) break;
    }
    // Entry ids are unique within a partition's stream only.
    const where = (i) => `${i.partition}/${i.id}`;
    assert.equal(where(again[0]), where(seen[4]), 'the one not moved past comes back');
    assert.equal(new Set([...seen, ...again].map(where)).size, 32, 'every output once otherwise');
  } finally {
    await worker.close();
  }
});

test('redisOutputs with a group and a signal aborted in the loop: no output after the abort, the one the loop was on stays pending, those before are acked', async () => {
  const name = fresh('abortLoop');
  const producer = redisProducer({ client, name, partitions: 1 });
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions: 1, leaseTtl: 1500 });
  try {
    await producer.sendMany(Array.from({ length: 20 }, (_, n) => ['k', { n }]));
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 20, '20 outputs');
    const seqs = async (options, stopAt, how) => {
      const controller = new AbortController();
      const got = [];
      for await (const item of redisOutputs({ client, name, partitions: 1, group: 'g', ...options, signal: controller.signal })) {
        got.push(item.seq);
        if (got.length === stopAt) {
          controller.abort();
          if (how === 'break') break;
          // An await in the body after the abort: the loop goes on to its next step.
          if (how === 'await') await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      return got;
    };
    // Aborted at the 5th: the loop's next step ends it.
    assert.deepEqual(await seqs({}, 5, 'continue'), [1, 2, 3, 4, 5]);
    // The 5th comes back first to the consumer; aborted at the 3rd of those, after an await in the body.
    assert.deepEqual(await seqs({}, 3, 'await'), [5, 6, 7]);
    // Aborted and left with break at once.
    assert.deepEqual(await seqs({}, 2, 'break'), [7, 8]);
    assert.deepEqual(await seqs({}, 13, 'continue'), [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert.equal((await client.xPending(`velo:{${name}:p0}:out`, 'g')).pending, 1, 'the last one the loop was on');
  } finally {
    await worker.close();
  }
});

test('redisOutputs: an abort ends a loop whose connection is still connecting (Redis unreachable), with and without a group', async () => {
  const { createClient } = await import('redis');
  const { startProxy } = await import('./helpers/tcp-proxy.mjs');
  const proxy = await startProxy(redis.port);
  // A client connected through the proxy, then cut off: the reader's own connection (a duplicate) retries for as
  // long as the loop lives.
  const unreachable = createClient({ url: `redis://127.0.0.1:${proxy.port}`, socket: { reconnectStrategy: () => 50 } });
  unreachable.on('error', () => {});
  await unreachable.connect();
  proxy.cut();
  try {
    for (const group of [undefined, 'g']) {
      const controller = new AbortController();
      const got = [];
      const loop = (async () => {
        for await (const item of redisOutputs({
          client: unreachable,
          name: fresh('down'),
          partitions: 1,
          group,
          signal: controller.signal,
        }))
          got.push(item);
        return 'ended';
      })();
      await new Promise((resolve) => setTimeout(resolve, 200));
      controller.abort();
      assert.equal(
        await Promise.race([
          loop,
          new Promise((resolve) => setTimeout(resolve, 15_000, 'still connecting 15 s after the abort')),
        ]),
        'ended',
      );
      assert.deepEqual(got, []);
    }
  } finally {
    unreachable.destroy();
    await proxy.stop();
  }
});

test('redisOutputs with claimIdle: entries a stopped reader had read ahead go to another consumer of the group once idle that long; every output once', async () => {
  const name = fresh('claim');
  const partitions = 2;
  const producer = redisProducer({ client, name, partitions });
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions, leaseTtl: 1500 });
  try {
    await producer.sendMany(Array.from({ length: 60 }, (_, i) => [`k${i % 6}`, { n: i }]));
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 60, '60 outputs');
    // A reads ahead 20 per partition, handles 3 and leaves: the rest it read stays pending under its name.
    const first = [];
    for await (const item of redisOutputs({ client, name, partitions, group: 'g', consumer: 'a', count: 20 })) {
      first.push(item);
      if (first.length === 3) break;
    }
    const pendingA = async () => {
      let n = 0;
      for (let p = 0; p < partitions; p++) n += (await client.xPending(`velo:{${name}:p${p}}:out`, 'g')).pending;
      return n;
    };
    assert.ok((await pendingA()) > 1, 'A left read-ahead entries pending');
    const rest = [];
    // (The signal only bounds the wait when nothing is claimed.)
    const signal = AbortSignal.timeout(20_000);
    for await (const item of redisOutputs({ client, name, partitions, group: 'g', consumer: 'b', claimIdle: 100, signal })) {
      rest.push(item);
      if (rest.length === 58) break;
    }
    const where = (i) => `${i.partition}/${i.id}`;
    // B gets every output A did not move past, A's third (its loop left on it) included, each once.
    assert.equal(new Set(rest.map(where)).size, 58);
    assert.equal(new Set([...first, ...rest].map(where)).size, 60, 'every output');
    assert.ok(
      rest.some((i) => where(i) === where(first[2])),
      "A's last, never acked, went to B",
    );
    assert.ok(!rest.some((i) => where(i) === where(first[0]) || where(i) === where(first[1])), "A's acked ones did not");
    assert.equal(await pendingA(), 1, "only the one B's loop left on is pending");
    assert.throws(() => redisOutputs({ client, name, partitions, claimIdle: 100 }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => redisOutputs({ client, name, partitions, group: 'g', claimIdle: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  } finally {
    await worker.close();
  }
});

test('fencing: once another worker holds the lease, the old owner reads, writes, marks and acks nothing', async () => {
  const { RedisLog, KeySpace } = require('../dist/redis/log/redis-log.js');
  const { FencedError } = require('../dist/errors/index.js');
  const name = fresh('fence');
  const keys = new KeySpace(name);
  const log = new RedisLog(client, keys, 1, (error) => assert.fail(error));
  const producer = redisProducer({ client, name, partitions: 1 });
  const zombie = await log.acquire(0, 'zombie', 300);
  assert.match(zombie.token, /^zombie:1$/);
  assert.equal((await log.acquire(0, 'other', 300)).holder, 'zombie', 'held: no second grant');
  await producer.sendMany([
    ['k', { n: 1 }],
    ['k', { n: 2 }],
  ]);
  const first = await log.read(zombie, '>', 1);
  assert.equal(first.entries.length, 1);
  await new Promise((resolve) => setTimeout(resolve, 400)); // the zombie's lease runs out
  const owner = await log.acquire(0, 'owner', 5000);
  assert.equal(owner.token, 'owner:2', 'the next epoch');
  assert.equal(await log.renew(zombie, 5000), false);
  const refused = { name: 'FencedError', code: 'ERR_VELO_FENCED', partition: 0 };
  await assert.rejects(log.read(zombie, '>', 10), refused);
  await assert.rejects(log.markClose(zombie, 'k', 'k@1-0'), refused);
  await assert.rejects(
    log.commit(zombie, { outputs: [{ sid: 'k@x', seq: 1, key: 'k', payload: '1' }], acks: [first.entries[0].id], ended: [] }),
    refused,
  );
  await log.release(zombie); // a no-op: not the holder
  assert.equal(await client.get(keys.lease(0)), 'owner:2');
  assert.equal(await client.exists(keys.output(0)), 0, 'no output written');
  assert.ok(new FencedError(0, 'x') instanceof Error);
  // The new owner gets the zombie's pending entry back (replay), then the rest.
  const replay = await log.read(owner, '0-0', 10);
  assert.deepEqual(
    replay.entries.map((e) => e.id),
    [first.entries[0].id],
  );
  const rest = await log.read(owner, '>', 10);
  assert.equal(rest.entries.length, 1);
  // Outputs deduplicated by (sid, seq): a second commit of seq 1 writes nothing.
  const output = { sid: 'k@x', seq: 1, key: 'k', payload: '1' };
  await log.commit(owner, { outputs: [output], acks: [], ended: [] });
  await log.commit(owner, { outputs: [output, { ...output, seq: 2, payload: '2' }], acks: [], ended: [] });
  assert.deepEqual(
    (await client.xRange(keys.output(0), '-', '+')).map((e) => e.message.seq),
    ['1', '2'],
  );
  await log.commit(owner, { outputs: [], acks: [...replay.entries, ...rest.entries].map((e) => e.id), ended: ['k@x'] });
  assert.equal(await pendingCount(client, name, 1), 0);
  assert.equal(await client.exists(keys.hw(0)), 0);
  await log.close();
});

test('fencing of plain reads: once the lease ran out (no new owner), or was released, reads that would find entries are refused and take nothing', async () => {
  const { RedisLog, KeySpace } = require('../dist/redis/log/redis-log.js');
  const name = fresh('fence2');
  const keys = new KeySpace(name);
  const log = new RedisLog(client, keys, 1, (error) => assert.fail(error));
  const producer = redisProducer({ client, name, partitions: 1 });
  const refused = { name: 'FencedError', code: 'ERR_VELO_FENCED', partition: 0 };
  const pending = async () => Number((await client.sendCommand(['XPENDING', keys.input(0), 'velo']))[0]);
  try {
    await producer.sendMany(Array.from({ length: 6 }, (_, n) => ['k', { n }]));
    // Ran out: the fence stream expires with the lease, at the same instant.
    const lapsed = await log.acquire(0, 'a', 200);
    assert.equal((await log.read(lapsed, '>', 1)).entries.length, 1);
    assert.equal(await client.exists(keys.fence(0, '1')), 1, 'the fence stream lives with the lease');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await client.exists(keys.lease(0)), 0);
    await assert.rejects(log.read(lapsed, '>', 10), refused);
    await assert.rejects(log.read(lapsed, '0-0', 10), refused);
    assert.equal(await pending(), 1, 'the refused reads took nothing');
    // Released: the fence stream goes with it.
    const next = await log.acquire(0, 'b', 5000);
    assert.equal((await log.read(next, '0-0', 10)).entries.length, 1, 'the pending entry, replayed');
    assert.equal((await log.read(next, '>', 2)).entries.length, 2);
    await log.release(next);
    assert.equal(await client.exists(keys.fence(0, '2')), 0, 'released with the lease');
    await assert.rejects(log.read(next, '>', 10), refused);
    assert.equal(await pending(), 3);
    // A renewal keeps both alive past the first expiry.
    const renewed = await log.acquire(0, 'c', 300);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(await log.renew(renewed, 300), true);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await log.read(renewed, '>', 10)).entries.length, 3, 'renewed: reads go on');
  } finally {
    await log.close();
  }
});

test('a close marker naming another session of the key (a duplicate, written late) ends nothing', async () => {
  const name = fresh('stale');
  const producer = redisProducer({ client, name, partitions: 1 });
  await producer.send('k', { n: 1 });
  await client.xAdd(`velo:{${name}:p0}`, '*', { k: 'k', c: 'k@1-0' });
  await producer.send('k', { n: 2 });
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions: 1, leaseTtl: 1500 });
  try {
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'two outputs');
    const outputs = await readAllOutputs(client, name, 1);
    assert.deepEqual(
      outputs.map((o) => [o.seq, o.value]),
      [
        [1, { n: 1, total: 1, count: 1 }],
        [2, { n: 2, total: 3, count: 2 }],
      ],
    );
    assert.equal(new Set(outputs.map((o) => o.sid)).size, 1);
  } finally {
    await worker.close();
  }
});

test('maxConcurrent: keys beyond it wait (per key in order) until sessions end, then run; nothing is lost', async () => {
  const name = fresh('limit');
  const producer = redisProducer({ client, name, partitions: 1 });
  const fn = totals({ idleTimeout: 150, maxConcurrent: 2 });
  // (Keys waiting for a slot are reported: ERR_VELO_SESSION_SLOTS, a warning; anything else goes to stderr.)
  const onError = (e) => e?.code === 'ERR_VELO_SESSION_SLOTS' || process.emitWarning(e);
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 1500, onError });
  try {
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    const sent = new Map(keys.map((k) => [k, []]));
    const pairs = [];
    for (let i = 0; i < 60; i++) {
      const key = keys[i % keys.length];
      sent.get(key).push(i);
      pairs.push([key, { n: i }]);
    }
    await producer.sendMany(pairs);
    await eventually(() => worker.stats().held > 0, 'events held for a session slot');
    assert.ok(fn.stats().open <= 2);
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 60, '60 outputs');
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'every session closed and acked');
    checkOutputs(await readAllOutputs(client, name, 1), new Map(keys.map((k) => [k, expectedTotals(sent.get(k))])));
    assert.equal(worker.stats().held, 0);
    // The worker knows its sessions fill the slots: keys wait without an open tried and refused (each refusal
    // built a StreamLimitError, and on a backlog every ended session made every partition try one).
    assert.equal(fn.stats().rejected, 0, 'no open refused: keys waited for a slot');
    assert.equal(fn.stats().opened, new Set((await readAllOutputs(client, name, 1)).map((o) => o.sid)).size);
  } finally {
    await worker.close();
  }
});

test("idle by the log's clock: a backlog read at once splits each key's sessions where its events were more than idleTimeout apart, and frees slots without close markers", async () => {
  const name = fresh('logidle');
  const producer = redisProducer({ client, name, partitions: 1 });
  const idle = 250;
  const fn = totals({ idleTimeout: idle, maxConcurrent: 3 });
  const keys = Array.from({ length: 12 }, (_, k) => `k${k}`);
  const rounds = 4;
  // Written before any worker runs, each round idle + 150 ms (Redis' clock) after the last: read as a backlog,
  // every event is at hand at once, and only the entry ids say how far apart they were sent.
  let n = 0;
  const expected = new Map(keys.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    if (r > 0) await new Promise((resolve) => setTimeout(resolve, idle + 150));
    const pairs = [];
    for (const k of keys) {
      // Two events per key and round: a session of its own, its totals starting over.
      pairs.push([k, { n: n++ }], [k, { n: n++ }]);
      expected.get(k).push(...expectedTotals([n - 2, n - 1]));
    }
    await producer.sendMany(pairs);
  }
  // (Keys waiting for a slot are reported: ERR_VELO_SESSION_SLOTS, a warning; anything else goes to stderr.)
  const onError = (e) => e?.code === 'ERR_VELO_SESSION_SLOTS' || process.emitWarning(e);
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 1500, onError });
  try {
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === n, `${n} outputs`);
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'every session ended and acked');
    const outputs = await readAllOutputs(client, name, 1);
    checkOutputs(outputs, expected);
    const sids = new Set(outputs.map((o) => o.sid));
    assert.equal(sids.size, keys.length * rounds, 'one session per key per round');
    // Only the last round's sessions needed a close marker (nothing was written after them); the earlier ones
    // ended when the log's clock passed their deadline.
    const markers = (await client.xRange(`velo:{${name}:p0}`, '-', '+')).filter((e) => e.message.c !== undefined);
    assert.ok(markers.length <= keys.length, `${markers.length} close markers for ${keys.length} keys`);
  } finally {
    await worker.close();
  }
});

test('a reader iterator dropped at an item without return() closes its connection once collected (with a group too, its acks sent)', async () => {
  const name = fresh('gc');
  const producer = redisProducer({ client, name, partitions: 1 });
  await producer.sendMany([
    ['k', { n: 1 }],
    ['k', { n: 2 }],
  ]);
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions: 1, leaseTtl: 1500 });
  const connections = async () => (await client.sendCommand(['CLIENT', 'LIST'])).trim().split('\n').length;
  try {
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'two outputs');
    for (const group of [undefined, 'g']) {
      const baseline = await connections();
      await (async () => {
        const iterator = redisOutputs({ client, name, partitions: 1, group })[Symbol.asyncIterator]();
        assert.equal((await iterator.next()).value.seq, 1);
        assert.equal((await iterator.next()).value.seq, 2);
        assert.equal(await connections(), baseline + 1, 'the reader has its own connection');
      })();
      await eventually(async () => {
        globalThis.gc();
        await new Promise((resolve) => setImmediate(resolve));
        return (await connections()) === baseline;
      }, 'the dropped reader connection closed');
    }
    // The group's first output was moved past (acked); the second, where the loop was dropped, stays pending.
    assert.equal((await client.xPending(`velo:{${name}:p0}:out`, 'g')).pending, 1);
  } finally {
    await worker.close();
  }
});

test('a reader aborted while it connects closes its connection (with a group too)', async () => {
  const name = fresh('abort-connect');
  const connections = async () => (await client.sendCommand(['CLIENT', 'LIST'])).trim().split('\n').length;
  for (const group of [undefined, 'g']) {
    const baseline = await connections();
    const ac = new AbortController();
    const iterator = redisOutputs({ client, name, partitions: 1, group, signal: ac.signal })[Symbol.asyncIterator]();
    const first = iterator.next();
    // The generator has started connecting its own client; the abort comes before the connection is made.
    ac.abort();
    assert.deepEqual(await first, { value: undefined, done: true });
    await eventually(async () => (await connections()) === baseline, 'the aborted reader connection closed');
  }
});

test('redisOutputs: Symbol.asyncDispose ends its loops (one waiting on Redis, one at an item), closes their connections; a loop after it ends at once', async () => {
  const name = fresh('dispose');
  const producer = redisProducer({ client, name, partitions: 1 });
  await producer.send('k', { n: 1 });
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions: 1, leaseTtl: 1500 });
  const connections = async () => (await client.sendCommand(['CLIENT', 'LIST'])).trim().split('\n').length;
  try {
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 'one output');
    const baseline = await connections();
    const outputs = redisOutputs({ client, name, partitions: 1 });
    assert.equal(typeof outputs[Symbol.asyncDispose], 'function');
    // A loop blocked on Redis after the one output, and an iterator held at that output.
    const got = [];
    const waiting = (async () => {
      for await (const item of outputs) got.push(item.seq);
      return 'ended';
    })();
    const held = outputs[Symbol.asyncIterator]();
    assert.equal((await held.next()).value.seq, 1);
    await eventually(() => got.length === 1, 'the loop got the output');
    assert.equal(await connections(), baseline + 2, 'a connection per loop');
    await outputs[Symbol.asyncDispose]();
    assert.equal(await waiting, 'ended');
    assert.deepEqual(await held.next(), { value: undefined, done: true });
    await eventually(async () => (await connections()) === baseline, 'their connections closed');
    const after = [];
    for await (const item of outputs) after.push(item);
    assert.deepEqual(after, []);
    await outputs[Symbol.asyncDispose]();
  } finally {
    await worker.close();
  }
});

test('trimming removes what no session needs, never a pending entry: a new owner still replays every live session', async () => {
  const name = fresh('trim');
  const input = `velo:{${name}:p0}`;
  const producer = redisProducer({ client, name, partitions: 1 });
  const options = { client, name, partitions: 1, leaseTtl: 600, trimInterval: 1 };
  const fn = totals({ idleTimeout: 0 });
  const a = redisWorker(fn, options);
  // 'done' ends (its handler returns): its entries are acked; the live sessions' stay pending.
  await producer.sendMany([
    ['done', { n: 1 }],
    ['done', { stop: true }],
  ]);
  const pairs = Array.from({ length: 30 }, (_, i) => [`live${i % 3}`, { n: i }]);
  await producer.sendMany(pairs);
  await eventually(async () => (await readAllOutputs(client, name, 1)).length === 31, '31 outputs');
  await eventually(() => a.stats().trimmed === 2, "the ended session's two entries trimmed");
  assert.equal(await client.xLen(input), 30, 'the 30 pending entries stay');
  await a.close();

  const b = redisWorker(fn, options);
  try {
    await eventually(() => b.stats().replayed === 30, 'B replayed the live sessions');
    await eventually(
      async () => (await readAllOutputs(client, name, 1)).length === 31 && b.stats().outputs >= 30,
      'B rewrote nothing new',
    );
    const expected = new Map([['done', expectedTotals([1])]]);
    for (let k = 0; k < 3; k++)
      expected.set(`live${k}`, expectedTotals(pairs.filter(([key]) => key === `live${k}`).map(([, e]) => e.n)));
    checkOutputs(await readAllOutputs(client, name, 1), expected);
  } finally {
    await b.close();
  }
});

test('trimming with nothing pending keeps only the last delivered entry', async () => {
  const name = fresh('trimall');
  const producer = redisProducer({ client, name, partitions: 1 });
  const worker = redisWorker(totals({ idleTimeout: 100 }), { client, name, partitions: 1, leaseTtl: 600, trimInterval: 1 });
  try {
    await producer.sendMany(Array.from({ length: 20 }, (_, i) => [`k${i % 4}`, { n: i }]));
    await eventually(
      async () => (await pendingCount(client, name, 1)) === 0 && (await readAllOutputs(client, name, 1)).length === 20,
      'all closed',
    );
    await eventually(async () => (await client.xLen(`velo:{${name}:p0}`)) === 1, 'trimmed to one entry');
  } finally {
    await worker.close();
  }
});

test('a handler that throws a hostile value (a revoked proxy, getters that throw, a null-prototype object, undefined) or a huge message: the error is its last output, within maxEventBytes; the worker goes on', async () => {
  const name = fresh('hostile');
  const producer = redisProducer({ client, name, partitions: 1 });
  const hostile = {
    revoked: () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    },
    messageGetter: () =>
      Object.defineProperty(new Error('unread'), 'message', {
        get() {
          throw new Error('message getter');
        },
      }),
    nameGetter: () =>
      Object.defineProperty(new Error('readable'), 'name', {
        get() {
          throw new Error('name getter');
        },
      }),
    nullProto: () => Object.create(null),
    // Thrown, not yielded: the failure is the handler's, not the codec's refusal of an `undefined` output.
    undefined: () => undefined,
    huge: () => Object.assign(new Error('x'.repeat(100_000)), { code: 'E_HUGE' }),
  };
  const fn = streamFn(
    async function* thrower(events) {
      for await (const e of events) throw hostile[e.kind]();
    },
    { idleTimeout: 0 },
  );
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 1500, maxEventBytes: 1024 });
  try {
    for (const kind of Object.keys(hostile)) await producer.send(kind, { kind });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 6, 'six error outputs');
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'every session ended and acked');
    const errors = Object.fromEntries((await readAllOutputs(client, name, 1)).map((o) => [o.key, o.error]));
    assert.deepEqual(errors.revoked, { name: 'Error', message: 'an unprintable value' });
    assert.deepEqual(errors.messageGetter, { name: 'Error', message: 'an unprintable value' });
    assert.deepEqual(errors.nameGetter, { name: 'Error', message: 'readable' });
    assert.deepEqual(errors.nullProto, { name: 'Error', message: 'an unprintable value' });
    assert.deepEqual(errors.undefined, { name: 'Error', message: 'undefined' });
    assert.equal(errors.huge.code, 'E_HUGE');
    assert.match(errors.huge.message, /^x+…$/);
    const [entry] = (await client.xRange(`velo:{${name}:p0}:out`, '-', '+')).filter((e) => e.message.k === 'huge');
    assert.ok(
      Buffer.byteLength(entry.message.e) <= 1024,
      `the error entry within maxEventBytes: ${Buffer.byteLength(entry.message.e)}`,
    );
  } finally {
    await worker.close();
  }
});

test('an error output is cut to fit maxEventBytes: its message first, then its name, its code last; under 35 bytes it is the smallest entry', () => {
  const { serializeError } = require('../dist/durable/engine/session.js');
  const error = Object.assign(new Error('m'.repeat(5000)), { name: 'N'.repeat(300), code: 'C'.repeat(300) });
  for (const max of [2000, 600, 100, 60, 35]) {
    const out = serializeError(error, max);
    assert.ok(Buffer.byteLength(out) <= max, `${max}: ${out}`);
    assert.deepEqual(Object.keys(JSON.parse(out)), ['name', 'message', 'code']);
  }
  assert.equal(serializeError(error, 10), '{"name":"","message":"","code":""}');
  assert.equal(serializeError(undefined, 10), '{"name":"","message":""}');
  // The code, which readers match on, stays whole while the entry can hold it: the name goes first.
  const coded = Object.assign(new RangeError('x'.repeat(500)), { name: 'EventTooLargeError', code: 'ERR_VELO_EVENT_TOO_LARGE' });
  assert.equal(JSON.parse(serializeError(coded, 64)).code, 'ERR_VELO_EVENT_TOO_LARGE');
  assert.equal(JSON.parse(serializeError(coded, 58)).code, 'ERR_VELO_EVENT_TOO_LARGE');
});
