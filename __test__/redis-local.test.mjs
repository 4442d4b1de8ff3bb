// Local delivery of outputs on the worker (onOutput, maxUndelivered) and the
// replay-divergence check (checkReplay), on a private redis-server. Worker
// children (helpers/redis-local-child.mjs) print what onOutput gets, so a
// kill -9 leaves a record of what the dead worker delivered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { redisProducer, redisWorker, ReplayDivergedError, OnOutputError } from 'velo-stream/redis';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { streamFn } from '../index.mjs';
import { start } from './helpers/child.mjs';
import { client, fresh, killChild, lastStats, redis, sender, stopChild, useRedis } from './helpers/redis-suite.mjs';
import { checkOutputs, eventually, expectedTotals, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

useRedis();

const CHILD = fileURLToPath(new URL('./helpers/redis-local-child.mjs', import.meta.url));
const TTL = 1000;

/** A worker child with onOutput (see redis-local-child.mjs). */
function localChild(name, { partitions, idle, handler = 'totals', extra = {} }) {
  return start([CHILD, redis.url, name, partitions, TTL, idle, handler, JSON.stringify(extra)].map(String), { timeout: 90_000 });
}

/** The outputs a child's onOutput got, in call order. */
const deliveredBy = (child) =>
  child.stdout
    .split('\n')
    .filter((l) => l.startsWith('out '))
    .map((l) => JSON.parse(l.slice(4)));

/** Every output entry of every partition with its id, in stream order: [{ id, partition, key, sid, seq, value|error }]. */
async function storedOutputs(name, partitions) {
  const out = [];
  for (let p = 0; p < partitions; p++) {
    for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}:out`, '-', '+')) {
      const item = { id, partition: p, key: message.k, sid: message.sid, seq: Number(message.seq) };
      if (message.e !== undefined) item.error = JSON.parse(message.e);
      else item.value = JSON.parse(message.v);
      out.push(item);
    }
  }
  return out;
}

const tag = (o) => `${o.sid}#${o.seq}`;
const byPartition = (list, p) => list.filter((o) => o.partition === p);

/** Keys of the function matching `velo:{name:p*}:<suffix>`. */
const keysOf = (name, suffix) => client.keys(`velo:{${name}:p*}:${suffix}`);

test('onOutput gets each output once, only after Redis has it, equal to the stored entry, in stream order per partition', async () => {
  const name = fresh('local');
  const partitions = 4;
  const producer = redisProducer({ client, name, partitions });
  const delivered = [];
  const missing = [];
  const worker = redisWorker(totals({ idleTimeout: 150 }), {
    client,
    name,
    partitions,
    leaseTtl: 1500,
    async onOutput(output) {
      // Called after the commit: the entry is in Redis already.
      const [entry] = await client.xRange(`velo:{${name}:p${output.partition}}:out`, output.id, output.id);
      if (entry?.message.sid !== output.sid || Number(entry?.message.seq) !== output.seq) missing.push(output);
      delivered.push(output);
    },
  });
  try {
    const keys = Array.from({ length: 10 }, (_, i) => `user${i}`);
    const sent = new Map(keys.map((k) => [k, []]));
    for (let round = 0; round < 3; round++) {
      const batch = [];
      for (let i = 0; i < 100; i++) {
        const n = round * 100 + i;
        sent.get(keys[n % keys.length]).push(n);
        batch.push([keys[n % keys.length], { n }]);
      }
      await producer.sendMany(batch);
      // Longer than the idle timeout: each key gets a new session per round.
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    await eventually(async () => delivered.length === 300 && (await pendingCount(client, name, partitions)) === 0, '300 outputs delivered');
    assert.deepEqual(missing, [], 'every output was in Redis when onOutput got it');
    const stored = await storedOutputs(name, partitions);
    assert.equal(stored.length, 300);
    for (let p = 0; p < partitions; p++) assert.deepEqual(byPartition(delivered, p), byPartition(stored, p), `partition ${p}: the stored entries, in order`);
    // Per key: the sessions' outputs, in order, as a crash-free run.
    const perKey = new Map();
    for (const o of delivered) perKey.set(o.key, [...(perKey.get(o.key) ?? []), o.value.n]);
    for (const [key, ns] of sent) assert.deepEqual(perKey.get(key), ns, `${key} in order`);
    assert.ok(new Set(delivered.map((o) => o.sid)).size >= 20, 'several sessions per key');
    const stats = worker.stats();
    assert.equal(stats.delivered, 300);
    assert.equal(stats.undelivered, 0);
    assert.equal(stats.diverged, 0);
    assert.deepEqual(await keysOf(name, 'check'), [], 'no digests without checkReplay');
  } finally {
    await worker.close();
  }
});

for (const moment of ['quiet', 'busy']) {
  test(`kill -9 (${moment}): the new owner delivers only what it writes; with the dead worker's deliveries every output is covered${moment === 'busy' ? ' but the commit it died in' : ''}`, async () => {
    const name = fresh(`kill${moment}`);
    const partitions = 4;
    // Sessions stay live across the takeover: the new owner replays them, and its dedupe drops what they make again.
    const idle = 4000;
    const producer = redisProducer({ client, name, partitions });
    const sent = new Map();
    const send = sender(producer, 12, sent);
    const a = localChild(name, { partitions, idle });
    await eventually(() => lastStats(a)?.owned.length === partitions, 'A owns every partition');
    await send(120);
    if (moment === 'quiet') {
      await eventually(() => deliveredBy(a).length === 120, 'A delivered its 120 outputs');
      await killChild(a);
    } else {
      const more = send(120);
      await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= 160, 'A is writing');
      await killChild(a);
      await more;
    }
    const byB = [];
    const errors = [];
    const b = redisWorker(totals({ idleTimeout: idle }, 1), {
      client,
      name,
      partitions,
      leaseTtl: TTL,
      onOutput: (o) => void byB.push(o),
      onError: (e) => errors.push(e),
    });
    try {
      await eventually(() => b.stats().owned.length === partitions, 'B owns every partition', 30_000);
      await send(60);
      const total = [...sent.values()].reduce((n, l) => n + l.length, 0);
      await eventually(async () => (await readAllOutputs(client, name, partitions)).length === total, `${total} outputs`, 30_000);
      await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed', 30_000);
      const stored = await storedOutputs(name, partitions);
      checkOutputs(stored, new Map([...sent].map(([key, ns]) => [key, expectedTotals(ns)])));
      const byA = deliveredBy(a);
      // Entry ids are unique per stream: keyed by partition too.
      const at = (o) => `${o.partition}/${o.id}`;
      const byId = new Map(stored.map((o) => [at(o), o]));
      const seen = new Set();
      for (const o of [...byA, ...byB]) {
        assert.deepEqual(o, byId.get(at(o)), `delivered ${tag(o)} is the stored entry ${at(o)}`);
        assert.ok(!seen.has(tag(o)), `${tag(o)} delivered twice`);
        seen.add(tag(o));
      }
      const stats = b.stats();
      assert.ok(stats.replayedSessions > 0, 'B replayed live sessions');
      assert.ok(stats.outputs > byB.length, `B's replay made outputs again that the dedupe dropped (${stats.outputs} committed, ${byB.length} written)`);
      assert.equal(stats.delivered, byB.length);
      // Per partition, what nobody delivered is at most the dead worker's last commit: after all it delivered, before all B wrote.
      let lost = 0;
      for (let p = 0; p < partitions; p++) {
        const ids = (list) => new Set(byPartition(list, p).map((o) => o.id));
        const [fromA, fromB] = [ids(byA), ids(byB)];
        const order = byPartition(stored, p).map((o) => (fromB.has(o.id) ? 'B' : fromA.has(o.id) ? 'A' : '-')).join('');
        assert.match(order, /^A*-*B*$/, `partition ${p}: A's deliveries, then undelivered, then B's`);
        lost += order.replace(/[AB]/g, '').length;
      }
      if (moment === 'quiet') assert.equal(lost, 0, 'every output delivered by A or B');
      else assert.ok(lost <= 4 * 512, `at most one commit per partition undelivered (${lost})`);
      assert.deepEqual(errors, []);
    } finally {
      await b.close();
    }
  });
}

test('a slow onOutput holds the commits: at most maxUndelivered outputs are committed and waiting, the rest stays in Redis', async () => {
  const name = fresh('slow');
  const partitions = 2;
  const producer = redisProducer({ client, name, partitions });
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  const delivered = [];
  const worker = redisWorker(totals({ idleTimeout: 300, buffer: 4 }), {
    client,
    name,
    partitions,
    leaseTtl: 1500,
    maxUndelivered: 50,
    async onOutput(output) {
      await gate;
      delivered.push(output);
    },
  });
  const registry = new Registry();
  registerRedisWorkerMetrics(registry, [worker]);
  const sample = async (metric) => Number(new RegExp(`^${metric}\\{fn="${name}",[^}]*\\} (\\d+)$`, 'm').exec(await registry.metrics())?.[1]);
  try {
    await eventually(() => worker.stats().owned.length === 2, 'the worker owns both partitions');
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    // More than the partitions' outboxes hold (1024 outputs each) once the local queue is full.
    await producer.sendMany(Array.from({ length: 5000 }, (_, n) => [keys[n % 10], { n }]));
    await eventually(() => worker.stats().undelivered === 50, 'the local queue full');
    // However long it stays so, nothing more is committed (sampled every 10 ms for 100 samples).
    for (let i = 0; i < 100; i++) {
      const stats = worker.stats();
      assert.ok(stats.undelivered <= 50, `undelivered ${stats.undelivered} <= 50`);
      assert.equal(stats.delivered, 0);
      const written = (await readAllOutputs(client, name, partitions)).length;
      assert.ok(written <= 50, `${written} outputs committed while none was delivered`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    let unread = 0;
    for (const p of [0, 1]) unread += Number((await client.xInfoGroups(`velo:{${name}:p${p}}`))[0].lag);
    assert.ok(unread > 2000, `the backlog waits in Redis, unread (${unread})`);
    assert.equal(await sample('velo_redis_undelivered_outputs'), 50);
    open();
    await eventually(() => delivered.length === 5000, '5000 outputs delivered', 90_000);
    const stored = await storedOutputs(name, partitions);
    for (let p = 0; p < partitions; p++) assert.deepEqual(byPartition(delivered, p), byPartition(stored, p), `partition ${p}`);
    assert.equal(await sample('velo_redis_outputs_delivered_total'), 5000);
    assert.equal(await sample('velo_redis_undelivered_outputs'), 0);
  } finally {
    open();
    await worker.close();
  }
});

test('an onOutput that throws or rejects: onError gets OnOutputError with the cause, the output is not offered again, the worker goes on', async () => {
  const name = fresh('throw');
  const partitions = 2;
  const producer = redisProducer({ client, name, partitions });
  const calls = [];
  const errors = [];
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const worker = redisWorker(totals({ idleTimeout: 150 }), {
    client,
    name,
    partitions,
    leaseTtl: 1500,
    onOutput(output) {
      calls.push(output);
      if (output.value.n % 3 === 0) throw new Error(`sync ${output.value.n}`);
      if (output.value.n % 3 === 1) return Promise.reject(new Error(`async ${output.value.n}`));
      return undefined;
    },
    onError: (error) => errors.push(error),
  });
  try {
    await producer.sendMany(Array.from({ length: 60 }, (_, n) => [`k${n % 4}`, { n }]));
    await eventually(() => calls.length === 60, '60 calls');
    await producer.sendMany(Array.from({ length: 30 }, (_, i) => [`k${i % 4}`, { n: 60 + i }]));
    await eventually(async () => calls.length === 90 && (await pendingCount(client, name, partitions)) === 0, '90 calls, every session closed');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(calls.length, 90, 'no output offered again');
    assert.deepEqual([...calls].map(tag).sort(), (await storedOutputs(name, partitions)).map(tag).sort());
    const failing = calls.filter((o) => o.value.n % 3 !== 2);
    assert.equal(errors.length, failing.length);
    for (const error of errors) {
      assert.ok(error instanceof OnOutputError);
      assert.equal(error.code, 'ERR_VELO_ON_OUTPUT');
      const n = error.output.value.n;
      assert.match(error.cause.message, new RegExp(`^(sync|async) ${n}$`));
      assert.equal(error.cause.message.startsWith('sync'), n % 3 === 0);
    }
    assert.equal(worker.stats().errors, failing.length);
    assert.equal(worker.stats().delivered, 90);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await worker.close();
  }
});

test('a commit whose reply is lost (applied, then the call fails): the retry gets the ids it wrote, and each output is delivered once', async () => {
  const name = fresh('lost');
  const partitions = 2;
  const producer = redisProducer({ client, name, partitions });
  let commits = 0;
  let lost = 0;
  // The user's client, losing the reply of every third commit call (the script with thirteen keys) after Redis ran it.
  const lossy = {
    async sendCommand(args, options) {
      const reply = await client.sendCommand(args, options);
      if ((args[0] === 'EVALSHA' || args[0] === 'EVAL') && args[2] === '13' && ++commits % 3 === 0 && lost < 6) {
        lost++;
        throw new Error('reply lost (simulated)');
      }
      return reply;
    },
    duplicate: () => client.duplicate(),
    connect: () => client.connect(),
    on: () => {},
    destroy: () => {},
  };
  const delivered = [];
  const errors = [];
  const worker = redisWorker(totals({ idleTimeout: 150 }), {
    client: lossy,
    name,
    partitions,
    leaseTtl: 1500,
    onOutput: (o) => void delivered.push(o),
    onError: (e) => errors.push(e),
  });
  try {
    for (let round = 0; round < 6; round++) {
      await producer.sendMany(Array.from({ length: 20 }, (_, i) => [`k${i % 5}`, { n: round * 20 + i }]));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 120 && (await pendingCount(client, name, partitions)) === 0, '120 outputs, nothing pending');
    await eventually(() => delivered.length === 120, `120 delivered (${delivered.length})`);
    assert.ok(lost >= 3, `replies lost: ${lost}`);
    assert.ok(errors.length >= 3 && errors.every((e) => e.message === 'reply lost (simulated)'));
    const stored = await storedOutputs(name, partitions);
    for (let p = 0; p < partitions; p++) assert.deepEqual(byPartition(delivered, p), byPartition(stored, p), `partition ${p}`);
  } finally {
    await worker.close();
  }
});

test('checkReplay: a handler using Math.random() is flagged on replay after kill -9 (ERR_VELO_REPLAY_DIVERGED, counted, exported); readers keep the first outputs', async () => {
  const name = fresh('random');
  const partitions = 4;
  const idle = 4000;
  const producer = redisProducer({ client, name, partitions });
  const a = localChild(name, { partitions, idle, handler: 'random', extra: { checkReplay: true } });
  await eventually(() => lastStats(a)?.owned.length === partitions, 'A owns every partition');
  await producer.sendMany(Array.from({ length: 40 }, (_, n) => [`k${n % 8}`, { n }]));
  await eventually(() => deliveredBy(a).length === 40, 'A wrote and delivered 40 outputs');
  const before = await storedOutputs(name, partitions);
  await killChild(a);
  assert.doesNotMatch(a.stdout, /^error /m);
  const errors = [];
  const random = streamFn(
    async function* random(events) {
      for await (const e of events) yield { n: e.n, r: Math.random() };
    },
    { idleTimeout: 300 },
  );
  const b = redisWorker(random, { client, name, partitions, leaseTtl: TTL, checkReplay: true, onError: (e) => errors.push(e) });
  const registry = new Registry();
  registerRedisWorkerMetrics(registry, [b]);
  try {
    await eventually(() => b.stats().owned.length === partitions, 'B owns every partition', 30_000);
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'the replayed sessions closed', 30_000);
    await eventually(() => errors.length === 40, `40 divergences (${errors.length})`);
    const byTag = new Map(before.map((o) => [tag(o), o]));
    for (const error of errors) {
      assert.ok(error instanceof ReplayDivergedError, String(error));
      assert.equal(error.code, 'ERR_VELO_REPLAY_DIVERGED');
      assert.equal(error.kind, 'output');
      const stored = byTag.get(tag(error));
      assert.ok(stored, `${tag(error)} was written by A`);
      assert.equal(error.key, stored.key);
      assert.equal(error.partition, stored.partition);
      assert.deepEqual(error.committed, { value: stored.value });
      assert.equal(error.replayed.value.n, stored.value.n);
      assert.notEqual(error.replayed.value.r, stored.value.r);
    }
    assert.equal(new Set(errors.map(tag)).size, 40, 'each output flagged once');
    assert.equal(b.stats().diverged, 40);
    assert.deepEqual(await storedOutputs(name, partitions), before, 'readers see what A wrote, nothing more');
    assert.match(await registry.metrics(), new RegExp(`velo_redis_replay_diverged_total\\{fn="${name}",worker="[^"]+"\\} 40`));
    assert.deepEqual(await keysOf(name, 'check'), [], 'digests are removed with their sessions');
  } finally {
    await b.close();
  }
});

test('checkReplay: a deterministic handler through the same kill -9 and replay, and a graceful hand-off, is never flagged', async () => {
  const name = fresh('det');
  const partitions = 4;
  const idle = 3000;
  const producer = redisProducer({ client, name, partitions });
  const sent = new Map();
  const send = sender(producer, 12, sent);
  const a = localChild(name, { partitions, idle, extra: { checkReplay: true } });
  await eventually(() => lastStats(a)?.owned.length === partitions, 'A owns every partition');
  await send(120);
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= 100, 'A is writing');
  await killChild(a);
  const errors = [];
  const options = { client, name, partitions, leaseTtl: TTL, checkReplay: true, onError: (e) => errors.push(e) };
  const b = redisWorker(totals({ idleTimeout: idle }, 1), options);
  let c;
  try {
    await eventually(() => b.stats().owned.length === partitions, 'B owns every partition', 30_000);
    await send(60);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 180, '180 outputs', 30_000);
    // A graceful hand-off to C with sessions live: C replays them too.
    c = redisWorker(totals({ idleTimeout: idle }, 1), options);
    await b.close();
    await eventually(() => c.stats().owned.length === partitions, 'C owns every partition', 30_000);
    await send(30);
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed', 30_000);
    const outputs = await readAllOutputs(client, name, partitions);
    checkOutputs(outputs, new Map([...sent].map(([key, ns]) => [key, expectedTotals(ns)])));
    assert.ok(b.stats().replayedSessions > 0 && c.stats().replayedSessions > 0, 'B and C replayed');
    assert.ok(b.stats().replayed > 0 && c.stats().replayed > 0, 'pending entries replayed: outputs made again and compared');
    assert.deepEqual(errors, [], 'nothing flagged');
    assert.equal(b.stats().diverged + c.stats().diverged, 0);
    assert.deepEqual(await keysOf(name, 'check'), [], 'digests are removed with their sessions');
  } finally {
    await b.close();
    await c?.close();
  }
});

test('checkReplay: a replay that makes fewer outputs (a handler reading outside state) is flagged at the session end (kind count)', async () => {
  const name = fresh('fewer');
  const partitions = 1;
  let twice = true;
  // Outside state decides: twice per event on A, once on B.
  async function* echo(events) {
    for await (const e of events) {
      if (e.stop) return;
      yield e.n;
      if (twice) yield e.n;
    }
  }
  // The session lives until the hand-off (a session keeps the idleTimeout it opened with, on B too); B ends it at
  // the `stop` event sent after the replay.
  const fnA = streamFn(echo, { idleTimeout: 60_000 });
  const fnB = streamFn(echo, { idleTimeout: 60_000 });
  const producer = redisProducer({ client, name, partitions });
  const errors = [];
  const options = { client, name, partitions, leaseTtl: 1500, checkReplay: true, onError: (e) => errors.push(e) };
  const a = redisWorker(fnA, options);
  let b;
  try {
    await eventually(() => a.stats().owned.length === 1, 'A owns the partition');
    await producer.sendMany([['k', { n: 1 }], ['k', { n: 2 }], ['k', { n: 3 }]]);
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 6, 'A wrote 6 outputs');
    const before = await storedOutputs(name, 1);
    twice = false;
    b = redisWorker(fnB, options);
    await a.close();
    await producer.send('k', { stop: true });
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'the session closed', 30_000);
    await eventually(() => errors.some((e) => e.kind === 'count'), 'the count flagged');
    const count = errors.find((e) => e.kind === 'count');
    assert.equal(count.code, 'ERR_VELO_REPLAY_DIVERGED');
    assert.equal(count.sid, before[0].sid);
    assert.equal(count.key, 'k');
    assert.equal(count.seq, 4, 'the first output it did not make again');
    assert.match(count.message, /ended with 3 outputs, but 6 were written/);
    // Outputs 2 and 3 differ too (2 vs 1, 3 vs 2).
    assert.deepEqual(
      errors.filter((e) => e.kind === 'output').map((e) => [e.seq, e.committed.value, e.replayed.value]),
      [
        [2, 1, 2],
        [3, 2, 3],
      ],
    );
    assert.equal(errors.length, 3);
    assert.deepEqual(await storedOutputs(name, 1), before, 'readers see what A wrote');
  } finally {
    await a.close();
    await b?.close();
  }
});

test('close() resolves once onOutput has had every output the worker committed', async () => {
  const name = fresh('close');
  const partitions = 2;
  const producer = redisProducer({ client, name, partitions });
  const delivered = [];
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const worker = redisWorker(totals({ idleTimeout: 60_000 }), {
    client,
    name,
    partitions,
    leaseTtl: 1500,
    async onOutput(output) {
      await gate;
      delivered.push(output);
    },
  });
  await producer.sendMany(Array.from({ length: 30 }, (_, n) => [`k${n % 3}`, { n }]));
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 30, '30 outputs committed');
  assert.equal(delivered.length, 0);
  const closing = worker.close();
  setTimeout(release, 50);
  await closing;
  assert.equal(delivered.length, 30, 'every committed output delivered before close() resolved');
});

test('bad local-delivery options are refused with a code', () => {
  const base = { client, name: 'opts', partitions: 2 };
  assert.throws(() => redisWorker(totals(), { ...base, onOutput: 5 }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => redisWorker(totals(), { ...base, onOutput() {}, maxUndelivered: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => redisWorker(totals(), { ...base, maxUndelivered: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => redisWorker(totals(), { ...base, checkReplay: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('an onOutput parked on an await of its own holds close() only until the leases run out: ERR_VELO_CLOSE_TIMEOUT, then close() resolves and the outputs stay in Redis', async () => {
  const name = fresh('parkedout');
  const producer = redisProducer({ client, name, partitions: 2 });
  const errors = [];
  let calls = 0;
  const worker = redisWorker(totals({ idleTimeout: 0 }), {
    client,
    name,
    partitions: 2,
    leaseTtl: 1500,
    onError: (error) => errors.push(error),
    onOutput: () => {
      calls++;
      return new Promise(() => {});
    },
  });
  await producer.sendMany([['a', { n: 1 }], ['b', { n: 2 }], ['a', { n: 3 }]]);
  await eventually(async () => (await readAllOutputs(client, name, 2)).length === 3 && calls === 1, 'committed, one onOutput call parked');
  await worker.close();
  assert.deepEqual(
    errors.map((e) => e.code),
    ['ERR_VELO_CLOSE_TIMEOUT'],
  );
  assert.deepEqual([...errors[0].partitions], []);
  assert.match(errors[0].message, /onOutput did not take every committed output .* \(3 undelivered;/);
});
