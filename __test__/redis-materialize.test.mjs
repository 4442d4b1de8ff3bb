// redisMaterialize(): outputs written into Redis hashes (the feature-store
// shape), acked after the writes, and idempotent on re-delivery: a
// re-delivered or out-of-date output changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisMaterialize, redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

useRedis();

const features = {
  key: (o) => `features:${o.key}`,
  fields: (o) => ({ total: o.value.total, count: o.value.count, last: o.value.n }),
};

/** Appends output entries as a worker writes them: [sid, seq, value | { error }]. */
async function writeOutputs(name, outputs) {
  for (const [sid, seq, value] of outputs) {
    const key = sid.slice(0, sid.lastIndexOf('@'));
    const data = value.error ? { e: JSON.stringify(value.error) } : { v: JSON.stringify(value) };
    await client.xAdd(`velo:{${name}:p0}:out`, '*', { sid, seq: String(seq), k: key, ...data });
  }
}

test('a worker outputs land in one hash per key with the newest fields; a re-delivery of everything changes nothing', async () => {
  const name = fresh('mat');
  const partitions = 4;
  const producer = redisProducer({ client, name, partitions });
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions, leaseTtl: 1500 });
  const view = redisMaterialize({ client, name, partitions, ...features, batch: 7 });
  try {
    const keys = ['u1', 'u2', 'u3', 'u4', 'u5'];
    await producer.sendMany(Array.from({ length: 60 }, (_, i) => [keys[i % 5], { n: i }]));
    await eventually(() => view.stats().applied === 60, '60 outputs applied');
    const outputs = await readAllOutputs(client, name, partitions);
    const expected = async () => {
      for (const key of keys) {
        const last = outputs.filter((o) => o.key === key).at(-1);
        const start = last.sid.slice(last.sid.lastIndexOf('@') + 1);
        assert.deepEqual(await client.hGetAll(`features:${key}`), {
          total: String(last.value.total),
          count: String(last.value.count),
          last: String(last.value.n),
          [`_velo:${key}`]: `${start} ${last.seq}`,
        });
      }
    };
    await expected();
    assert.ok(view.stats().batches >= 60 / (7 * partitions), 'in batches of at most 7 per partition');

    // Every output delivered again (as after a crash between the writes and the ack): all skipped.
    for (let p = 0; p < partitions; p++) await client.sendCommand(['XGROUP', 'SETID', `velo:{${name}:p${p}}:out`, 'materialize', '0']);
    await eventually(() => view.stats().skipped === 60, 'the 60 re-delivered outputs skipped');
    assert.equal(view.stats().applied, 60);
    await expected();
    for (let p = 0; p < partitions; p++) {
      const [group] = await client.xInfoGroups(`velo:{${name}:p${p}}:out`);
      assert.equal(Number(group.pending), 0, 'every batch acked');
    }
  } finally {
    await view.close();
    await worker.close();
  }
  assert.deepEqual(view.stats(), { applied: 60, skipped: 60, failures: 0, batches: view.stats().batches });
});

test('pending outputs of its consumer in one partition only: written and acked, counted, no error (an XACK with no id went to the others)', async () => {
  const name = fresh('onepending');
  const outputs = Array.from({ length: 6 }, (_, i) => [`k${i}@1-0`, 1, { total: i, count: 1, n: i }]);
  await writeOutputs(name, outputs);
  // A materializer of the group read p0's outputs and stopped before writing them; p1 has nothing.
  await client.xGroupCreate(`velo:{${name}:p0}:out`, 'materialize', '0', { MKSTREAM: true });
  await client.xGroupCreate(`velo:{${name}:p1}:out`, 'materialize', '$', { MKSTREAM: true });
  await client.xReadGroup('materialize', 'materializer', { key: `velo:{${name}:p0}:out`, id: '>' }, { COUNT: 100 });
  const errors = [];
  const view = redisMaterialize({ client, name, partitions: 2, ...features, key: (o) => `${name}:${o.key}`, onError: (e) => errors.push(e) });
  try {
    await eventually(() => view.stats().applied === 6, 'six outputs applied');
    assert.deepEqual(errors, []);
    assert.equal((await client.xPending(`velo:{${name}:p0}:out`, 'materialize')).pending, 0);
    assert.equal(await client.hGet(`${name}:k5`, 'total'), '5');
  } finally {
    await view.close();
  }
});

test('an output older than what the hash holds for its key (an earlier seq, an earlier session) is skipped; failures are counted, not written', async () => {
  const name = fresh('order');
  await writeOutputs(name, [
    ['k@5-0', 2, { n: 2, total: 2, count: 2 }],
    ['k@5-0', 1, { n: 1, total: 1, count: 1 }],
    ['k@3-0', 9, { n: 9, total: 9, count: 9 }],
    ['k@5-0', 3, { error: { name: 'Error', message: 'boom' } }],
    ['k@7-0', 1, { n: 10, total: 10, count: 1 }],
    ['k@7-0', 1, { n: 10, total: 10, count: 1 }],
  ]);
  const view = redisMaterialize({ client, name, partitions: 1, ...features });
  try {
    await eventually(() => view.stats().applied + view.stats().skipped + view.stats().failures === 6, 'six outputs read');
    assert.deepEqual(view.stats(), { applied: 2, skipped: 3, failures: 1, batches: 1 });
    assert.deepEqual(await client.hGetAll('features:k'), { total: '10', count: '1', last: '10', '_velo:k': '7-0 1' });
  } finally {
    await view.close();
  }
});

test('a key or fields callback that throws stops it with the error; the batch stays pending and the next materializer writes it', async () => {
  const name = fresh('stop');
  await writeOutputs(
    name,
    Array.from({ length: 10 }, (_, i) => [`k${i % 2}@1-0`, Math.floor(i / 2) + 1, { n: i, total: i, count: i }]),
  );
  const errors = [];
  const broken = redisMaterialize({
    client,
    name,
    partitions: 1,
    key: features.key,
    fields: (o) => {
      if (o.value.n === 7) throw new Error('bad output 7');
      return features.fields(o);
    },
    batch: 4,
    onError: (error) => errors.push(error),
  });
  await assert.rejects(broken.done, { message: 'bad output 7' });
  assert.deepEqual(errors.map((e) => e.message), ['bad output 7']);
  await broken.close();
  assert.deepEqual(broken.stats(), { applied: 4, skipped: 0, failures: 0, batches: 1 }, 'the first batch of 4 only');
  const [group] = await client.xInfoGroups(`velo:{${name}:p0}:out`);
  assert.equal(Number(group.pending), 4, 'the failed batch is pending');

  const view = redisMaterialize({ client, name, partitions: 1, ...features, batch: 4 });
  try {
    await eventually(() => view.stats().applied === 6, 'the rest applied, the pending batch first');
    assert.deepEqual(await client.hGetAll('features:k0'), { total: '8', count: '8', last: '8', '_velo:k0': '1-0 5' });
    assert.deepEqual(await client.hGetAll('features:k1'), { total: '9', count: '9', last: '9', '_velo:k1': '1-0 5' });
  } finally {
    await view.close();
  }

  // A callback returning something unusable stops it the same way, with a code.
  const badKey = redisMaterialize({ client, name, partitions: 1, group: 'other', key: () => 5, fields: features.fields, onError: () => {} });
  await assert.rejects(badKey.done, { code: 'ERR_INVALID_RETURN_VALUE' });
  const reserved = redisMaterialize({ client, name, partitions: 1, group: 'third', key: features.key, fields: () => ({ '_velo:x': 1 }), onError: () => {} });
  await assert.rejects(reserved.done, { code: 'ERR_INVALID_RETURN_VALUE', message: /reserved/ });
});

test('claimIdle: outputs another materializer of the group read and never wrote (it stopped for good) are taken over once idle that long', async () => {
  const name = fresh('claim');
  const stream = `velo:{${name}:p0}:out`;
  // (Hashes of this test's own: the other tests' keys are k0 and k1 too.)
  const view = { key: (o) => `${name}:${o.key}`, fields: features.fields };
  // Four outputs of keys g0-g3, then six of k0 and k1.
  await writeOutputs(name, [
    ...Array.from({ length: 4 }, (_, i) => [`g${i}@1-0`, 1, { n: i, total: i, count: 1 }]),
    ...Array.from({ length: 6 }, (_, i) => [`k${i % 2}@1-0`, Math.floor(i / 2) + 1, { n: i, total: i, count: i }]),
  ]);
  // A materializer that read the first 4 and was never seen again.
  await client.sendCommand(['XGROUP', 'CREATE', stream, 'materialize', '0', 'MKSTREAM']);
  await client.sendCommand(['XREADGROUP', 'GROUP', 'materialize', 'gone', 'COUNT', '4', 'STREAMS', stream, '>']);

  const plain = redisMaterialize({ client, name, partitions: 1, ...view, consumer: 'b' });
  try {
    await eventually(() => plain.stats().applied === 6, 'the 6 nobody had read');
    await new Promise((resolve) => setTimeout(resolve, 400));
  } finally {
    await plain.close();
  }
  let [group] = await client.xInfoGroups(stream);
  assert.equal(Number(group.pending), 4, 'without claimIdle the 4 stay pending under the gone consumer');

  const claiming = redisMaterialize({ client, name, partitions: 1, ...view, consumer: 'c', claimIdle: 200 });
  try {
    await eventually(() => claiming.stats().applied === 4, 'the 4 taken over and written');
    assert.deepEqual(claiming.stats(), { applied: 4, skipped: 0, failures: 0, batches: 1 });
    [group] = await client.xInfoGroups(stream);
    assert.equal(Number(group.pending), 0, 'and acked');
    for (let i = 0; i < 4; i++)
      assert.deepEqual(await client.hGetAll(`${name}:g${i}`), { total: String(i), count: '1', last: String(i), [`_velo:g${i}`]: '1-0 1' });
    assert.deepEqual(await client.hGetAll(`${name}:k1`), { total: '5', count: '5', last: '5', '_velo:k1': '1-0 3' });
  } finally {
    await claiming.close();
  }
  assert.throws(() => redisMaterialize({ client, name, ...features, claimIdle: 0 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('close() cuts a blocking read short; bad options are refused with a code', async () => {
  const view = redisMaterialize({ client, name: fresh('close'), partitions: 2, ...features });
  await new Promise((resolve) => setTimeout(resolve, 50));
  await view.close();
  await view.done;
  await view.close();
  assert.throws(() => redisMaterialize({ client, name: 'x', fields: features.fields }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => redisMaterialize({ client, name: 'x', ...features, batch: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => redisMaterialize({ client, name: 'x', ...features, group: '' }), { code: 'ERR_INVALID_ARG_VALUE' });
});
