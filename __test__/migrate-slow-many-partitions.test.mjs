// A slow `migrate` on a worker that takes many partitions at once, on Redis and on Postgres (sessionWorker on a
// private server). A v1 worker of 8 partitions with a short lease runs live sessions on every partition (each
// checkpointed, waiting for its next event), then closes; one v2 worker whose `migrate` holds the event loop for a
// tenth of the lease per call (CPU-bound, synchronous: the most docs/durable/migrate.md, "A slow migrate", allows)
// takes every partition at once and must adopt them all. Its openings share one slice of the event loop (the
// worker's, not one per partition), and past it pause as long as they held the loop, so its renewals complete
// between them: it adopts every session with one migrate call each, loses no lease, each session answers its next
// event on v2 exactly, and it closes cleanly. (With a slice per partition, each turn of the event loop ran one
// migrate per partition before the renewals: the worker lost every partition before its adoptions committed, took
// them back and migrated again, for ever. With the slice the worker's but a pause of one turn only, a renewal that
// needs a few turns, its reply and on Postgres a pooled connection, waited one migrate per turn and often came late.)
// And a v2 worker started on a backlog of one partition with many sessions to adopt answers the backlog's first
// event after a few adoptions, not after all of them: an entry's session is adopted first at each turn, the others in
// what is left of the slice. (Before, the replay began once every session was adopted.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';
import { checkpointed } from './helpers/redis-fixtures.mjs';
import { streamFn } from '../index.mjs';

useRedis();
usePostgres();

const PARTITIONS = 8;
const LEASE = 1000;
const KEYS_PER_PARTITION = 6;
/** Each wait's bound: generous on a loaded machine (the adoptions take 48 migrate calls, 4.8 s, when kept). */
const BOUND = 30_000;

/** One migrate call's CPU time: a tenth of the lease. */
const MIGRATE_MS = LEASE / 10;

/** Each backend's function (`shared`) and what its workers and readers add (`reading`). */
const BACKENDS = {
  redis: () => ({ shared: { client, name: fresh('migrate-slow-wide') }, reading: {} }),
  postgres: () => ({
    shared: { client: pool(), schema: 'velo_migrate_slow_wide', name: fresh('migrate-slow-wide') },
    reading: { pollInterval: 20 },
  }),
};

/** Waits until `check()` holds, at most `ms`; `describe()` says, on a timeout, how far it got. */
async function until(check, describe, ms = BOUND) {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** `perPartition` keys of each partition, by the producer's own partitioning. */
function keysOfEveryPartition(producer, perPartition) {
  const byPartition = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 0; byPartition.some((keys) => keys.length < perPartition); i++) {
    const keys = byPartition[producer.partitionOf(`k${i}`)];
    if (keys.length < perPartition) keys.push(`k${i}`);
  }
  return byPartition.flat();
}

/** Every output of the function, read from the start as they come (`got`); `stop()` ends the reading. */
function readAll(options) {
  const controller = new AbortController();
  const got = [];
  const reading = (async () => {
    for await (const o of sessionOutputs({ ...options, signal: controller.signal })) got.push(o);
  })().catch((error) => {
    if (!controller.signal.aborted) throw error;
  });
  return {
    got,
    async stop() {
      controller.abort();
      await reading;
    },
  };
}

/** A `migrate` that holds the event loop for `ms` per call (CPU-bound, synchronous), each call's version in `calls`. */
function slowMigrate(ms, calls) {
  return (state, fromVersion) => {
    const until = performance.now() + ms;
    while (performance.now() < until);
    calls.push(fromVersion);
    return { ...state, from: fromVersion };
  };
}

/**
 * Exact outputs, read after a settling wait (a late duplicate would show): per key one session, seq 1 by v1, seq 2 by
 * v2 from the migrated checkpoint, each once.
 */
async function assertAdopted(got, keys) {
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(got.length, 2 * keys.length, 'no output twice');
  for (const key of keys) {
    const list = got.filter((o) => o.key === key).sort((a, b) => a.seq - b.seq);
    assert.equal(new Set(list.map((o) => o.sid)).size, 1, `${key}: one session`);
    assert.deepEqual(
      list.map((o) => [o.seq, o.value]),
      [
        [1, { v: 'v1', total: 1 }],
        [2, { v: 'v2', total: 3, from: 'v1' }],
      ],
      key,
    );
  }
}

for (const [backend, made] of Object.entries(BACKENDS)) {
  test(`${backend}: a v2 worker taking ${PARTITIONS} partitions at once adopts every live v1 session with a migrate of a tenth of the lease per call (CPU-bound), and each session answers its next event on v2`, async (t) => {
    const { shared, reading } = made();
    const producer = sessionProducer({ ...shared, partitions: PARTITIONS });
    const common = { ...shared, ...reading, partitions: PARTITIONS };
    const workers = { ...common, leaseTtl: LEASE };
    const keys = keysOfEveryPartition(producer, KEYS_PER_PARTITION);
    const errors = [];
    const onError = (error) => errors.push(error);
    const reader = readAll(common);
    const v1 = sessionWorker(checkpointed('v1'), { ...workers, version: 'v1', onError });
    let v2;
    const calls = [];
    const started = performance.now();
    let adoptedIn;
    try {
      // A live session on each key, every partition's, each checkpointed after its first event.
      await producer.sendMany(keys.map((k) => [k, { n: 1 }]));
      await until(
        () => reader.got.length === keys.length,
        () => `the v1 outputs (${reader.got.length} of ${keys.length})`,
      );
      await v1.close();
      assert.equal(v1.stats().lost, 0, 'v1 lost no lease');

      const v2Started = performance.now();
      v2 = sessionWorker(checkpointed('v2'), {
        ...workers,
        version: 'v2',
        // CPU-bound, synchronous: MIGRATE_MS of the event loop per session.
        migrate: slowMigrate(MIGRATE_MS, calls),
        onError,
      });
      const progress = () =>
        `migrated ${v2.stats().migrated}, migrate called ${calls.length} times, leases lost ${v2.stats().lost}`;
      // Bounded: with a slice per partition the worker loses its leases and migrates again, for ever.
      await until(
        () => v2.stats().migrated >= keys.length,
        () => `every session adopted (${progress()})`,
      );
      adoptedIn = performance.now() - v2Started;
      await producer.sendMany(keys.map((k) => [k, { n: 2 }]));
      await until(
        () => reader.got.length >= 2 * keys.length,
        () => `every session's v2 output (${reader.got.length - keys.length} of ${keys.length}; ${progress()})`,
      );
      await assertAdopted(reader.got, keys);
      // Its leases kept, each session was adopted once.
      assert.deepEqual(calls, Array(keys.length).fill('v1'), 'migrate(state, "v1") once for each session');
      assert.equal(v2.stats().migrated, keys.length);
      assert.equal(v2.stats().lost, 0, 'no lease lost');
      assert.deepEqual(v2.stats().owned.length, PARTITIONS);
      await v2.close();
      assert.equal(v2.stats().released, PARTITIONS, 'the close released every partition');
      assert.equal(v2.stats().lost, 0, 'none lost at the close');
      assert.deepEqual(errors, []);
    } finally {
      await v2?.close();
      await v1.close();
      await reader.stop();
      const total = Math.round(performance.now() - started);
      const s = v2?.stats();
      t.diagnostic(
        `${keys.length} sessions adopted in ${Math.round(adoptedIn ?? NaN)} ms; migrate called ${calls.length} times; leases lost ${s?.lost}; renewals late by at most ${Math.round(s?.renewals.lateMax ?? NaN)} ms; retried errors ${errors.length}; whole test ${total} ms`,
      );
    }
  });
}

/** Sessions of the backlog test, all on one partition, and each one's migrate call's CPU time. */
const BACKLOG_SESSIONS = 24;
const BACKLOG_MIGRATE_MS = 20;

for (const [backend, made] of Object.entries(BACKENDS)) {
  test(`${backend}: a v2 worker started on a backlog answers its first events before it has adopted every live v1 session of their partition (${BACKLOG_SESSIONS} sessions, a migrate of ${BACKLOG_MIGRATE_MS} ms each)`, async (t) => {
    const { shared, reading } = made();
    const common = { ...shared, ...reading, partitions: 1 };
    const workers = { ...common, leaseTtl: LEASE };
    const producer = sessionProducer({ ...shared, partitions: 1 });
    const keys = Array.from({ length: BACKLOG_SESSIONS }, (_, i) => `b${i}`);
    const errors = [];
    const onError = (error) => errors.push(error);
    const reader = readAll(common);
    const v1 = sessionWorker(checkpointed('v1'), { ...workers, version: 'v1', onError });
    let v2;
    const calls = [];
    /** How many sessions `migrate` had adopted when v2's handler took its first event of the backlog. */
    let adoptedAtFirstAnswer;
    try {
      await producer.sendMany(keys.map((k) => [k, { n: 1 }]));
      await until(
        () => reader.got.length === keys.length,
        () => `the v1 outputs (${reader.got.length} of ${keys.length})`,
      );
      await v1.close();
      // The backlog, written while no worker runs: one event per key, last key first.
      await producer.sendMany([...keys].reverse().map((k) => [k, { n: 2 }]));

      const v2fn = streamFn(
        async function* v2(events, ctx) {
          let { total = 0, from } = ctx.restored ?? {};
          for await (const e of events) {
            adoptedAtFirstAnswer ??= calls.length;
            total += e.n;
            yield { v: 'v2', total, from };
            ctx.checkpoint({ total, from });
          }
        },
        { idleTimeout: 60_000 },
      );
      v2 = sessionWorker(v2fn, {
        ...workers,
        version: 'v2',
        migrate: slowMigrate(BACKLOG_MIGRATE_MS, calls),
        onError,
      });
      await until(
        () => reader.got.length >= 2 * keys.length,
        () =>
          `every session's v2 output (${reader.got.length - keys.length} of ${keys.length}; migrate called ${calls.length} times)`,
      );
      // The first event of the backlog opened its own session: it did not wait for the partition's other adoptions.
      assert.ok(
        adoptedAtFirstAnswer < BACKLOG_SESSIONS / 2,
        `the first event was answered after ${adoptedAtFirstAnswer} of ${BACKLOG_SESSIONS} adoptions`,
      );
      await assertAdopted(reader.got, keys);
      assert.deepEqual(calls, Array(keys.length).fill('v1'), 'migrate(state, "v1") once for each session');
      assert.equal(v2.stats().lost, 0, 'no lease lost');
      await v2.close();
      assert.deepEqual(errors, []);
    } finally {
      await v2?.close();
      await v1.close();
      await reader.stop();
      t.diagnostic(`the first event of the backlog answered after ${adoptedAtFirstAnswer} of ${calls.length} adoptions`);
    }
  });
}
