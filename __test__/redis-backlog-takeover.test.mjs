// The 100,000-key backlog of redis-backlog.test.mjs drained by two worker processes, one killed -9 mid-drain: the
// survivor takes its partitions over and replays the sessions it left, and every invariant holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, fresh, killChild, lastStats, stopChild, useRedis } from './helpers/redis-suite.mjs';
import { eventually, readAllOutputs } from './helpers/redis-fixtures.mjs';
import { PARTITIONS, TOTAL, checkInvariants, expectedByKey, outputsOf, worker, writeBacklog } from './helpers/redis-backlog.mjs';

useRedis();

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
      // (Every invariant was checked above; B, alone on the whole backlog, may retry commands that timed out queued.)
      const stats = await stopChild(b, { queuedTimeouts: true });
      assert.ok(stats.replayedSessions > 0, 'B replayed the sessions A left');
    } finally {
      for (const c of [a, b]) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    }
  },
);
