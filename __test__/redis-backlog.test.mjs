// Backlogs as real deployments meet them (issue 25): 100,000 keys x 5 events written before any worker runs
// (keys interleaved, so each key's events span the backlog), drained with the function's default session slots
// (`maxConcurrent` 1,000, far fewer than the keys). First by one worker process, then by two with one killed -9
// mid-drain. The invariants are read from Redis: every (sid, seq) once, seqs from 1, per key the outputs of the
// sessions the log defines (split by the log's clock), nothing pending; and the lone worker lost no lease. Last,
// a small backlog past the bound of held entries (made small for it) with a share too small to read a key's
// entries again at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { heldBounds } from '#testing';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import {
  checkOutputs,
  eventually,
  expectedTotals,
  pendingCount,
  readAllOutputs,
  sessionsInLog,
  totals,
} from './helpers/redis-fixtures.mjs';

useRedis();

const PARTITIONS = 64;
const KEYS = 100_000;
const ROUNDS = 5;
const TOTAL = KEYS * ROUNDS;
const IDLE = 1000;

async function writeBacklog(name) {
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < KEYS; k += 1000) {
      const pairs = [];
      for (let i = k; i < Math.min(KEYS, k + 1000); i++) pairs.push([`k${i}`, { n: r * KEYS + i }]);
      await producer.sendMany(pairs);
    }
  }
}

/** A worker process with the function's defaults but `idleTimeout` (see redis-worker-child.mjs: the `totals` handler). */
const worker = (name) => workerChild(name, { partitions: PARTITIONS, ttl: 10_000, idle: IDLE, delayMs: 0, trimInterval: 5000 });

/** Outputs of all the workers so far, by their stats lines (cheap to poll, unlike reading 500,000 entries). */
const outputsOf = (...children) => children.reduce((n, c) => n + (lastStats(c)?.outputs ?? 0), 0);

/** Per key, the outputs of the sessions the log defines (split by the log's clock): read before any worker trims it. */
async function expectedByKey(name) {
  const byKey = new Map();
  for (const { key, ns } of (await sessionsInLog(client, name, PARTITIONS, IDLE)).values()) {
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push(...expectedTotals(ns));
  }
  return byKey;
}

async function checkInvariants(name, expected) {
  await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0, 'nothing pending', 120_000);
  const outputs = await readAllOutputs(client, name, PARTITIONS);
  assert.equal(outputs.length, TOTAL, 'one output per event');
  checkOutputs(outputs, expected);
}

test(
  'one worker with the default session slots drains 100,000 keys x 5 events: every invariant, no lease lost',
  { timeout: 600_000 },
  async () => {
    const name = fresh('backlog');
    await writeBacklog(name);
    const expected = await expectedByKey(name);
    const started = Date.now();
    const a = worker(name);
    try {
      await eventually(() => (lastStats(a)?.outputs ?? 0) >= TOTAL, `${TOTAL} outputs`, 400_000);
      await checkInvariants(name, expected);
      const elapsed = Date.now() - started;
      const stats = await stopChild(a);
      assert.equal(stats.lost, 0, 'leases lost');
      assert.equal(stats.fenced, 0, 'writes fenced');
      assert.equal(stats.replayed, 0, 'entries replayed');
      // At most one tick per partition per idle period (a bound from the run's own length, not a timing check):
      // before, every pass over the sessions while the pump was behind wrote one.
      assert.ok(stats.ticks <= PARTITIONS * (Math.ceil(elapsed / IDLE) + 2), `${stats.ticks} ticks in ${elapsed} ms`);
    } finally {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    }
  },
);

test(
  'two workers drain 100,000 keys x 5 events, one killed -9 mid-drain: the survivor takes its partitions over, every invariant',
  { timeout: 600_000 },
  async () => {
    const name = fresh('backlog2');
    await writeBacklog(name);
    const expected = await expectedByKey(name);
    const a = worker(name);
    const b = worker(name);
    try {
      await eventually(() => outputsOf(a, b) >= TOTAL * 0.3, 'a third drained', 400_000);
      await killChild(a);
      await eventually(() => lastStats(b)?.owned.length === PARTITIONS, 'B owns every partition', 60_000);
      await eventually(
        async () => (await readAllOutputs(client, name, PARTITIONS)).length >= TOTAL,
        `${TOTAL} outputs in Redis`,
        400_000,
      );
      await checkInvariants(name, expected);
      const stats = await stopChild(b);
      assert.ok(stats.replayedSessions > 0, 'B replayed the sessions A left');
    } finally {
      for (const c of [a, b]) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    }
  },
);

test(
  "a backlog past the bound of held entries: a session's entries read again with little room in the share all reach it",
  { timeout: 60_000 },
  async () => {
    // One slot, reads of one entry, a share of one, one read's worth held (heldBounds, 64 reads in production): b's
    // session takes b's two entries, f's is held, and c's three are left in the pending list. The log read to its
    // end, b waits for its idle end; a tick passes it, and c's turn comes after f's. A reread by id had room in the
    // share for c's first entry only, and the pass ended there: c's session waited for the other two, with the
    // log's clock (the tick) past its idle end, so no tick, no entry and no session end came to start another pass.
    const saved = heldBounds.batches;
    heldBounds.batches = 1;
    const name = fresh('spilled');
    const idle = 300;
    const producer = redisProducer({ client, name, partitions: 1 });
    const pairs = [
      ['b', { n: 1 }],
      ['f', { n: 2 }],
      ['c', { n: 3 }],
      ['c', { n: 4 }],
      ['c', { n: 5 }],
      ['b', { n: 6 }],
    ];
    await producer.sendMany(pairs);
    // (Written at once: one session per key, as the log says.)
    const expected = new Map();
    for (const { key, ns } of (await sessionsInLog(client, name, 1, idle)).values()) {
      assert.ok(!expected.has(key), `one session of ${key}`);
      expected.set(key, expectedTotals(ns));
    }
    const errors = [];
    const worker = redisWorker(totals({ idleTimeout: idle, maxConcurrent: 1 }), {
      client,
      name,
      partitions: 1,
      readCount: 1,
      maxBufferedEvents: 1,
      onError: (error) => errors.push(error),
    });
    try {
      await eventually(
        async () =>
          (await pendingCount(client, name, 1)) === 0 && (await readAllOutputs(client, name, 1)).length === pairs.length,
        'every output, nothing pending',
      );
      checkOutputs(await readAllOutputs(client, name, 1), expected);
      assert.deepEqual(errors, []);
    } finally {
      await worker.close();
      heldBounds.batches = saved;
    }
  },
);
