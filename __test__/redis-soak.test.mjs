// A short randomized soak of velo-stream/redis (bench/redis-soak.mjs; the long one is `npm run soak -- --redis`):
// 3 worker processes running the scripted handler, producers sending throughout, a worker killed -9 and restarted
// every 1-2.5 s. The oracle is the reference model run on the log's ids: every session and output equal to the
// model's (no idle split allowed but those in the log), every (sid, seq) once, nothing pending or left behind. A new
// seed each run, named in any failure; rerun one with VELO_SOAK_SEED=<seed>.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { redisSoak } from '../bench/redis-soak.mjs';

const seedOf = () => (process.env.VELO_SOAK_SEED !== undefined ? Number(process.env.VELO_SOAK_SEED) : randomInt(2 ** 31));

test('randomized soak: 3 workers, 1,000 sessions, kill -9 and restart every 1-2.5 s under load: the sessions and outputs of the model', async (t) => {
  const seed = seedOf();
  t.diagnostic(`seed ${seed}`);
  const summary = await redisSoak({ seed, sessions: 1000, concurrent: 250, events: [3, 8], killEvery: [1000, 2500] });
  t.diagnostic(JSON.stringify(summary));
  assert.ok(summary.kills >= 2, `workers were killed during the run (${summary.kills}; seed ${seed})`);
  assert.ok(summary.sessions >= 1000);
});

test('randomized soak with checkpoints every 2 events and maxSessionEvents 5: kills land between checkpoints, sessions are restored from them, the model holds', async (t) => {
  const seed = seedOf();
  t.diagnostic(`seed ${seed}`);
  const summary = await redisSoak({
    seed,
    sessions: 1000,
    concurrent: 250,
    events: [3, 8],
    killEvery: [1000, 2500],
    every: 2,
    caps: { maxSessionEvents: 5 },
  });
  t.diagnostic(JSON.stringify(summary));
  assert.ok(summary.kills >= 2, `workers were killed during the run (${summary.kills}; seed ${seed})`);
  assert.ok(summary.checkpoints > 0 && summary.restored > 0, `checkpoints were committed and restored from (seed ${seed})`);
  assert.ok(summary.ended.events > 0, `sessions ended at the event cap (seed ${seed})`);
});

test('randomized soak with timers at the boundaries, checkpoints every 3 entries and every cap: the sessions, timers and outputs of the model', async (t) => {
  const seed = seedOf();
  t.diagnostic(`seed ${seed}`);
  const caps = { maxSessionEvents: 6, maxSessionAge: 2500, maxSessionTimers: 2 };
  const summary = await redisSoak({
    seed,
    sessions: 600,
    concurrent: 200,
    events: [3, 8],
    killEvery: [1000, 2500],
    every: 3,
    timers: true,
    caps,
  });
  t.diagnostic(JSON.stringify(summary));
  assert.ok(summary.kills >= 2, `workers were killed during the run (${summary.kills}; seed ${seed})`);
  assert.ok(summary.checkpoints > 0 && summary.restored > 0, `checkpoints were committed and restored from (seed ${seed})`);
  assert.ok(
    summary.timersFired > 0 && summary.ended.age > 0 && summary.ended.events > 0,
    `timers fired, caps were hit (seed ${seed})`,
  );
});
