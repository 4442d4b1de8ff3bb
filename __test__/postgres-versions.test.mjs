// Versions on Postgres from outside the workers (postgresVersions): status() reads live sessions per version (the
// sessions' openings), live workers and what they own; drained(version) waits until no live session runs on the
// version and no live worker of it owns a partition. A v1 session handed to a v2 worker that still runs v1 keeps
// drained('v1') pending until it ends; arguments are refused with the codes redisVersions gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { postgresOutputs, postgresProducer, postgresVersions, postgresWorker } from 'velo-stream/postgres';
import { eventually } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_versions';
const PARTITIONS = 3;
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const shared = (name) => ({ pool: pool(), schema: SCHEMA, name, partitions: PARTITIONS });

/** Version `v`'s running total: each output says its version; an event `{ stop: true }` ends the session. */
const versioned = (v) =>
  streamFn(
    async function* versioned(events) {
      let total = 0;
      for await (const e of events) {
        if (e.stop) return;
        total += e.n;
        yield { v, n: e.n, total };
      }
    },
    { idleTimeout: 60_000 },
  );

/** Every output of `name` now (a read that stops once it has waited `ms` for more). */
async function outputs(name, ms = 300) {
  const got = [];
  for await (const o of postgresOutputs({ ...shared(name), pollInterval: 20, signal: AbortSignal.timeout(ms) })) got.push(o);
  return got;
}

test('postgresVersions: status() before any worker; drained() refuses bad arguments and a version nothing runs or holds, and stops at its signal', async () => {
  const name = fresh('status');
  const versions = postgresVersions(shared(name));
  assert.equal(versions.partitions, PARTITIONS);
  assert.deepEqual(await versions.status(), { sessions: {}, workers: [], unowned: [0, 1, 2] });
  await assert.rejects(versions.drained('never'), {
    code: 'ERR_VELO_VERSION_UNKNOWN',
    message: /no live worker runs version "never" and no live session is on it .*Versions there now: none/,
  });
  await versions.drained('never', { ifUnknown: 'resolve' });
  await assert.rejects(versions.drained('v1', { ifUnknown: 'yes' }), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(versions.drained('v1', { ifUnkown: 'resolve' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "ifUnkown"/,
  });
  await assert.rejects(versions.drained(''), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(versions.drained('__proto__'), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(versions.drained('x'.repeat(65)), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(versions.drained(7), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(versions.drained('v1', { interval: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(versions.drained('v1', { interval: Infinity }), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(versions.drained('v1', { signal: {} }), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(versions.drained('v1', null), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => postgresVersions({ ...shared(name), client: {} }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => postgresVersions({ ...shared(name), pool: {} }), { code: 'ERR_INVALID_ARG_TYPE' });
  const worker = postgresWorker(versioned('v1'), { ...shared(name), leaseTtl: 900, version: 'v1' });
  try {
    await eventually(() => worker.stats().owned.length === PARTITIONS, 'the worker owns every partition');
    const status = await versions.status();
    assert.deepEqual(
      status.workers.map((w) => [w.id, w.version, w.runs, w.partitions, w.superseded]),
      [[worker.id, 'v1', ['v1'], [0, 1, 2], false]],
    );
    assert.deepEqual(status.unowned, []);
    await assert.rejects(versions.drained('vl'), { code: 'ERR_VELO_VERSION_UNKNOWN', message: /Versions there now: "v1"/ });
    const controller = new AbortController();
    const waiting = versions.drained('v1', { interval: 20, signal: controller.signal });
    let settled = false;
    waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await sleep(300);
    assert.equal(settled, false, 'not drained while a v1 worker owns partitions');
    const reason = new Error('deploy cancelled');
    controller.abort(reason);
    await assert.rejects(waiting, (e) => e === reason);
    const afterClose = versions.drained('v1', { interval: 20 });
    await sleep(100);
    await worker.close();
    await afterClose;
    // A closed worker left: nothing live.
    assert.deepEqual(await versions.status(), { sessions: {}, workers: [], unowned: [0, 1, 2] });
  } finally {
    await worker.close();
  }
});

test("a rolling deploy v1 -> v2: a v1 session handed to a v2 worker (that still runs v1) stays on v1, and keeps drained('v1') pending until it ends; new sessions open on v2", async () => {
  const name = fresh('deploy');
  const versions = postgresVersions(shared(name));
  const producer = postgresProducer(shared(name));
  const errors = [];
  const onError = (e) => errors.push(e);
  const v1 = postgresWorker(versioned('v1'), { ...shared(name), leaseTtl: 900, version: 'v1', onError });
  let v2;
  try {
    await eventually(() => v1.stats().owned.length === PARTITIONS, 'v1 owns every partition');
    await producer.send('old', { n: 1 });
    await eventually(async () => (await outputs(name, 100)).length === 1, "the v1 session's first output");
    assert.deepEqual((await versions.status()).sessions, { v1: 1 });
    v2 = postgresWorker(versioned('v2'), {
      ...shared(name),
      leaseTtl: 900,
      version: 'v2',
      versions: { v1: versioned('v1') },
      onError,
    });
    const drained = versions.drained('v1', { interval: 25 });
    let done = false;
    drained.then(() => (done = true));
    // v1 hands its partitions over (superseded); v2 takes them all, the v1 session included.
    await eventually(async () => {
      const s = await versions.status();
      const byVersion = Object.fromEntries(s.workers.map((w) => [w.version, w]));
      return (
        byVersion.v1?.superseded === true &&
        byVersion.v1.partitions.length === 0 &&
        byVersion.v2?.partitions.length === PARTITIONS
      );
    }, 'v2 owns every partition, v1 superseded');
    await producer.send('old', { n: 2 });
    await producer.send('new', { n: 10 });
    await eventually(async () => (await outputs(name, 100)).length === 3, 'three outputs');
    assert.deepEqual((await versions.status()).sessions, { v1: 1, v2: 1 });
    // The v1 worker is still up, superseded, owning nothing: only the v1 session holds the drain back.
    await sleep(500);
    assert.equal(done, false, "drained('v1') pending while a v1 session lives");
    await producer.send('old', { stop: true });
    await drained;
    assert.deepEqual((await versions.status()).sessions, { v2: 1 });
    const got = await outputs(name);
    assert.deepEqual(
      got.filter((o) => o.key === 'old').map((o) => o.value),
      [
        { v: 'v1', n: 1, total: 1 },
        { v: 'v1', n: 2, total: 3 },
      ],
      'the session kept its version across the hand-over',
    );
    assert.deepEqual(
      got.filter((o) => o.key === 'new').map((o) => o.value),
      [{ v: 'v2', n: 10, total: 10 }],
    );
    // drained('v2') is not: a v2 session lives, and the v2 worker owns partitions.
    let v2Done = false;
    const v2Drained = versions.drained('v2', { interval: 25, signal: AbortSignal.timeout(400) });
    v2Drained.then(
      () => (v2Done = true),
      () => {},
    );
    await assert.rejects(v2Drained, { name: 'TimeoutError' });
    assert.equal(v2Done, false);
    assert.deepEqual(errors, []);
  } finally {
    await v2?.close();
    await v1.close();
  }
});
