// Durable timers through a takeover: a wake-up's fate must not depend on when it was written. The owner of the
// partition dies before the timers are due, and the next owner comes after the sessions' idle deadlines: it
// writes the overdue wake-ups late (their entry ids after the idle ends), yet each timer was due before its
// session's idle end, so the crash run must deliver what a crash-free run delivers, each (sid, seq) once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

const IDLE = 2000;

useRedis();

const alive = (c) => c && c.child.exitCode === null && c.child.signalCode === null;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function worker(name) {
  return workerChild(name, { partitions: 1, ttl: 1500, idle: IDLE, delayMs: 0, trimInterval: 0, extra: { handler: 'timers' } });
}

/**
 * K1 asks for a wake-up at t+1000, K2 for wake-ups at t+1990 and t+2010 (idleTimeout 2000). With `crash`, the
 * owner is killed at t+500 and the next one starts at t+4000. Returns the outputs per key (values in seq order).
 */
async function scenario(crash, { survivor = false, other = false } = {}) {
  const name = fresh(crash ? 'takeover' : 'steady');
  const producer = redisProducer({ client, name, partitions: 1 });
  let w = worker(name);
  const workers = [w];
  try {
    await eventually(() => lastStats(w)?.owned.length === 1, 'the worker owns the partition');
    // An idle second worker, that takes the partition over once the owner's lease expires.
    const second = survivor ? worker(name) : null;
    if (second !== null) {
      workers.push(second);
      await eventually(() => lastStats(second) !== null, 'the second worker runs');
    }
    const t = Date.now();
    await producer.sendMany([
      ['K1', { n: 0, at: t, wake: 1000 }],
      ['K2', { n: 1, at: t, wake: 1990 }],
      ['K2', { n: 2, at: t, wake: 2010 }],
    ]);
    if (crash) {
      await sleep(t + 500 - Date.now());
      await killChild(w);
      if (other) {
        // Another key's event, written while no one owns the partition: in the log, it passes K1's and K2's idle
        // deadlines before the late wake-ups.
        await sleep(t + 3000 - Date.now());
        await producer.send('K3', { n: 3 });
      }
      if (second !== null) w = second;
      else {
        await sleep(t + 4000 - Date.now());
        w = worker(name);
        workers.push(w);
      }
      await eventually(() => lastStats(w)?.owned.length === 1, 'the next worker owns the partition', 30_000);
    } else if (other) {
      await sleep(t + 3000 - Date.now());
      await producer.send('K3', { n: 3 });
    }
    // Both sessions ended (nothing pending) well after every timer's time and every idle deadline.
    await sleep(Math.max(0, t + 4500 - Date.now()));
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'both sessions ended', 30_000);
    const outputs = await readAllOutputs(client, name, 1);
    const seen = new Set();
    for (const o of outputs) {
      assert.ok(!seen.has(`${o.sid}#${o.seq}`), `${o.sid}#${o.seq} written twice`);
      seen.add(`${o.sid}#${o.seq}`);
    }
    const byKey = {};
    for (const o of [...outputs].sort((a, b) => a.seq - b.seq)) (byKey[o.key] ??= []).push(o.value);
    for (const c of workers) if (alive(c)) await stopChild(c);
    return byKey;
  } finally {
    for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
  }
}

const EXPECTED = {
  K1: [{ n: 0, count: 1 }, { woke: 0, count: 2 }],
  K2: [
    { n: 1, count: 1 },
    { n: 2, count: 2 },
    { woke: 1, count: 3 },
    { woke: 2, count: 4 },
  ],
};

test('timers due before the idle end are delivered in a crash-free run', async () => {
  assert.deepEqual(await scenario(false), EXPECTED);
});

test('a kill -9 of the owner before the timers are due, the next owner after the idle deadlines: the overdue wake-ups are delivered as in the crash-free run', async () => {
  assert.deepEqual(await scenario(true), EXPECTED);
});

test('the same with an idle second worker that takes the partition over when the lease expires', async () => {
  assert.deepEqual(await scenario(true, { survivor: true }), EXPECTED);
});

test('the same with another key\'s event written during the outage, after the idle deadlines: the crash run gives what the crash-free run gives', async () => {
  const steady = await scenario(false, { other: true });
  assert.deepEqual(steady, { ...EXPECTED, K3: [{ n: 3, count: 1 }] });
  assert.deepEqual(await scenario(true, { other: true }), steady);
});

/**
 * K1 asks for a wake-up at t+1000 (idleTimeout 2000) and checkpoints after every entry (the snapshot records the
 * timer); its own next event comes at t+3500, after its idle end (t+3000: the wake-up counts as an event at its
 * time). With `crash`, the owner is killed at t+500 and the next one starts at t+4000. Returns K1's sessions, each
 * as its output values in seq order, in the order of their sids.
 */
async function ownEvent(crash) {
  const name = fresh(crash ? 'own' : 'ownsteady');
  const producer = redisProducer({ client, name, partitions: 1 });
  const start = () =>
    workerChild(name, {
      partitions: 1,
      ttl: 1500,
      idle: IDLE,
      delayMs: 0,
      trimInterval: 0,
      extra: { handler: 'timers', every: 1 },
    });
  let w = start();
  const workers = [w];
  try {
    await eventually(() => lastStats(w)?.owned.length === 1, 'the worker owns the partition');
    const t = Date.now();
    await producer.send('K1', { n: 0, at: t, wake: 1000 });
    await eventually(async () => (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 1, 'the checkpoint with the timer');
    if (crash) {
      await sleep(t + 500 - Date.now());
      await killChild(w);
    }
    await sleep(t + 3500 - Date.now());
    await producer.send('K1', { n: 3 });
    if (crash) {
      await sleep(t + 4000 - Date.now());
      w = start();
      workers.push(w);
      await eventually(() => lastStats(w)?.owned.length === 1, 'the next worker owns the partition', 30_000);
    }
    await sleep(Math.max(0, t + 6000 - Date.now()));
    await eventually(
      async () => (await pendingCount(client, name, 1)) === 0 && (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 0,
      'the sessions ended',
      30_000,
    );
    const sessions = new Map();
    for (const o of await readAllOutputs(client, name, 1)) (sessions.get(o.sid) ?? sessions.set(o.sid, []).get(o.sid)).push(o);
    for (const c of workers) if (alive(c)) await stopChild(c);
    return [...sessions.values()].map((list) => list.sort((a, b) => a.seq - b.seq).map((o) => o.value));
  } finally {
    for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
  }
}

test("a key's own event read while its session's overdue timer is still to fire (takeover after the idle deadline): the crash run equals the crash-free run (the wake-up, the idle end, then a new session)", async () => {
  const crashFree = [
    [
      { n: 0, count: 1 },
      { woke: 0, count: 2 },
    ],
    [{ n: 3, count: 1 }],
  ];
  assert.deepEqual(await ownEvent(false), crashFree);
  // (Before timers fired by the log's clock, the event joined the old session, before the wake-up.)
  assert.deepEqual(await ownEvent(true), crashFree);
});
