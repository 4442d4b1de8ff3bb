// What a worker's codec is handed: the exact bytes a producer wrote, whatever the codec (a worker on jsonCodec
// reads its payloads as text, every other codec as bytes), and for jsonCodec the same values as from bytes, also
// for text that spans the socket's chunks.
import test from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { bufferCodec, jsonCodec, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';

useRedis();

/** Runs `fn` on a worker with `codec` over `events` ([key, value]); the first `count` outputs, read with the codec. */
async function roundTrip(codec, fn, events, count = events.length) {
  const name = fresh('codec');
  const partitions = 2;
  const worker = redisWorker(fn, { client, name, partitions, codec, leaseTtl: 2000 });
  try {
    await redisProducer({ client, name, partitions, codec }).sendMany(events);
    const items = [];
    const signal = AbortSignal.timeout(20_000);
    try {
      for await (const item of redisOutputs({ client, name, partitions, codec, signal })) {
        items.push(item);
        if (items.length === count) break;
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    }
    assert.equal(items.length, count, 'every output read');
    return items;
  } finally {
    await worker.close();
  }
}

const echo = streamFn(
  async function* (events) {
    for await (const e of events) yield e;
  },
  { idleTimeout: 0 },
);

test('bufferCodec: a worker gets the bytes written, also bytes that are not UTF-8', async () => {
  const payloads = [
    Buffer.from([0xff, 0xfe, 0x00, 0x80]),
    Buffer.from([0xc3]), // the first byte of a two-byte character alone
    Buffer.from([0xed, 0xa0, 0x80]), // a surrogate encoded as UTF-8 (not valid UTF-8)
    Buffer.from('plain text'),
    Buffer.alloc(0),
  ];
  const items = await roundTrip(
    bufferCodec,
    echo,
    payloads.map((p, i) => [`k${i}`, p]),
  );
  const byKey = new Map(items.map((item) => [item.key, item.value]));
  payloads.forEach((p, i) => assert.deepEqual(byKey.get(`k${i}`), p, `k${i}`));
});

test("a codec of the user's own is handed each payload's bytes", async () => {
  // Each value a byte array with a checksum byte: a byte changed on the way fails decode().
  const seen = [];
  const checked = {
    encode: (bytes) => Buffer.concat([Buffer.from(bytes), Buffer.from([bytes.reduce((a, b) => a ^ b, 0x5a)])]),
    decode: (data) => {
      seen.push(Buffer.isBuffer(data));
      const body = [...data.subarray(0, data.length - 1)];
      assert.equal(
        data[data.length - 1],
        body.reduce((a, b) => a ^ b, 0x5a),
        'checksum',
      );
      return body;
    },
  };
  const values = [[0xff, 0x00, 0xc0], [0xe2, 0x82], [0x7f], []];
  const items = await roundTrip(
    checked,
    echo,
    values.map((v, i) => [`k${i}`, v]),
  );
  const byKey = new Map(items.map((item) => [item.key, item.value]));
  values.forEach((v, i) => assert.deepEqual(byKey.get(`k${i}`), v, `k${i}`));
  assert.ok(seen.length >= values.length && seen.every(Boolean), 'decode() is given Buffers');
});

test('jsonCodec: multi-byte text (also across the socket chunks of a large reply), keys and Buffers in values come back equal', async () => {
  const big = '€𝄞ü'.repeat(40_000); // about 360 KB of UTF-8: several socket chunks in one reply
  const values = [
    { text: big },
    { bytes: Buffer.from([0xff, 0x00, 0xfe]), nested: [{ b: new Uint8Array([1, 2, 3]) }] },
    { s: 'a\u0000b', n: -0.5, t: true },
    'a string alone',
    null,
  ];
  const events = values.map((v, i) => [`ключ-${i}-🔑`, v]);
  const items = await roundTrip(jsonCodec, echo, events);
  const byKey = new Map(items.map((item) => [item.key, item.value]));
  assert.equal(byKey.get('ключ-0-🔑').text, big);
  assert.deepEqual(byKey.get('ключ-1-🔑'), { bytes: Buffer.from([0xff, 0x00, 0xfe]), nested: [{ b: Buffer.from([1, 2, 3]) }] });
  assert.ok(Buffer.isBuffer(byKey.get('ключ-1-🔑').bytes));
  assert.deepEqual(byKey.get('ключ-2-🔑'), { s: 'a\u0000b', n: -0.5, t: true });
  assert.equal(byKey.get('ключ-3-🔑'), 'a string alone');
  assert.equal(byKey.get('ключ-4-🔑'), null);
});
