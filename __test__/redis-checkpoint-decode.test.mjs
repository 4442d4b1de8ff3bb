// A checkpoint the codec can no longer decode (the function's codec changed between deploys, or the stored
// snapshot is corrupt): the new owner's restored session fails at once, visibly (ERR_VELO_DECODE as its last
// output, after the seq of its snapshot, and to onError), and the events after the checkpoint are not lost:
// its handler took none of them, so they open the key's next session, as events a session never took do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { checkpointTotals, eventually, expectedTotals, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

const worker = (name, errors) =>
  redisWorker(checkpointTotals({}, 0, 10), {
    client,
    name,
    partitions: 1,
    leaseTtl: 1000,
    trimInterval: 0,
    onError: (error) => errors.push(error),
  });

/** Rewrites every snapshot of the partition (`<json header>\n<state>`) with `rewrite(header, state)`. */
async function corrupt(name, rewrite) {
  const key = `velo:{${name}:p0}:ckpt`;
  const all = await client.hGetAll(key);
  assert.equal(Object.keys(all).length, 1, 'one snapshot');
  for (const [sid, value] of Object.entries(all)) {
    const nl = value.indexOf('\n');
    await client.hSet(key, sid, rewrite(value.slice(0, nl), value.slice(nl + 1)));
  }
  return Object.keys(all)[0];
}

const withState = (state) => (header) => `${header}\n${state}`;
for (const [what, rewrite] of [
  ['a corrupt snapshot', withState('{"total": 1, "cou')],
  ['a snapshot of another codec (bytes JSON cannot read)', withState('\u0000\u0001\u0002msgpack')],
  // The header the worker writes before the state: a corrupt one wedged the partition (a SyntaxError at every
  // read of the snapshots) or, well-formed but wrong, restored the session at no seq and lost its outputs.
  ['a snapshot whose header is garbage', () => 'garbage'],
  ['an empty snapshot', () => ''],
  ['a snapshot whose header is JSON of the wrong shape', (_header, state) => `{"seq":"x"}\n${state}`],
  [
    'a snapshot whose last input is not a string',
    (header, state) => `${JSON.stringify({ ...JSON.parse(header), input: 7 })}\n${state}`,
  ],
  [
    "a snapshot whose pending timer's key is not a string",
    (header, state) => {
      const h = JSON.parse(header);
      return `${JSON.stringify({ ...h, timers: 1, pending: [[1, Date.now() + 600_000, Buffer.from('{}').toString('base64'), 7]] })}\n${state}`;
    },
  ],
  // A pending timer's payload is part of the snapshot: it failed the session later, as an undecodable entry of
  // an id no log holds, with nothing sent to onError.
  [
    "a snapshot whose pending timer's payload cannot be decoded",
    (header, state) => {
      const h = JSON.parse(header);
      return `${JSON.stringify({ ...h, timers: 1, pending: [[1, Date.now() + 600_000, Buffer.from('{nope').toString('base64')]] })}\n${state}`;
    },
  ],
]) {
  test(`${what}: the restored session fails with ERR_VELO_DECODE after its snapshot's seq, and the events after the checkpoint open the key's next session (none lost)`, async () => {
    const name = fresh('undecodable');
    const producer = redisProducer({ client, name, partitions: 1 });
    const errorsA = [];
    const a = worker(name, errorsA);
    // 25 events: a checkpoint at the 20th output; 5 pending after it.
    await producer.sendMany(Array.from({ length: 25 }, (_, n) => ['k', { n }]));
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 25, 'every output');
    await eventually(async () => (await pendingCount(client, name, 1)) === 5, 'the checkpoint at the 20th event acked');
    await a.close();
    assert.deepEqual(errorsA, []);
    const sid = await corrupt(name, rewrite);
    const errorsB = [];
    const b = worker(name, errorsB);
    try {
      await producer.sendMany([25, 26].map((n) => ['k', { n }]));
      await eventually(
        async () => (await readAllOutputs(client, name, 1)).length === 25 + 1 + 7,
        "the failure and the next session's outputs",
      );
      const outputs = await readAllOutputs(client, name, 1);
      const failed = outputs.filter((o) => o.sid === sid);
      assert.equal(failed.length, 26);
      assert.deepEqual(failed.at(-1).error.code, 'ERR_VELO_DECODE');
      assert.match(failed.at(-1).error.message, /could not decode the checkpoint of session/);
      assert.equal(failed.at(-1).seq, 26, 'after the 25 outputs written');
      // The next session: the 5 events the checkpoint did not cover and the 2 new ones, from a fresh state.
      const next = outputs.filter((o) => o.sid !== sid);
      assert.equal(new Set(next.map((o) => o.sid)).size, 1);
      assert.deepEqual(
        next.map((o) => o.value),
        expectedTotals([20, 21, 22, 23, 24, 25, 26]),
      );
      assert.deepEqual(
        next.map((o) => o.seq),
        [1, 2, 3, 4, 5, 6, 7],
      );
      assert.deepEqual(
        errorsB.map((e) => e.code),
        ['ERR_VELO_DECODE'],
      );
      // The failed session's snapshot is gone with it; the next session holds its 7 events.
      await eventually(
        async () => (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 0 && (await pendingCount(client, name, 1)) === 7,
        'the failed session ended',
      );
    } finally {
      await b.close();
    }
  });
}

const require = createRequire(import.meta.url);

test('a snapshot records each pending timer\'s key as a fourth element (a timer without one has three), and reads back the same', () => {
  const { parseSnapshot, snapshotValue } = require('../dist/durable/common/stored.js');
  const snapshot = {
    sid: 'k@1-0',
    key: 'k',
    seq: 3,
    lastTime: 5,
    events: 4,
    state: '{"n":1}',
    timers: 3,
    pending: [
      [2, 9, Buffer.from('{"a":1}'), 'x'],
      [3, 10, Buffer.from('{"b":2}')],
    ],
  };
  const value = snapshotValue(snapshot);
  assert.deepEqual(JSON.parse(value.slice(0, value.indexOf('\n'))).pending, [
    [2, 9, Buffer.from('{"a":1}').toString('base64'), 'x'],
    [3, 10, Buffer.from('{"b":2}').toString('base64')],
  ]);
  const back = parseSnapshot('k@1-0', Buffer.from(value));
  assert.deepEqual(
    back.pending.map(([id, time, payload, key]) => [id, time, payload.toString(), key]),
    [
      [2, 9, '{"a":1}', 'x'],
      [3, 10, '{"b":2}', undefined],
    ],
  );
  assert.equal(back.pending[1].length, 3);
});
