// velo-stream/durable on Postgres: sessionWorker, sessionProducer and sessionOutputs (and a key's reader, its
// cursor, the versions view, a recording and a fleet limiter) with a pg.Pool as `client` run the function as
// velo-stream/postgres does, in `schema`; and velo-stream/postgres' deprecated names still run it, on the same tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import {
  exportRecording,
  fleetLimiter,
  keyCursor,
  keyOutputs,
  sessionOutputs,
  sessionProducer,
  sessionVersions,
  sessionWorker,
} from 'velo-stream/durable';
import { postgresOutputs, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { totals } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_durable';
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;

/** The first `n` items of `reader` (fails after `ms`). */
async function take(reader, n, ms = 20_000) {
  const got = [];
  const timer = setTimeout(() => reader[Symbol.asyncDispose](), ms);
  try {
    for await (const item of reader) {
      got.push(item);
      if (got.length === n) break;
    }
  } finally {
    clearTimeout(timer);
  }
  assert.equal(got.length, n, `${got.length} of ${n} outputs within ${ms} ms`);
  return got;
}

test('sessionWorker, sessionProducer and sessionOutputs round trip on a pg.Pool, in its schema', async () => {
  const shared = { client: pool(), schema: SCHEMA, name: fresh('durable'), partitions: 4 };
  const worker = sessionWorker(totals({ idleTimeout: 60_000 }), { ...shared, leaseTtl: 2000, pollInterval: 20 });
  const producer = sessionProducer(shared);
  try {
    const from = await keyCursor({ ...shared, key: 'a' });
    await producer.sendMany([
      ['a', { n: 1 }],
      ['b', { n: 10 }],
      ['a', { n: 2 }],
    ]);
    const outputs = await take(sessionOutputs({ ...shared, pollInterval: 20 }), 3);
    assert.deepEqual(
      outputs.filter((o) => o.key === 'a').map((o) => o.value.total),
      [1, 3],
    );
    assert.deepEqual(
      outputs.filter((o) => o.key === 'b').map((o) => o.value.total),
      [10],
    );
    const ofA = await take(keyOutputs({ ...shared, key: 'a', from, pollInterval: 20 }), 2);
    assert.deepEqual(
      ofA.map((o) => o.value.total),
      [1, 3],
    );
    assert.equal(typeof (await sessionVersions(shared).status()), 'object');
    const recording = await exportRecording({ ...shared, keys: ['a'] });
    assert.equal(recording.name, shared.name);
    assert.deepEqual(recording.keys, ['a']);
    assert.equal(recording.parts.flatMap((p) => p.outputs).length, 2, "a's two outputs are recorded");
    // In the schema given: the tables of velo-stream/postgres, where its reader finds the same outputs.
    const [first] = await take(postgresOutputs({ pool: pool(), schema: SCHEMA, name: shared.name, partitions: 4 }), 1);
    assert.deepEqual(
      first,
      outputs.find((o) => o.id === first.id && o.partition === first.partition),
    );
  } finally {
    await worker.close();
  }
});

test('fleetLimiter on a pg.Pool: stats() says backendDown (and postgresDown)', async () => {
  const limiter = fleetLimiter({ client: pool(), schema: SCHEMA, name: fresh('lim'), concurrency: 1 });
  try {
    const permit = await limiter.acquire('x');
    assert.equal(permit.source, 'postgres');
    permit.release();
    const stats = limiter.stats();
    assert.equal(stats.backendDown, false);
    assert.equal(stats.postgresDown, false);
  } finally {
    await limiter.close();
  }
});

test("velo-stream/postgres' deprecated names still run the function, on the tables velo-stream/durable reads", async () => {
  const shared = { pool: pool(), schema: SCHEMA, name: fresh('old'), partitions: 2 };
  const worker = postgresWorker(totals({ idleTimeout: 60_000 }), { ...shared, pollInterval: 20 });
  try {
    await postgresProducer(shared).send('k', { n: 5 });
    const [old] = await take(postgresOutputs({ ...shared, pollInterval: 20 }), 1);
    assert.equal(old.value.total, 5);
    const { pool: client, ...rest } = shared;
    const [same] = await take(sessionOutputs({ ...rest, client }), 1);
    assert.deepEqual(same, old);
  } finally {
    await worker.close();
  }
});

test('a fleet limiter on Postgres full at its concurrency refuses with no wait (no Retry-After)', async () => {
  const { fleetLimiter: limiterOf } = await import('velo-stream/durable');
  const full = limiterOf({ client: pool(), name: `full-${process.pid}`, concurrency: 1, mode: 'reject' });
  try {
    const permit = await full.acquire({});
    const refused = await full.acquire({}).catch((error) => error);
    assert.equal(refused.code, 'ERR_VELO_RATE_LIMITED');
    assert.equal(refused.retryAfter, undefined, 'a full concurrency knows no wait');
    assert.equal(refused.headers?.['retry-after'], undefined);
    permit.release();
  } finally {
    await full.close();
  }
});

test("sessionOutputs' count is 1 to 10,000 on Postgres, as on Redis: 10,001 is refused, 10,000 reads", async () => {
  const shared = { client: pool(), schema: SCHEMA, name: fresh('count'), partitions: 2 };
  const { client, ...rest } = shared;
  for (const [name, read] of [
    ['sessionOutputs', (count) => sessionOutputs({ ...shared, count })],
    ['postgresOutputs', (count) => postgresOutputs({ ...rest, pool: client, count })],
    ['keyOutputs', (count) => keyOutputs({ ...shared, key: 'k', count })],
  ]) {
    for (const count of [10_001, 100_000, 0]) {
      assert.throws(() => read(count), { code: 'ERR_OUT_OF_RANGE', message: new RegExp(`^${name}\\(\\): `) }, `${name} ${count}`);
    }
  }
  const worker = sessionWorker(totals({ idleTimeout: 60_000 }), { ...shared, pollInterval: 20 });
  try {
    await sessionProducer(shared).sendMany([
      ['a', { n: 1 }],
      ['b', { n: 2 }],
    ]);
    const outputs = await take(sessionOutputs({ ...shared, count: 10_000, pollInterval: 20 }), 2);
    assert.deepEqual(outputs.map((o) => o.value.total).sort(), [1, 2]);
    assert.equal((await take(keyOutputs({ ...shared, key: 'a', count: 10_000, pollInterval: 20 }), 1))[0].value.total, 1);
  } finally {
    await worker.close();
  }
});

test('readers sharing one signal (sessionOutputs, keyOutputs): at most one abort listener on it, no MaxListenersExceededWarning, all end at its abort', async () => {
  const shared = { client: pool(), schema: SCHEMA, name: fresh('shared'), partitions: 2 };
  const warnings = [];
  const onWarning = (warning) => warnings.push(warning.name);
  process.on('warning', onWarning);
  const controller = new AbortController();
  const { signal } = controller;
  try {
    // (Nothing is ever sent: every reader polls, pausing between its reads.)
    const all = async (reader) => {
      const seen = [];
      for await (const item of reader) seen.push(item);
      return seen;
    };
    const reading = [
      ...Array.from({ length: 12 }, () => all(sessionOutputs({ ...shared, pollInterval: 20, signal }))),
      ...Array.from({ length: 12 }, (_, i) =>
        all(keyOutputs({ ...shared, key: `k${i}`, start: 'end', pollInterval: 20, signal })),
      ),
    ];
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      assert.ok(getEventListeners(signal, 'abort').length <= 1, `${getEventListeners(signal, 'abort').length} listeners`);
    }
    controller.abort();
    assert.deepEqual(
      await Promise.all(reading),
      Array.from({ length: 24 }, () => []),
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    controller.abort();
  }
});
