// Checkpoints (`ctx.checkpoint`, `ctx.restored`) on Redis: a checkpoint acks the events taken before it in the
// commit of the outputs yielded before it; after kill -9 of the owner (once or twice in a row, at random
// moments) the new owner restores each session from its snapshot and replays only the later events, its
// outputs' (sid, seq) go on, and they equal a crash-free run's. A paused ex-owner writes no snapshot. A state
// too large or that the codec cannot encode throws a coded error at the call, fails the session there, and
// writes nothing of itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from 'velo-stream';
import { client, fresh, killChild, lastStats, sender, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs, settled } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 4;
const KEYS = 6;
/** Checkpoint every this many events (checkpointTotals). */
const EVERY = 10;

useRedis();

/** A worker child running checkpointTotals. */
function ckptWorker(name, extra = {}, options = {}) {
  return workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle: 60_000, delayMs: 2, trimInterval: 0, extra: { handler: 'ckpt', every: EVERY, ...extra }, ...options });
}

/** The snapshots in Redis: sid -> { seq, last, events, state }. */
async function snapshots(name) {
  const all = new Map();
  for (let p = 0; p < PARTITIONS; p++) {
    const hash = await client.hGetAll(`velo:{${name}:p${p}}:ckpt`);
    for (const [sid, value] of Object.entries(hash)) {
      const nl = value.indexOf('\n');
      all.set(sid, { ...JSON.parse(value.slice(0, nl)), state: JSON.parse(value.slice(nl + 1)) });
    }
  }
  return all;
}

/** Ends every key's session: an event `{ stop: true }` per key (its handler returns; no output). */
async function stopAll(producer) {
  await producer.sendMany(Array.from({ length: KEYS }, (_, k) => [`user${k}`, { n: -1, stop: true }]));
}

const require = createRequire(import.meta.url);

const alive = (c) => c && c.child.exitCode === null && c.child.signalCode === null;

test('a checkpoint acks the events before it: the pending list holds only events after each session\'s last checkpoint, and the snapshot has its seq', async () => {
  const name = fresh('ckpt');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, KEYS, sent);
  const a = ckptWorker(name);
  try {
    await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
    await send(KEYS * 35);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === KEYS * 35, 'every output');
    await eventually(async () => (await snapshots(name)).size === KEYS && [...(await snapshots(name)).values()].every((s) => s.seq === 30), 'a snapshot per session at its 30th output');
    // 35 events per key, the last checkpoint after the 30th: 5 per key still needed.
    assert.equal(await pendingCount(client, name, PARTITIONS), KEYS * 5, 'only the events after the last checkpoint are pending');
    for (const [sid, s] of await snapshots(name)) {
      assert.deepEqual(s.state, { total: s.state.total, count: 30 }, sid);
      assert.equal(s.events, 30, sid);
    }
    await stopAll(producer);
    await settled(client, name, PARTITIONS, sent);
    assert.equal((await snapshots(name)).size, 0, 'an ended session\'s snapshot is gone');
    const stats = await stopChild(a);
    assert.ok(stats.checkpoints >= KEYS * 3, `checkpoints committed (${stats.checkpoints})`);
  } finally {
    if (alive(a)) a.child.kill('SIGKILL');
  }
});

/** Random moments of a run, seeded per case: events sent before each kill, after waiting for some outputs. */
function rng(seed) {
  let x = seed;
  return () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

for (const [crashes, seed] of [
  [1, 7],
  [1, 23],
  [2, 5],
  [2, 41],
]) {
  test(`kill -9 of the owner ${crashes === 1 ? 'once' : 'twice in a row'} at random moments (seed ${seed}): the next owner restores each session from its snapshot and replays only later events; (sid, seq) go on; outputs equal a crash-free run`, async () => {
    const name = fresh('ckpt');
    const random = rng(seed);
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    const sent = new Map();
    const send = sender(producer, KEYS, sent);
    const workers = [];
    try {
      let w = ckptWorker(name);
      workers.push(w);
      await eventually(() => lastStats(w)?.owned.length === PARTITIONS, 'the first worker owns every partition');
      let total = 0;
      let restored = 0;
      for (let c = 0; c < crashes; c++) {
        const n = KEYS * (15 + Math.floor(random() * 30));
        await send(n);
        total += n;
        // Killed while it works on them: after some of its outputs, with random checkpoints committed or not.
        const until = Math.floor(total - n + n * random());
        await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length >= until, `${until} outputs`);
        await killChild(w);
        const before = await snapshots(name);
        const outputs = await readAllOutputs(client, name, PARTITIONS);
        w = ckptWorker(name);
        workers.push(w);
        await eventually(() => lastStats(w)?.owned.length === PARTITIONS, 'the next worker owns every partition', 30_000);
        // Every session with a snapshot restored from it, and only the events after its checkpoint replayed.
        const after = total - [...before.values()].reduce((sum, s) => sum + s.events, 0);
        await eventually(() => lastStats(w).restored === before.size, `${before.size} sessions restored`);
        restored += before.size;
        assert.ok(lastStats(w).replayed <= after, `replayed ${lastStats(w).replayed}, at most the ${after} events after the checkpoints`);
        assert.ok(outputs.length <= total);
      }
      assert.ok(restored > 0, 'sessions were restored from snapshots');
      await send(KEYS * 10);
      await stopAll(producer);
      await settled(client, name, PARTITIONS, sent);
      const outputs = await readAllOutputs(client, name, PARTITIONS);
      assert.equal(new Set(outputs.map((o) => o.sid)).size, KEYS, 'one session per key: the restored sessions kept their sid');
      await stopChild(w);
    } finally {
      for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
    }
  });
}

test('a restored session ends where the log says, also one with no event left to replay: by its idle time, its snapshot and pending entries gone', async () => {
  const name = fresh('ckpt');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const options = { idle: 1500 };
  const a = ckptWorker(name, {}, options);
  let b;
  try {
    await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
    // x: 20 events, all covered by its checkpoint at 20; y: 25, 5 of them after its checkpoint.
    const sent = new Map([
      ['x', Array.from({ length: 20 }, (_, i) => i)],
      ['y', Array.from({ length: 25 }, (_, i) => 100 + i)],
    ]);
    await producer.sendMany([...sent].flatMap(([key, ns]) => ns.map((n) => [key, { n }])));
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === 45, 'every output');
    await eventually(async () => (await snapshots(name)).size === 2 && (await pendingCount(client, name, PARTITIONS)) === 5, 'both snapshots, y\'s last 5 events pending');
    await killChild(a);
    b = ckptWorker(name, {}, options);
    await eventually(() => lastStats(b)?.restored === 2, 'both sessions restored');
    await eventually(async () => (await snapshots(name)).size === 0 && (await pendingCount(client, name, PARTITIONS)) === 0, 'both ended by their idle time');
    await settled(client, name, PARTITIONS, sent);
    assert.equal(lastStats(b).replayed, 5, 'only y\'s 5 events after its checkpoint replayed');
    await stopChild(b);
  } finally {
    for (const c of [a, b]) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test('more sessions to restore than the new owner has slots (maxConcurrent 2): the others wait, in Redis and in memory, and start from their snapshots as slots free; outputs equal a crash-free run', async () => {
  const name = fresh('ckslots');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, KEYS, sent);
  const a = ckptWorker(name);
  let b;
  try {
    await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
    await send(KEYS * 35);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === KEYS * 35, 'every output');
    await eventually(async () => [...(await snapshots(name)).values()].filter((s) => s.seq === 30).length === KEYS, 'a snapshot per session at 30');
    await killChild(a);
    b = ckptWorker(name, { maxConcurrent: 2 });
    await eventually(() => lastStats(b)?.owned.length === PARTITIONS && lastStats(b).restored === 2, 'two sessions restored', 30_000);
    assert.equal(lastStats(b).sessions, 2);
    // Each key's stop ends its session; a slot frees, and the next waiting session starts from its snapshot.
    await send(KEYS * 2);
    await stopAll(producer);
    await settled(client, name, PARTITIONS, sent);
    await eventually(() => lastStats(b).restored === KEYS, 'every session restored, two at a time');
    assert.equal((await snapshots(name)).size, 0);
    await stopChild(b);
  } finally {
    for (const c of [a, b]) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test('a state over maxCheckpointBytes, or one the codec cannot encode, throws a coded error at the call; the session fails there (also if the handler catches it), nothing of it written', async () => {
  const name = fresh('ckpt');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const a = ckptWorker(name, { maxCheckpointBytes: 300 });
  try {
    await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
    const flags = { big: { big: 400 }, caught: { big: 400, catch: true }, bigint: { bigint: true }, fits: { big: 100 } };
    const events = [];
    for (let n = 0; n < 15; n++) for (const key of Object.keys(flags)) events.push([key, { n }]);
    for (const [key, flag] of Object.entries(flags)) events.push([key, { n: 15, ...flag }]);
    await producer.sendMany(events);
    const failed = ['big', 'caught', 'bigint'];
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).filter((o) => o.error).length === failed.length, 'the failures');
    // The snapshots of the failed sessions are gone with them; the state that failed was never written.
    assert.deepEqual([...(await snapshots(name)).keys()].map((sid) => sid.slice(0, sid.indexOf('@'))), ['fits']);
    assert.deepEqual(Object.keys([...(await snapshots(name)).values()][0].state), ['pad'], 'a state within the limit is written');
    // Sent once the failures are written: each opens its key's next session (a fresh one: nothing to restore).
    await producer.sendMany(Object.keys(flags).map((key) => [key, { n: 16 }]));
    await producer.sendMany(Object.keys(flags).map((key) => [key, { n: -1, stop: true }]));
    await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0 && (await snapshots(name)).size === 0, 'every session ended');
    const outputs = await readAllOutputs(client, name, PARTITIONS);
    const ns = Array.from({ length: 15 }, (_, i) => i);
    const totals = (list) => {
      let total = 0;
      return list.map((n, i) => ({ n, total: (total += n), count: i + 1 }));
    };
    for (const key of Object.keys(flags)) {
      const mine = outputs.filter((o) => o.key === key);
      const sids = [...new Set(mine.map((o) => o.sid))];
      if (key === 'fits') {
        assert.deepEqual(mine.map((o) => o.value), totals([...ns, 15, 16]), key);
        assert.equal(sids.length, 1, key);
        continue;
      }
      assert.equal(sids.length, 2, `${key}: the event after the failure opened a new session`);
      const first = mine.filter((o) => o.sid === sids[0]);
      assert.deepEqual(first.map((o) => o.seq), first.map((_, i) => i + 1), key);
      // Its outputs before the call, then the error as its last.
      assert.deepEqual(first.slice(0, -1).map((o) => o.value), totals(ns), key);
      const { error } = first.at(-1);
      if (key === 'bigint') assert.equal(error.code, 'ERR_VELO_ENCODE', key);
      else {
        assert.equal(error.code, 'ERR_VELO_CHECKPOINT_TOO_LARGE', key);
        assert.equal(error.name, 'CheckpointTooLargeError');
        assert.match(error.message, /maxCheckpointBytes/);
      }
      assert.deepEqual(mine.filter((o) => o.sid === sids[1]).map((o) => o.value), [{ n: 16, total: 16, count: 1 }], `${key}: a fresh session`);
    }
    await stopChild(a);
  } finally {
    if (alive(a)) a.child.kill('SIGKILL');
  }
});

test('a caught checkpoint error fails the session at the call, and the events it had not taken open the key\'s next session, sent together with the failing one', async () => {
  const name = fresh('ckpt-caught');
  const partitions = 1;
  const producer = redisProducer({ client, name, partitions });
  const catcher = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e === 'undef') {
          try {
            ctx.checkpoint(undefined);
          } catch (err) {
            yield 'caught ' + err.code;
          }
        }
        yield ['took', e];
      }
    },
    { idleTimeout: 200 },
  );
  // All four in one write: the handler may run ahead of the commits, and takes b and c only if the rule lets it.
  await producer.sendMany(['a', 'undef', 'b', 'c'].map((e) => ['k', e]));
  const errors = [];
  const worker = redisWorker(catcher, { client, name, partitions, leaseTtl: 1500, onError: (e) => errors.push(e) });
  try {
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 4, 'four outputs');
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0 && worker.stats().sessions === 0, 'every session ended');
    const outputs = await readAllOutputs(client, name, partitions);
    const sids = [...new Set(outputs.map((o) => o.sid))];
    assert.equal(sids.length, 2, 'b and c opened the key\'s next session');
    const view = sids.map((sid) => outputs.filter((o) => o.sid === sid).map((o) => o.error?.code ?? o.value));
    assert.deepEqual(view, [[['took', 'a'], 'ERR_INVALID_ARG_VALUE'], [['took', 'b'], ['took', 'c']]]);
    assert.equal(worker.stats().handedOn, 2, 'b and c handed on');
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test('an owner paused past its lease (SIGSTOP) writes no snapshot once it runs again; the next owner\'s stand, outputs equal a crash-free run', async () => {
  const name = fresh('ckpt');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, KEYS, sent);
  // A slow handler: A has events buffered and checkpoints to commit when it is paused.
  const a = ckptWorker(name, {}, { delayMs: 20 });
  let b;
  try {
    await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
    await send(KEYS * 35);
    await eventually(async () => (await snapshots(name)).size > 0, 'a first snapshot');
    a.child.kill('SIGSTOP');
    b = ckptWorker(name);
    await eventually(() => lastStats(b)?.owned.length === PARTITIONS, 'B owns every partition', 30_000);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === KEYS * 35, 'every output');
    await eventually(async () => [...(await snapshots(name)).values()].every((s) => s.seq === 30) && (await snapshots(name)).size === KEYS, 'B\'s snapshots');
    const before = await snapshots(name);
    a.child.kill('SIGCONT');
    // A runs again until it finds its leases gone (refused, or by its own clock). (Its lost counter, not its owned
    // list: B hands A its share back soon after, so A owns nothing only for a while.)
    await eventually(() => lastStats(a)?.lost === PARTITIONS, 'A lost every partition');
    assert.deepEqual(await snapshots(name), before, 'A wrote no snapshot');
    await stopAll(producer);
    await settled(client, name, PARTITIONS, sent);
    await stopChild(a);
    await stopChild(b);
  } finally {
    for (const c of [a, b]) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test('a zombie that reaches the fence: paused (SIGSTOP) with checkpoints to commit while its lease runs out in Redis and B takes over; once it runs again its commits are refused (stats().fenced), and Redis holds B\'s snapshots and outputs unchanged', async () => {
  // The worker's own clock drops a lease it knows has run out before its next write, so a pause longer than
  // leaseTtl is usually caught by A itself (the test above): the renewal due at its resumption is refused before
  // the commit it queued is sent. Here A's lease (120 s: no renewal due, every 40 s) runs out in Redis while A
  // still counts it valid, as when Redis' clock runs ahead of the worker's or the pause falls between a commit's
  // queueing and its send: the test expires the lease keys while A is stopped. What A then writes must be refused.
  const name = fresh('zombie');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, KEYS, sent);
  const a = ckptWorker(name, {}, { ttl: 120_000, delayMs: 20 });
  let b;
  try {
    await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
    await send(KEYS * 35);
    await eventually(async () => (await snapshots(name)).size > 0, 'a first snapshot');
    a.child.kill('SIGSTOP');
    // A has events it has not handled yet, and so checkpoints it has not committed.
    assert.ok((await readAllOutputs(client, name, PARTITIONS)).length < KEYS * 35, 'A was stopped with work left');
    const fencedBefore = lastStats(a).fenced;
    for (let p = 0; p < PARTITIONS; p++) await client.pExpire(`velo:{${name}:p${p}}:lease`, 1);
    // Its membership of the live workers too (else B would leave it half the partitions).
    await client.del(`velo:{${name}}:workers`);
    b = ckptWorker(name);
    await eventually(() => lastStats(b)?.owned.length === PARTITIONS, 'B owns every partition', 30_000);
    await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === KEYS * 35, 'every output');
    await eventually(async () => (await snapshots(name)).size === KEYS && [...(await snapshots(name)).values()].every((s) => s.seq === 30), "B's snapshots");
    const before = { snapshots: await snapshots(name), outputs: await readAllOutputs(client, name, PARTITIONS) };
    a.child.kill('SIGCONT');
    await eventually(() => lastStats(a)?.fenced > fencedBefore, 'A refused by the fence', 30_000);
    assert.equal(lastStats(a).renewals.count, 0, 'A never renewed: no renewal refused told it first');
    assert.deepEqual(await snapshots(name), before.snapshots, 'A wrote no snapshot');
    assert.deepEqual(await readAllOutputs(client, name, PARTITIONS), before.outputs, 'A wrote no output');
    await stopAll(producer);
    await settled(client, name, PARTITIONS, sent);
    await stopChild(a);
    await stopChild(b);
  } finally {
    for (const c of [a, b]) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test('a commit under a lease that is gone writes no snapshot and acks nothing; the owner\'s replaces the session\'s snapshot, and the session\'s end removes it', async () => {
  const { RedisLog, KeySpace } = require('../dist/redis/log/redis-log.js');
  const name = fresh('ckfence');
  const keys = new KeySpace(name);
  const log = new RedisLog(client, keys, 1, (error) => assert.fail(error));
  const producer = redisProducer({ client, name, partitions: 1 });
  const zombie = await log.acquire(0, 'zombie', 300);
  await producer.sendMany([
    ['k', { n: 1 }],
    ['k', { n: 2 }],
  ]);
  const read = await log.read(zombie, '>', 10);
  const ids = read.entries.map((e) => e.id);
  const snapshot = (seq, state) => ({ sid: `k@${ids[0]}`, key: 'k', seq, lastTime: 1, events: seq, state });
  await new Promise((resolve) => setTimeout(resolve, 400)); // the zombie's lease runs out
  const owner = await log.acquire(0, 'owner', 5000);
  await assert.rejects(log.commit(zombie, { outputs: [], checkpoints: [snapshot(1, '"zombie"')], acks: [ids[0]], ended: [] }), {
    code: 'ERR_VELO_FENCED',
  });
  assert.equal(await client.exists(keys.ckpt(0)), 0, 'no snapshot written');
  assert.equal(await pendingCount(client, name, 1), 2, 'nothing acked');
  await log.read(owner, '0-0', 10);
  await log.commit(owner, { outputs: [], checkpoints: [snapshot(1, '"one"')], acks: [ids[0]], ended: [] });
  await log.commit(owner, { outputs: [], checkpoints: [snapshot(2, '"two"')], acks: [ids[1]], ended: [] });
  const stored = await log.snapshots(owner);
  assert.deepEqual(
    stored.map((s) => ({ ...s, state: s.state.toString() })),
    // (written: the session's high-water mark, read with it: no output written here.)
    [{ ...snapshot(2, '"two"'), timers: 0, pending: [], written: 0 }],
    'the latest snapshot only, as written',
  );
  assert.equal(await pendingCount(client, name, 1), 0, 'the events it covers acked');
  await log.commit(owner, { outputs: [], acks: [], ended: [`k@${ids[0]}`] });
  assert.equal(await client.exists(keys.ckpt(0)), 0, "the session's end removed its snapshot");
  await log.close();
});

test('checkReplay covers a replay from a snapshot: outputs made again after the checkpoint are compared with those written', async () => {
  const name = fresh('ckcheck');
  const producer = redisProducer({ client, name, partitions: 1 });
  /** A total checkpointed every 4 events; `salt` changes its outputs (a handler that is not deterministic). */
  const salted = (salt) =>
    streamFn(async function* salted(events, ctx) {
      let { total } = ctx.restored ?? { total: 0 };
      let count = 0;
      for await (const e of events) {
        total += e.n;
        yield total + salt;
        if (++count % 4 === 0) ctx.checkpoint({ total });
      }
    });
  const run = async (salt, until) => {
    const errors = [];
    const worker = redisWorker(salted(salt), { client, name, partitions: 1, leaseTtl: 1000, checkReplay: true, onError: (e) => errors.push(e) });
    await eventually(async () => (await client.xLen(`velo:{${name}:p0}:out`)) >= until, `${until} outputs`);
    await eventually(() => worker.stats().restored === 1 && worker.stats().replayed === 2, 'the replay');
    const stats = worker.stats();
    await worker.close();
    return { errors, stats };
  };
  await producer.sendMany(Array.from({ length: 10 }, (_, n) => ['k', { n }]));
  // A writes 10 outputs and checkpoints after the 4th and 8th; its hand-off leaves events 8 and 9 pending.
  const first = await new Promise((resolve, reject) => {
    const errors = [];
    const worker = redisWorker(salted(0), { client, name, partitions: 1, leaseTtl: 1000, checkReplay: true, onError: (e) => errors.push(e) });
    eventually(async () => (await client.xLen(`velo:{${name}:p0}:out`)) === 10 && (await pendingCount(client, name, 1)) === 2, 'A\'s outputs and checkpoints')
      .then(() => worker.close())
      .then(() => resolve(errors), reject);
  });
  assert.deepEqual(first, []);
  // The same handler again: its replay from the snapshot makes outputs 9 and 10 again, equal.
  const same = await run(0, 10);
  assert.deepEqual(same.errors, [], 'no divergence');
  assert.equal(same.stats.diverged, 0);
  // A handler whose outputs differ: the two outputs made again after the checkpoint are flagged.
  const other = await run(1, 10);
  assert.deepEqual(
    other.errors.map((e) => [e.code, e.kind, e.sid.startsWith('k@'), e.seq, e.committed?.value, e.replayed?.value]),
    [
      ['ERR_VELO_REPLAY_DIVERGED', 'output', true, 9, 36, 37],
      ['ERR_VELO_REPLAY_DIVERGED', 'output', true, 10, 45, 46],
    ],
  );
});

test('maxCheckpointBytes is checked at the call', () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  for (const bad of [0, -1, 1.5, 2 ** 40]) {
    assert.throws(() => redisWorker(fn, { client, name: 'x', maxCheckpointBytes: bad }), { code: 'ERR_OUT_OF_RANGE' }, String(bad));
  }
  assert.throws(() => redisWorker(fn, { client, name: 'x', maxCheckpointBytes: '1' }), { code: 'ERR_OUT_OF_RANGE' });
});
