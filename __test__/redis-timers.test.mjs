// Durable timers (`ctx.wakeAt`) on Redis: the owner writes a timer's wake-up into the partition's input when
// Redis' clock reaches it, once per (sid, timer), and the session gets its payload at that place of the log, on
// every replay too. Through a kill -9 of the owner before and after timers fire (with and without
// checkpoints), each timer fires once and the outputs are what the log says; a timer due after its session's
// idle end never fires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 2;
const KEYS = 4;

useRedis();

const alive = (c) => c && c.child.exitCode === null && c.child.signalCode === null;

function timerWorker(name, { idle = 60_000, every = 0 } = {}) {
  return workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle, delayMs: 0, trimInterval: 0, extra: { handler: 'timers', every } });
}

/**
 * Per key, the entries of its sessions as the input log has them: events `{ n }` and wake-ups `{ woke }` (with
 * their sid and timer id), in log order, each session from its first event to its idle end (`idle`, by entry ids).
 */
async function logOf(name, idle) {
  const byKey = new Map();
  const time = (id) => Number(id.slice(0, id.indexOf('-')));
  for (let p = 0; p < PARTITIONS; p++) {
    const open = new Map();
    for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) {
      for (const [key, s] of open) if (time(id) - s.last >= idle) open.delete(key);
      const key = message.k;
      if (message.w !== undefined) {
        const sid = message.w.slice(0, message.w.lastIndexOf(' '));
        const s = open.get(key);
        // A wake-up of a session that has ended is dropped.
        if (s?.sid === sid) {
          s.entries.push({ woke: JSON.parse(message.v).woke, timer: message.w });
          // A wake-up counts as an event at its timer's time (field d).
          s.last = Math.max(s.last, Number(message.d));
        }
        continue;
      }
      if (message.v === undefined) continue;
      if (!open.has(key)) {
        const s = { sid: `${key}@${id}`, entries: [], last: 0 };
        open.set(key, s);
        byKey.set(key, [...(byKey.get(key) ?? []), s]);
      }
      const s = open.get(key);
      s.entries.push({ n: JSON.parse(message.v).n });
      s.last = time(id);
    }
  }
  return byKey;
}

/** Every wake-up entry of the log: "<sid> <timer>" (a repeat would be a timer fired twice). */
async function wakeups(name) {
  const all = [];
  for (let p = 0; p < PARTITIONS; p++) {
    for (const { message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) if (message.w !== undefined) all.push(message.w);
  }
  return all;
}

/** The outputs equal what the log says, per session: `{ n, count }` per event, `{ woke, count }` per wake-up. */
async function checkAgainstLog(name, idle) {
  const log = await logOf(name, idle);
  const outputs = await readAllOutputs(client, name, PARTITIONS);
  const seen = new Set();
  for (const o of outputs) {
    assert.ok(!seen.has(`${o.sid}#${o.seq}`), `${o.sid}#${o.seq} written twice`);
    seen.add(`${o.sid}#${o.seq}`);
  }
  for (const [key, sessions] of log) {
    for (const s of sessions) {
      const mine = outputs.filter((o) => o.sid === s.sid);
      assert.deepEqual(mine.map((o) => o.seq), mine.map((_, i) => i + 1), s.sid);
      const expected = s.entries.map((e, i) => (e.woke === undefined ? { n: e.n, count: i + 1 } : { woke: e.woke, count: i + 1 }));
      assert.deepEqual(mine.map((o) => o.value), expected, `${key}: ${s.sid}`);
    }
  }
  const wakes = await wakeups(name);
  assert.equal(new Set(wakes).size, wakes.length, 'each (sid, timer) written once');
  return { log, outputs, wakes };
}

for (const { every, moment } of [
  { every: 0, moment: 'before' },
  { every: 0, moment: 'after' },
  { every: 3, moment: 'before' },
  { every: 3, moment: 'after' },
]) {
  test(`a timer fires once per (sid, timer) through a kill -9 of the owner ${moment} timers fire${every > 0 ? ', with checkpoints' : ''}: the wake-up reaches its session where the log has it`, async () => {
    const name = fresh('timers');
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    let w = timerWorker(name, { every });
    const workers = [w];
    try {
      await eventually(() => lastStats(w)?.owned.length === PARTITIONS, 'the worker owns every partition');
      let n = 0;
      const at = Date.now();
      // Per key: 5 events, the second asking for a wake-up 1.5 s after `at` (after the kill if it comes before).
      const timers = [];
      for (let r = 0; r < 5; r++) {
        const batch = [];
        for (let k = 0; k < KEYS; k++) {
          const event = r === 1 ? { n, at, wake: 1500 + k * 100 } : { n };
          if (r === 1) timers.push(n);
          batch.push([`k${k}`, event]);
          n++;
        }
        await producer.sendMany(batch);
      }
      await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === n, 'the events\' outputs');
      if (moment === 'after') await eventually(async () => (await wakeups(name)).length === KEYS, 'every timer fired');
      else assert.equal((await wakeups(name)).length, 0, 'no timer fired yet');
      await killChild(w);
      w = timerWorker(name, { every });
      workers.push(w);
      await eventually(() => lastStats(w)?.owned.length === PARTITIONS, 'the next worker owns every partition', 30_000);
      await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === n + KEYS, 'the wake-ups\' outputs');
      // Later events of the keys come after the wake-ups.
      await producer.sendMany(Array.from({ length: KEYS }, (_, k) => [`k${k}`, { n: n++ }]));
      await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === n + KEYS, 'every output');
      const { log, wakes } = await checkAgainstLog(name, 60_000);
      assert.equal(wakes.length, KEYS, 'one wake-up per timer');
      for (const [key, sessions] of log) {
        assert.equal(sessions.length, 1, `${key}: one session`);
        assert.deepEqual(sessions[0].entries.filter((e) => e.woke !== undefined).map((e) => e.woke), timers.filter((t) => `k${t % KEYS}` === key), key);
      }
      // Made again by the replay (or restored from a snapshot) after the kill: written before, not again.
      // (Its stats line comes every 100 ms: the last one may be older than the last wake-up.)
      const wrote = moment === 'after' ? 0 : KEYS;
      await eventually(() => lastStats(w).wakeups === wrote, `the new owner wrote ${wrote} wake-ups`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(lastStats(w).wakeups, wrote, 'and no more');
      await stopChild(w);
    } finally {
      for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
    }
  });
}

test('a timer racing its session\'s idle end: one due before it fires, one due after it never does (its session ended first); the outputs are what the log says', async () => {
  const name = fresh('race');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const idle = 1000;
  const w = timerWorker(name, { idle });
  try {
    await eventually(() => lastStats(w)?.owned.length === PARTITIONS, 'the worker owns every partition');
    const at = Date.now();
    await producer.sendMany([
      ['soon', { n: 0, at, wake: 400 }],
      ['late', { n: 1, at, wake: 2500 }],
    ]);
    await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0 && (await readAllOutputs(client, name, PARTITIONS)).length === 3, 'both sessions ended', 30_000);
    // Past the late timer's time: it never fires.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, at + 2700 - Date.now())));
    const { log, wakes } = await checkAgainstLog(name, idle);
    assert.equal(wakes.length, 1, 'only the timer due before its session\'s idle end wrote a wake-up');
    assert.deepEqual(log.get('soon')[0].entries, [{ n: 0 }, { woke: 0, timer: wakes[0] }]);
    assert.deepEqual(log.get('late')[0].entries, [{ n: 1 }]);
    assert.equal(await client.exists(`velo:{${name}:p0}:timers`) + (await client.exists(`velo:{${name}:p1}:timers`)), 0, 'an ended session\'s timers are forgotten');
    await stopChild(w);
  } finally {
    if (alive(w)) w.child.kill('SIGKILL');
  }
});
