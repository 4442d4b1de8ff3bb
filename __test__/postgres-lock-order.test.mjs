// One lock order for a partition's openings and version counts on Postgres, on a private postgres. A commit keeps
// its new sessions' openings and counts them per version (in the order of first appearance), and a wake-up keeps
// its session's opening (a migrated session's moves its count from one version to another): run together on one
// partition, they locked the `versions` rows in opposite orders and Postgres ended one with a deadlock (40P01).
// A wake-up that keeps an opening now takes the partition's group row first, as a commit does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog, preparePg } from '#testing';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

test('commits and wake-ups keeping openings of one partition together: no deadlock', async () => {
  const space = await preparePg(pool(), 'velo_lock_order', 'fn', 1);
  const log = new PgLog(pool(), space, 1);
  const lease = await log.acquire(0, 'w1', 600_000, ['*']);
  const limits = { idleTimeout: 500, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10 };
  const opening = (sid, version, replaces) =>
    replaces === undefined ? { sid, version, limits } : { sid, version, limits, replaces };
  const commit = (opened) => log.commit(lease, { outputs: [], acks: [], ended: [], opened });
  const failures = [];
  for (let i = 0; i < 60; i++) {
    // A session kept under v2, then migrated to v1 by a wake-up (v2's count down, then v1's up), while a commit
    // keeps two new sessions (v1's count up, then v2's).
    await commit([opening(`m${i}`, 'v2')]);
    const results = await Promise.allSettled([
      log.wake(lease, 'm', `m${i}`, i, 1, 'p', opening(`m${i}`, 'v1', 'v2')),
      commit([opening(`a${i}`, 'v1'), opening(`b${i}`, 'v2')]),
      log.wake(lease, 'n', `n${i}`, i, 1, 'p', opening(`n${i}`, 'v2')),
    ]);
    for (const r of results) if (r.status === 'rejected') failures.push(`${r.reason.code} ${r.reason.message}`);
  }
  assert.deepEqual(failures, []);
  const { rows } = await pool().query(`SELECT version, count::int AS n FROM ${space.S}.versions WHERE fn = $1 ORDER BY version`, [
    space.fn,
  ]);
  // v1: 60 a + 60 migrated m; v2: 60 b + 60 n.
  assert.deepEqual(rows, [
    { version: 'v1', n: 120 },
    { version: 'v2', n: 120 },
  ]);
  await log.close();
});
