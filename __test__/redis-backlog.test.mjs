// Backlogs as real deployments meet them: 100,000 keys x 5 events written before any worker runs (keys
// interleaved, so each key's events span the backlog), drained with 1,000 session slots (`maxConcurrent`, the
// default before issue 57: far fewer than the keys) by one worker process (two, one killed -9 mid-drain:
// redis-backlog-takeover.test.mjs). The invariants are read from Redis: every (sid, seq) once, seqs from 1, per key
// the outputs of the sessions the log defines (split by the log's clock), nothing pending; and the lone worker lost
// no lease. Last, a small backlog past the bound of held entries (made small for it) with a share too small to read
// a key's entries again at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { heldBounds } from '#testing';
import { client, fresh, lastStats, stopChild, useRedis } from './helpers/redis-suite.mjs';
import {
  checkOutputs,
  eventually,
  expectedTotals,
  pendingCount,
  readAllOutputs,
  sessionsInLog,
  totals,
} from './helpers/redis-fixtures.mjs';
import { IDLE, PARTITIONS, TOTAL, checkInvariants, expectedByKey, worker, writeBacklog } from './helpers/redis-backlog.mjs';

useRedis();

test(
  'one worker with 1,000 session slots drains 100,000 keys x 5 events: every invariant, no lease lost',
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
      const stats = await stopChild(a, { queuedTimeouts: true });
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
      // (Keys waiting for the one slot are reported: a warning, not an error.)
      assert.deepEqual(
        errors.filter((e) => e.code !== 'ERR_VELO_SESSION_SLOTS'),
        [],
      );
    } finally {
      await worker.close();
      heldBounds.batches = saved;
    }
  },
);
