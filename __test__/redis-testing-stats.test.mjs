// testWorker's stats(): the figures of the process that serves the partitions, read as redisWorker's stats() reads
// its own. The same steps run on a real redisWorker (a private Redis) and on a test worker give the same figures;
// a crash's successor counts from its own start; lag, pinned age and renewals are measured at each renewal, on the
// virtual clock; a test worker with a version reports the process of the release that serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { testWorker } from 'velo-stream/testing';
import { eventually } from './helpers/redis-fixtures.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';

useRedis();

/** Longer than the steps take, real or virtual: no session ends by its idle time before the last step. */
const IDLE = 2000;

/**
 * A cart per key: each item yields the running total and checkpoints it; `{ remind: ms }` sets a timer that yields
 * `reminded`; `{ stop: true }` ends the session (an event behind it goes to the key's next session). At most 3
 * events a session (`maxSessionEvents`, the worker's option).
 */
const carts = streamFn(
  async function* (events, ctx) {
    let total = ctx.restored ?? 0;
    for await (const e of events) {
      if (e.stop) return;
      if (e.reminder) {
        yield { reminded: total };
        continue;
      }
      if (e.remind !== undefined) ctx.wakeAt(ctx.entry.time + e.remind, { reminder: true });
      total += e.price ?? 0;
      ctx.checkpoint(total);
      yield { total };
    }
  },
  { idleTimeout: IDLE },
);

const OPTIONS = { partitions: 2, leaseTtl: 3000, maxSessionEvents: 3 };

/**
 * The steps: batches sent together, each handled before the next (one event a batch, but where two must be read
 * together: a checkpoint is counted once per commit, and only one event in flight makes commits the same on both).
 */
const STEPS = [
  // ada: two items, and a reminder after the first.
  [['ada', { price: 10, remind: 20 }]],
  [['ada', { price: 5 }]],
  // bob: a stop with an item behind it, read together: the item goes to his next session (handed on).
  [
    ['bob', { stop: true }],
    ['bob', { price: 7 }],
  ],
  // cy: four items, one more than maxSessionEvents: capped after three, the fourth opens his next session.
  [['cy', { price: 1 }]],
  [['cy', { price: 1 }]],
  [['cy', { price: 1 }]],
  [['cy', { price: 1 }]],
];

/** The figures that move by the steps alone (not by timing: ticks, round trips, renewals, lag). */
function figures(s) {
  return {
    owned: s.owned,
    sessions: s.sessions,
    sessionsByVersion: s.sessionsByVersion,
    held: s.held,
    waitingKeys: s.waitingKeys,
    outputs: s.outputs,
    checkpoints: s.checkpoints,
    wakeups: s.wakeups,
    capped: s.capped,
    handedOn: s.handedOn,
    acquired: s.acquired,
    lost: s.lost,
    released: s.released,
    replayed: s.replayed,
    replayedSessions: s.replayedSessions,
    restored: s.restored,
    errors: s.errors,
    diverged: s.diverged,
    version: s.version,
    superseded: s.superseded,
    slots: s.slots,
    permits: s.permits,
  };
}

test('the same steps on a real redisWorker and on a test worker: the same figures, step by step', async () => {
  const name = fresh('stats');
  const real = redisWorker(carts, { client, name, ...OPTIONS, trimInterval: 0 });
  const producer = redisProducer({ client, name, partitions: OPTIONS.partitions });
  const fake = testWorker(carts, OPTIONS);
  const seen = { real: [], fake: [] };
  try {
    await eventually(() => real.stats().owned.length === OPTIONS.partitions, 'the real worker owns every partition');
    await fake.advance(10);
    seen.real.push(figures(real.stats()));
    seen.fake.push(figures(fake.stats()));
    let outputs = 0;
    for (const batch of STEPS) {
      await producer.sendMany(batch);
      for (const [key, event] of batch) fake.send(key, event);
      await fake.advance(100);
      outputs = fake.stats().outputs;
      await eventually(() => real.stats().outputs >= outputs, `the real worker's ${outputs} outputs`);
      seen.real.push(figures(real.stats()));
      seen.fake.push(figures(fake.stats()));
    }
    // Every session ended by its idle time.
    await fake.settle();
    await eventually(() => real.stats().sessions === 0, "the real worker's sessions ended");
    seen.real.push(figures(real.stats()));
    seen.fake.push(figures(fake.stats()));
  } finally {
    await real.close();
    await fake.close();
  }
  assert.deepEqual(seen.fake, seen.real);
  // What the steps made (the same on both, checked above): every counter the steps move moved.
  const last = seen.fake.at(-1);
  assert.equal(last.sessions, 0);
  assert.deepEqual([last.outputs, last.checkpoints, last.wakeups, last.capped, last.handedOn, last.acquired], [9, 7, 1, 1, 1, 2]);
  assert.deepEqual(seen.fake[1].owned, [0, 1]);
  assert.ok(seen.fake.slice(1, -1).every((s) => s.sessions > 0));
});

const echo = streamFn(
  async function* (events) {
    for await (const e of events) yield e;
  },
  { idleTimeout: 10_000 },
);

/** The figures a crash and a takeover move. */
const moved = (s) => ({
  owned: s.owned,
  sessions: s.sessions,
  acquired: s.acquired,
  outputs: s.outputs,
  replayed: s.replayed,
  replayedSessions: s.replayedSessions,
  pinnedAge: s.pinnedAge,
  partitionPinnedAge: s.partitionPinnedAge,
  lag: s.lag,
  renewals: s.renewals,
});

test("lag, pinned age and renewals at each renewal on the virtual clock; after a crash, the successor's own figures", async () => {
  const worker = testWorker(echo, { leaseTtl: 3000 });
  worker.send('a', 1);
  // Renewals every leaseTtl/3 from the start: at +1000 and +2000, each on time; the oldest pending entry (a's
  // session has no checkpoint) is 2000 ms old at the last.
  await worker.advance(2500);
  assert.deepEqual(moved(worker.stats()), {
    owned: [0],
    sessions: 1,
    acquired: 1,
    outputs: 1,
    replayed: 0,
    replayedSessions: 0,
    pinnedAge: 2000,
    partitionPinnedAge: { 0: 2000 },
    lag: 0,
    renewals: { count: 2, lateP50: 0, lateP99: 0, lateMax: 0 },
  });
  worker.send('a', 2);
  worker.send('b', 3);
  await worker.advance(10);
  assert.deepEqual([worker.stats().sessions, worker.stats().outputs], [2, 3]);
  worker.crash();
  // The process that takes over has owned nothing yet, and counted nothing.
  const standby = worker.stats();
  assert.deepEqual(moved(standby), {
    owned: [],
    sessions: 0,
    acquired: 0,
    outputs: 0,
    replayed: 0,
    replayedSessions: 0,
    pinnedAge: 0,
    partitionPinnedAge: {},
    lag: 0,
    renewals: { count: 0, lateP50: 0, lateP99: 0, lateMax: 0 },
  });
  assert.deepEqual(standby.roundTrip, { count: 0, p50: 0, p99: 0, max: 0 });
  await worker.advance(5000);
  // It took the partition over and replayed the three pending entries: two sessions rebuilt, their three outputs
  // made again (counted before the dedupe, as the worker counts them).
  const after = worker.stats();
  assert.deepEqual(
    [after.owned, after.sessions, after.acquired, after.replayed, after.replayedSessions, after.outputs, after.lost],
    [[0], 2, 1, 3, 2, 3, 0],
  );
  await worker.settle();
  assert.equal(worker.stats().sessions, 0);
  await worker.close();
  // After close(), the figures of the process that served last: it owns nothing now, its counters stay.
  const closed = worker.stats();
  assert.deepEqual([closed.owned, closed.sessions, closed.acquired, closed.replayed], [[], 0, 1, 3]);
});

test('a test worker with a version: the serving process runs it, and counts its sessions by version', async () => {
  const worker = testWorker(echo, { version: 'v1', partitions: 2 });
  worker.send('a', 1);
  await worker.advance(100);
  const s = worker.stats();
  assert.deepEqual([s.version, s.superseded, s.owned, s.sessionsByVersion], ['v1', false, [0, 1], { v1: 1 }]);
  await worker.close();
});

test('keys waiting for a session slot are counted (slots), as on the worker', async () => {
  const one = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 1000, maxConcurrent: 1 },
  );
  const worker = testWorker(one);
  worker.send('a', 1);
  worker.send('b', 2);
  worker.send('c', 3);
  await worker.advance(10);
  assert.deepEqual(worker.stats().slots, { max: 1, waitingKeys: 2, waits: 2 });
  await worker.settle();
  assert.deepEqual(worker.stats().slots, { max: 1, waitingKeys: 0, waits: 2 });
  await worker.close();
});
