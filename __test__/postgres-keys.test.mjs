// Keys Postgres cannot store (docs/postgres.md#the-contract-and-where-the-backends-differ): Postgres text holds no
// NUL character, so a key with one is refused at the call with ERR_INVALID_ARG_VALUE, as other bad keys are, before
// anything is written or read: by the producer (not a SendError whose `null` ids say to resend, and no event of the
// same sendMany written), the key readers, the HTTP helpers (400, no statement run) and the recordings' `keys`. And
// a refused encoding names its call (`send()`, `sendMany()`) on Postgres and in testWorker, as on Redis.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { streamFn } from 'velo-stream';
import {
  fnv1a,
  postgresCursor,
  postgresKeyOutputs,
  postgresNdjson,
  postgresProducer,
  postgresRecording,
  postgresSse,
} from 'velo-stream/postgres';
import { testWorker } from 'velo-stream/testing';
import { get } from './helpers/resume.mjs';
import { countingPool, pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_keys';
const PARTITIONS = 4;
const NUL = 'a\u0000b';
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;
const shared = (name, p = pool()) => ({ pool: p, schema: SCHEMA, name, partitions: PARTITIONS });
const nulRefused = (error) => {
  assert.equal(error.code, 'ERR_INVALID_ARG_VALUE', error.message);
  assert.ok(error instanceof TypeError);
  assert.match(error.message, /^The key must not hold a NUL character on Postgres/);
  return true;
};
const entries = async (name) =>
  (await pool().query(`SELECT key FROM ${SCHEMA}.entries WHERE fn = $1 ORDER BY key`, [name])).rows.map((r) => r.key);

test('the producer refuses a key with a NUL at the call, before anything is written: not a SendError to resend', async () => {
  const name = fresh('producer');
  const producer = postgresProducer(shared(name));
  await producer.send('first', 1);
  await assert.rejects(producer.send(NUL, 1), nulRefused);
  await assert.rejects(producer.send(`x\n${NUL}`, 1), nulRefused);
  // The good keys of the call are not written either (they are in other partitions than the NUL one's, some).
  const good = Array.from({ length: 8 }, (_, i) => [`good${i}`, i]);
  await assert.rejects(producer.sendMany([...good.slice(0, 4), [NUL, 9], ...good.slice(4)]), nulRefused);
  assert.throws(() => producer.partitionOf(NUL), nulRefused);
  await assert.rejects(producer.lag(NUL), nulRefused);
  assert.deepEqual(await entries(name), ['first'], 'nothing of a refused call written');
  // The same keys without the NUL go through.
  assert.equal((await producer.sendMany(good)).length, 8);
  assert.equal((await entries(name)).length, 9);
});

test('the key readers and the recordings refuse a key with a NUL at the call; the HTTP helpers answer 400, before any statement', async () => {
  const name = fresh('readers');
  await postgresProducer(shared(name)).send('ok', 1);
  for (const which of [{ key: NUL }, { keys: ['ok', NUL] }]) {
    assert.throws(() => postgresKeyOutputs({ ...shared(name), ...which }), nulRefused, JSON.stringify(which));
    await assert.rejects(postgresCursor({ ...shared(name), ...which }), nulRefused);
  }
  await assert.rejects(postgresRecording({ ...shared(name), keys: [NUL] }), nulRefused);
  await assert.rejects(postgresRecording({ ...shared(name), keys: ['ok', NUL] }), nulRefused);
  assert.equal((await postgresRecording({ ...shared(name), keys: ['ok'] })).parts.length, 1);

  const counting = countingPool();
  const failures = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const [, kind, key] = url.pathname.split('/');
    const keys = url.searchParams.get('keys');
    const which = keys === null ? { key: decodeURIComponent(key) } : { keys: keys.split(',').map(decodeURIComponent) };
    const serve = kind === 'sse' ? postgresSse : postgresNdjson;
    const own = kind === 'sse' ? { heartbeat: 0 } : {};
    serve(req, res, { ...shared(name, counting), ...which, ...own }).catch((error) => failures.push(error));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    const before = counting.queries();
    for (const path of ['/sse/a%00b', '/ndjson/a%00b', '/ndjson/x?keys=ok,a%2500b']) {
      const r = await get(`${base}${path}`);
      assert.equal(r.status, 400, `${path}: ${r.text}`);
      const { error } = JSON.parse(r.text);
      assert.equal(error.code, 'ERR_INVALID_ARG_VALUE', path);
      assert.match(error.message, /must not hold a NUL character on Postgres/);
    }
    // With a client's own position too (Last-Event-ID, a cursor of the key's partition): the key is refused.
    const r = await get(`${base}/sse/a%00b`, { 'Last-Event-ID': `${fnv1a(NUL) % PARTITIONS}:0-0` });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.text).error.code, 'ERR_INVALID_ARG_VALUE');
    assert.equal(counting.queries(), before, 'no statement for a key with a NUL');
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  assert.deepEqual(failures, [], 'no helper call rejected');
});

test('a refused encoding names the call and the key on Postgres and in testWorker, as on Redis', async () => {
  const producer = postgresProducer(shared(fresh('encode')));
  await assert.rejects(producer.send('cart-7', undefined), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: 'Could not encode the event of send() for key "cart-7": JSON cannot carry the value undefined',
  });
  await assert.rejects(producer.sendMany([['cart-8', () => {}]]), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: 'Could not encode the event of sendMany() for key "cart-8": JSON cannot carry the value function',
  });
  await assert.rejects(producer.send('big', 10n), { code: 'ERR_VELO_ENCODE', message: /the event of send\(\) for key "big"/ });
  const echo = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const worker = testWorker(echo);
  try {
    assert.throws(() => worker.send('cart-7', undefined), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: 'Could not encode the event of send() for key "cart-7": JSON cannot carry the value undefined',
    });
  } finally {
    await worker.close();
  }
});
