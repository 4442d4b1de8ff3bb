// Durable timers (`ctx.wakeAt`) on Redis: the owner writes a timer's wake-up into the partition's input when
// Redis' clock reaches it, once per (sid, timer), and the session gets its payload at that place of the log, on
// every replay too. Through a kill -9 of the owner before and after timers fire (with and without
// checkpoints), each timer fires once and the outputs are what the log says; a timer due after its session's
// idle end keeps it open and fires. ctx.entry, keyed timers and cancels; a pipe's stages under redisWorker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from '../index.mjs';
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

test('a timer due after its session\'s idle end keeps the session open and fires; the session ends by idle after it; the outputs are what the log says', async () => {
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
    await eventually(
      async () => (await pendingCount(client, name, PARTITIONS)) === 0 && (await readAllOutputs(client, name, PARTITIONS)).length === 4,
      'both timers fired and both sessions ended',
      30_000,
    );
    // One session per key, each with its wake-up (a pending timer holds off the idle end).
    const { log, wakes } = await checkAgainstLog(name, Infinity);
    assert.equal(wakes.length, 2, 'both timers wrote a wake-up');
    assert.equal(log.get('soon').length, 1);
    assert.deepEqual(log.get('late').map((s) => s.entries.map((e) => e.n ?? `woke ${e.woke}`)), [[1, 'woke 1']]);
    assert.equal(await client.exists(`velo:{${name}:p0}:timers`) + (await client.exists(`velo:{${name}:p1}:timers`)), 0, 'an ended session\'s timers are forgotten');
    await stopChild(w);
  } finally {
    if (alive(w)) w.child.kill('SIGKILL');
  }
});

/** Redis' clock, ms. */
async function redisNow() {
  const [sec, us] = (await client.sendCommand(['TIME'])).map(Number);
  return sec * 1000 + Math.floor(us / 1000);
}

test('ctx.entry is the log\'s id and time of the input taken last; a keyed timer replaces its key\'s pending one, cancelTimer cancels, across a hand-off from a checkpoint; a timer past the age end throws at the call', async () => {
  const name = fresh('keyed');
  const AGE = 60_000;
  // Each event says what the handler does: arm a keyed timer `after` ms after the entry's time, cancel a key,
  // checkpoint; every output shows ctx.entry. A timer's payload `{ fired }` is output as it comes.
  const fn = streamFn(
    async function* keyed(events, ctx) {
      assert.equal(ctx.entry, undefined, 'nothing taken yet');
      for await (const e of events) {
        const out = { tag: e.tag ?? `fired ${e.fired}`, entry: ctx.entry };
        if (e.arm !== undefined) ctx.wakeAt(ctx.entry.time + e.arm.after, { fired: e.arm.tag }, { key: e.arm.key });
        if (e.cancel !== undefined) out.cancelled = ctx.cancelTimer(e.cancel);
        if (e.late) {
          try {
            ctx.wakeAt(ctx.entry.time + AGE + 1, { fired: 'never' });
          } catch (error) {
            out.late = error.code;
          }
        }
        yield out;
        if (e.checkpoint) ctx.checkpoint({});
      }
    },
    { idleTimeout: 1000 },
  );
  const options = { client, name, partitions: 1, leaseTtl: 1000, trimInterval: 0, maxSessionAge: AGE };
  const a = redisWorker(fn, options);
  let b;
  try {
    await eventually(() => a.stats().owned.length === 1, 'the worker owns the partition');
    const producer = redisProducer({ client, name, partitions: 1 });
    // All due 10 s after their events, past the idle end (1 s): the pending timer keeps the session open.
    await producer.sendMany([
      ['k', { tag: 'e1', arm: { key: 'x', after: 10_000, tag: 'a' }, late: true }],
      ['k', { tag: 'e2', arm: { key: 'x', after: 10_000, tag: 'b' } }],
      ['k', { tag: 'e3', arm: { key: 'y', after: 10_000, tag: 'c' } }],
      ['k', { tag: 'e4', cancel: 'y', checkpoint: true }],
    ]);
    await eventually(
      async () => (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 1 && (await readAllOutputs(client, name, 1)).length === 4,
      'the checkpoint after e4',
    );
    // A hand-off before any timer is due: the next owner restores the session, its pending timer `b` of key x.
    await a.close();
    b = redisWorker(fn, options);
    await eventually(() => b.stats().owned.length === 1, 'the next worker owns the partition');
    // Replaces `b` (key x, restored from the checkpoint): `d` fires, `b` never.
    await producer.send('k', { tag: 'e5', arm: { key: 'x', after: 300, tag: 'd' } });
    const before = await redisNow();
    await eventually(async () => (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 0, 'the session ended', 15_000);
    const ids = (await client.xRange(`velo:{${name}:p0}`, '-', '+')).filter((e) => e.message.v !== undefined && e.message.w === undefined);
    const entryOf = (i) => ({ id: ids[i].id, time: Number(ids[i].id.split('-')[0]) });
    const outputs = await readAllOutputs(client, name, 1);
    assert.deepEqual(
      outputs.map((o) => o.value),
      [
        { tag: 'e1', entry: entryOf(0), late: 'ERR_VELO_TIMER_PAST_AGE' },
        { tag: 'e2', entry: entryOf(1) },
        { tag: 'e3', entry: entryOf(2) },
        { tag: 'e4', entry: entryOf(3), cancelled: true },
        { tag: 'e5', entry: entryOf(4) },
        // Timers a = 1, b = 2, c = 3, d = 4 (the refused one took no number).
        { tag: 'fired d', entry: { id: 't4', time: entryOf(4).time + 300 } },
      ],
    );
    assert.ok(before < entryOf(0).time + 10_000, 'e5 came before the replaced timer was due');
    assert.equal(outputs.filter((o) => o.error !== undefined).length, 0);
  } finally {
    await a.close();
    await b?.close();
  }
});

test('a stage of a pipe run by redisWorker: ctx.checkpoint, ctx.wakeAt and ctx.cancelTimer throw ERR_VELO_PIPE_SESSION_CALL (in-process they stay a no-op and a timer)', async () => {
  const tries = (ctx) => {
    const codes = [];
    for (const call of [() => ctx.wakeAt(0, {}), () => ctx.cancelTimer('x'), () => ctx.checkpoint({})]) {
      try {
        call();
        codes.push('ok');
      } catch (error) {
        codes.push(error.code);
      }
    }
    return codes;
  };
  const first = streamFn(async function* first(events, ctx) {
    for await (const e of events) yield { ...e, first: tries(ctx), entry: ctx.entry ?? null };
  });
  const second = streamFn(async function* second(events, ctx) {
    for await (const e of events) {
      yield { ...e, second: tries(ctx) };
      // Not caught: the session fails with it.
      if (e.n === 1) ctx.checkpoint({ n: e.n });
    }
  });
  const pipe = first.pipe(second);
  // In-process: a no-op checkpoint and in-process timers (the one at time 0 is due at once: it comes back as an event).
  const local = pipe.open();
  await local.send({ n: 0 });
  const got = [];
  for await (const o of local) {
    got.push(o);
    if (got.length === 2) await local.end();
  }
  assert.deepEqual(got[0], { n: 0, first: ['ok', 'ok', 'ok'], entry: null, second: ['ok', 'ok', 'ok'] });

  const name = fresh('pipe');
  const worker = redisWorker(pipe, { client, name, partitions: 1, leaseTtl: 1000, trimInterval: 0 });
  try {
    await eventually(() => worker.stats().owned.length === 1, 'the worker owns the partition');
    const producer = redisProducer({ client, name, partitions: 1 });
    await producer.sendMany([
      ['k', { n: 0 }],
      ['k', { n: 1 }],
    ]);
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'the outputs');
    const outputs = await readAllOutputs(client, name, 1);
    const code = 'ERR_VELO_PIPE_SESSION_CALL';
    assert.deepEqual(
      outputs.slice(0, 2).map((o) => o.value),
      [0, 1].map((n) => ({ n, first: [code, code, code], entry: null, second: [code, code, code] })),
    );
    assert.equal(outputs[2].error.code, code);
    assert.match(
      outputs[2].error.message,
      /ctx\.checkpoint\(\) is not available in a stage of a pipe run by a session worker \(sessionWorker\)/,
    );
  } finally {
    await worker.close();
  }
});
