// A short randomized soak of velo-stream/redis (bench/redis-soak.mjs; the
// long one is `npm run soak -- --redis`): 3 worker processes, 1,000 sessions,
// producers sending throughout, a worker killed -9 and restarted every 1-2.5 s.
// The checks at the end read Redis directly (every (sid, seq) once, each
// session's outputs those of a crash-free run, every event once in order per
// key, nothing pending). A new seed each run, named in any failure; rerun one
// with VELO_SOAK_SEED=<seed>.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { redisSoak } from '../bench/redis-soak.mjs';

test('randomized soak: 3 workers, 1,000 sessions, kill -9 and restart every 1-2.5 s under load: invariants hold', async (t) => {
  const seed = process.env.VELO_SOAK_SEED !== undefined ? Number(process.env.VELO_SOAK_SEED) : randomInt(2 ** 31);
  t.diagnostic(`seed ${seed}`);
  const summary = await redisSoak({ seed, sessions: 1000, concurrent: 250, events: [3, 8], killEvery: [1000, 2500] });
  t.diagnostic(JSON.stringify(summary));
  assert.ok(summary.kills >= 2, `workers were killed during the run (${summary.kills}; seed ${seed})`);
  assert.ok(summary.sessionsWritten >= 1000);
});

test('randomized soak with checkpoints every 2 events: kills land between checkpoints, sessions are restored from them, invariants hold, no snapshot left', async (t) => {
  const seed = process.env.VELO_SOAK_SEED !== undefined ? Number(process.env.VELO_SOAK_SEED) : randomInt(2 ** 31);
  t.diagnostic(`seed ${seed}`);
  const summary = await redisSoak({ seed, sessions: 1000, concurrent: 250, events: [3, 8], killEvery: [1000, 2500], every: 2 });
  t.diagnostic(JSON.stringify(summary));
  assert.ok(summary.kills >= 2, `workers were killed during the run (${summary.kills}; seed ${seed})`);
  assert.ok(summary.checkpoints > 0, `checkpoints were committed (seed ${seed})`);
  assert.ok(summary.sessionsWritten >= 1000);
});

test('randomized soak with timers and checkpoints every 3 entries: each session makes a durable timer at its first event; every timer fires once in its session, each (sid, seq) once, counts equal seqs, invariants hold, no snapshot or timer record left', async (t) => {
  const seed = process.env.VELO_SOAK_SEED !== undefined ? Number(process.env.VELO_SOAK_SEED) : randomInt(2 ** 31);
  t.diagnostic(`seed ${seed}`);
  const summary = await redisSoak({ seed, sessions: 600, concurrent: 200, events: [3, 8], killEvery: [1000, 2500], every: 3, timers: true });
  t.diagnostic(JSON.stringify(summary));
  assert.ok(summary.kills >= 2, `workers were killed during the run (${summary.kills}; seed ${seed})`);
  assert.ok(summary.checkpoints > 0 && summary.restored > 0, `checkpoints were committed and restored from (seed ${seed})`);
  assert.equal(summary.wakeupsFired, 600);
});
