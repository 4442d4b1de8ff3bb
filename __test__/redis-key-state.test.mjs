// Per-key state beyond a session (`keyState`) on Redis: a session's last checkpoint is kept as its key's state in
// the commit that ends it (a key of its own, `velo:{<name>:p<N>}:state:<key>`, in the partition's slot, with a
// Redis expiry), and the key's next session starts from it (`ctx.restored`). It survives an idle end and a kill -9
// of the worker (child processes), expires after `retention`, and `redisKeyState().readState/deleteState` read and
// remove it from outside; hostile arguments get coded errors. On a Redis Cluster every key of a commit is in the
// partition's slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { streamFn } from 'velo-stream';
import { redisKeyState, redisProducer, redisWorker } from 'velo-stream/redis';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { checkpointTotals, eventually, readAllOutputs } from './helpers/redis-fixtures.mjs';
import { startRedisCluster } from './helpers/redis-server.mjs';

useRedis();

const RETENTION = 600_000;

/** The key of `key`'s kept state: its partition's hash tag, then `:state:<key>`. */
const stateKey = (name, partitions, key, fnv) => `velo:{${name}:p${fnv(key) % partitions}}:state:${key}`;

/** The last output of each key: key -> value. */
async function lastOutputs(name, partitions) {
  const last = new Map();
  for (const o of await readAllOutputs(client, name, partitions)) last.set(o.key, o);
  return last;
}

const alive = (c) => c && c.child.exitCode === null && c.child.signalCode === null;

test("idle end: the session's last checkpoint is kept for its key (its own Redis key, with the retention as its expiry), and the key's next session starts from it", async () => {
  const name = fresh('idle');
  const partitions = 2;
  const errors = [];
  const fn = checkpointTotals({ idleTimeout: 200 }, 0, 1);
  const worker = redisWorker(fn, {
    client,
    name,
    partitions,
    leaseTtl: 3000,
    keyState: { retention: RETENTION },
    onError: (e) => errors.push(e),
  });
  const producer = redisProducer({ client, name, partitions });
  const states = redisKeyState({ client, name, partitions });
  const registry = new Registry();
  registerRedisWorkerMetrics(registry, [worker]);
  try {
    await producer.sendMany([
      ['cart', { n: 1 }],
      ['cart', { n: 2 }],
      ['cart', { n: 3 }],
    ]);
    // The session ends by its idle time; its end's commit keeps its last checkpoint.
    const kept = await eventually(() => states.readState('cart'), "cart's state kept");
    assert.deepEqual(kept.state, { total: 6, count: 3 });
    const outputs = await readAllOutputs(client, name, partitions);
    assert.equal(kept.sid, outputs[0].sid, 'kept by the session that made the outputs');
    assert.ok(kept.expiresIn > 0 && kept.expiresIn <= RETENTION, `expires in ${kept.expiresIn}`);
    const { fnv1a } = await import('velo-stream/redis');
    const key = stateKey(name, partitions, 'cart', fnv1a);
    const ttl = await client.pTTL(key);
    assert.ok(ttl > 0 && ttl <= RETENTION, `the Redis key ${key} has an expiry (${ttl})`);
    // Nothing of the session is left but the state.
    assert.equal(await client.hLen(`velo:{${name}:p${fnv1a('cart') % partitions}}:ckpt`), 0);

    await producer.send('cart', { n: 4 });
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 4, 'the fourth output');
    const after = await readAllOutputs(client, name, partitions);
    assert.deepEqual(after[3].value, { n: 4, total: 10, count: 4 }, 'the new session starts from the kept state');
    assert.notEqual(after[3].sid, after[0].sid, 'in a new session');
    assert.equal(after[3].seq, 1, 'numbered from 1');
    await eventually(async () => (await states.readState('cart'))?.state.count === 4, 'the second session kept its own');
    const stats = worker.stats();
    assert.equal(stats.keptStates, 2, 'two ends kept a state');
    assert.equal(stats.keyStateStarts, 1, 'one session started from one');
    const metrics = await registry.metrics();
    assert.match(metrics, /^velo_redis_kept_states_total\{[^}]*\} 2$/m);
    assert.match(metrics, /^velo_redis_key_state_starts_total\{[^}]*\} 1$/m);
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test('a session that never checkpointed keeps nothing; without keyState nothing is kept either', async () => {
  const name = fresh('none');
  const plain = streamFn(
    async function* plain(events) {
      for await (const e of events) yield e.n;
    },
    { idleTimeout: 100 },
  );
  const a = redisWorker(plain, { client, name, partitions: 1, keyState: { retention: RETENTION } });
  const nameB = fresh('off');
  const b = redisWorker(checkpointTotals({ idleTimeout: 100 }, 0, 1), { client, name: nameB, partitions: 1 });
  try {
    await redisProducer({ client, name, partitions: 1 }).send('k', { n: 1 });
    await redisProducer({ client, name: nameB, partitions: 1 }).send('k', { n: 1 });
    // Both sessions end (their input is acked: nothing pending, no snapshot, no high-water mark).
    await eventually(async () => (await client.hLen(`velo:{${name}:p0}:hw`)) === 0 && (await readAllOutputs(client, name, 1)).length === 1, 'A ended');
    await eventually(async () => (await client.hLen(`velo:{${nameB}:p0}:hw`)) === 0 && (await readAllOutputs(client, nameB, 1)).length === 1, 'B ended');
    assert.equal(await redisKeyState({ client, name, partitions: 1 }).readState('k'), undefined);
    assert.equal(await redisKeyState({ client, name: nameB, partitions: 1 }).readState('k'), undefined);
    assert.deepEqual(await client.keys(`velo:{${name}:p0}:state:*`), []);
    assert.deepEqual(await client.keys(`velo:{${nameB}:p0}:state:*`), []);
    assert.equal(a.stats().keptStates, 0);
    assert.equal(b.stats().keptStates, 0);
  } finally {
    await a.close();
    await b.close();
  }
});

test('retention: a kept state expires (Redis removes it), and the next session starts without it', async () => {
  const name = fresh('expire');
  const worker = redisWorker(checkpointTotals({ idleTimeout: 100 }, 0, 1), {
    client,
    name,
    partitions: 1,
    keyState: { retention: 1500 },
  });
  const producer = redisProducer({ client, name, partitions: 1 });
  const states = redisKeyState({ client, name, partitions: 1 });
  try {
    await producer.send('k', { n: 5 });
    const kept = await eventually(() => states.readState('k'), 'kept');
    assert.deepEqual(kept.state, { total: 5, count: 1 });
    await eventually(async () => (await states.readState('k')) === undefined, 'expired', 10_000);
    assert.equal(await client.exists(`velo:{${name}:p0}:state:k`), 0, 'the key is gone');
    await producer.send('k', { n: 7 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'second output');
    assert.deepEqual((await readAllOutputs(client, name, 1))[1].value, { n: 7, total: 7, count: 1 }, 'started afresh');
  } finally {
    await worker.close();
  }
});

test("readState/deleteState: read and delete from outside; a deleted key's next session starts afresh; hostile arguments get coded errors", async () => {
  const name = fresh('rw');
  const partitions = 3;
  const worker = redisWorker(checkpointTotals({ idleTimeout: 100 }, 0, 1), {
    client,
    name,
    partitions,
    keyState: { retention: RETENTION },
  });
  const producer = redisProducer({ client, name, partitions });
  const states = redisKeyState({ client, name, partitions });
  try {
    assert.equal(states.partitions, partitions);
    await producer.sendMany([
      ['a', { n: 1 }],
      ['b', { n: 2 }],
      ['é ü {x}', { n: 3 }],
    ]);
    await eventually(async () => (await states.readState('a')) && (await states.readState('b')) && (await states.readState('é ü {x}')), 'three kept');
    assert.deepEqual((await states.readState('é ü {x}')).state, { total: 3, count: 1 }, 'a key with braces and non-ASCII');
    assert.equal(await states.deleteState('a'), true);
    assert.equal(await states.deleteState('a'), false, 'nothing left to delete');
    assert.equal(await states.readState('a'), undefined);
    assert.equal(await states.readState('never'), undefined);
    await producer.sendMany([
      ['a', { n: 10 }],
      ['b', { n: 20 }],
    ]);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 5, 'two more outputs');
    const last = await lastOutputs(name, partitions);
    assert.deepEqual(last.get('a').value, { n: 10, total: 10, count: 1 }, 'a deleted: afresh');
    assert.deepEqual(last.get('b').value, { n: 20, total: 22, count: 2 }, 'b kept: from its state');

    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const cases = [
      [123, 'ERR_INVALID_ARG_TYPE'],
      [undefined, 'ERR_INVALID_ARG_TYPE'],
      [revoked.proxy, 'ERR_INVALID_ARG_TYPE'],
      ['', 'ERR_INVALID_ARG_VALUE'],
      ['\uD800', 'ERR_INVALID_ARG_VALUE'],
      ['x'.repeat(1025), 'ERR_OUT_OF_RANGE'],
    ];
    for (const [key, code] of cases) {
      for (const call of ['readState', 'deleteState']) {
        await assert.rejects(states[call](key), (e) => e.code === code && e.message.startsWith(`${call}(): `), `${call}(${String(typeof key)})`);
      }
    }
    assert.throws(() => redisKeyState({ client, name: 'a{b}', partitions }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => redisKeyState({ client, name, partitions, retention: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => redisKeyState(revoked.proxy), { code: 'ERR_INVALID_ARG_TYPE' });
    // A stored value the codec cannot decode, or whose header is not velo-stream's.
    const { fnv1a } = await import('velo-stream/redis');
    await client.set(stateKey(name, partitions, 'bad', fnv1a), '{"sid":"bad@1-0"}\n{not json');
    await assert.rejects(states.readState('bad'), { code: 'ERR_VELO_DECODE' });
    await client.set(stateKey(name, partitions, 'bad', fnv1a), 'no header');
    await assert.rejects(states.readState('bad'), { code: 'ERR_VELO_DECODE' });
  } finally {
    await worker.close();
  }
});

test("a kept state the codec cannot decode: reported (ERR_VELO_DECODE), the key's session starts without it, and its end keeps its own", async () => {
  const name = fresh('corrupt');
  const errors = [];
  const worker = redisWorker(checkpointTotals({ idleTimeout: 100 }, 0, 1), {
    client,
    name,
    partitions: 1,
    keyState: { retention: RETENTION },
    onError: (e) => errors.push(e),
  });
  const states = redisKeyState({ client, name, partitions: 1 });
  try {
    await client.set(`velo:{${name}:p0}:state:k`, '{"sid":"k@1-0"}\n{not json');
    await redisProducer({ client, name, partitions: 1 }).send('k', { n: 4 });
    await eventually(async () => (await states.readState('k').catch(() => undefined))?.state.count === 1, 'its own state kept');
    assert.deepEqual((await readAllOutputs(client, name, 1))[0].value, { n: 4, total: 4, count: 1 });
    assert.deepEqual(
      errors.map((e) => e.code),
      ['ERR_VELO_DECODE'],
    );
    assert.match(errors[0].message, /could not decode the state kept for key "k"/);
  } finally {
    await worker.close();
  }
});

test('redisWorker refuses a bad keyState option with coded errors', () => {
  const fn = checkpointTotals({ idleTimeout: 100 });
  const base = { client, name: fresh('opt'), partitions: 1 };
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  for (const [i, [keyState, code]] of [
    [null, 'ERR_INVALID_ARG_TYPE'],
    [5, 'ERR_INVALID_ARG_TYPE'],
    [revoked.proxy, 'ERR_INVALID_ARG_TYPE'],
    [{}, 'ERR_OUT_OF_RANGE'],
    [{ retention: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ retention: 1.5 }, 'ERR_OUT_OF_RANGE'],
    [{ retention: 315_360_000_001 }, 'ERR_OUT_OF_RANGE'],
    [{ retention: 1000, ttl: 1 }, 'ERR_INVALID_ARG_VALUE'],
  ].entries()) {
    assert.throws(() => redisWorker(fn, { ...base, keyState }), { code }, `case ${i}`);
  }
});

test('kill -9: a key\'s state survives the crash of its worker, whether its session had ended (kept) or was live (restored, then kept): every key counts all its events across sessions and owners', async () => {
  const name = fresh('kill');
  const partitions = 4;
  const keys = 8;
  const child = () =>
    workerChild(name, {
      partitions,
      ttl: 1000,
      idle: 1000,
      delayMs: 1,
      trimInterval: 0,
      extra: { handler: 'ckpt', every: 1, keyState: { retention: RETENTION } },
    });
  const producer = redisProducer({ client, name, partitions });
  const states = redisKeyState({ client, name, partitions });
  const sent = new Map();
  const send = async (rounds) => {
    for (let r = 0; r < rounds; r++) {
      const batch = [];
      for (let k = 0; k < keys; k++) {
        const n = (sent.get(`user${k}`)?.length ?? 0) + 1;
        sent.set(`user${k}`, [...(sent.get(`user${k}`) ?? []), n]);
        batch.push([`user${k}`, { n }]);
      }
      await producer.sendMany(batch);
    }
  };
  const workers = [child()];
  try {
    await eventually(() => lastStats(workers[0])?.owned.length === partitions, 'A owns every partition');
    await send(3);
    // Every key's first session ends by its idle time: its state is kept.
    await eventually(async () => {
      for (let k = 0; k < keys; k++) if ((await states.readState(`user${k}`))?.state.count !== 3) return false;
      return true;
    }, 'every key kept count 3');
    // Second sessions open; kill -9 A while they are live (their checkpoints in the snapshot hash).
    await send(2);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === keys * 5, 'outputs of the second sessions');
    let live = 0;
    for (let p = 0; p < partitions; p++) live += await client.hLen(`velo:{${name}:p${p}}:ckpt`);
    assert.ok(live > 0, 'sessions live at the kill, with their snapshots');
    await killChild(workers[0]);
    workers.push(child());
    await eventually(() => lastStats(workers[1])?.owned.length === partitions, 'B took every partition over');
    await eventually(async () => {
      for (let k = 0; k < keys; k++) if ((await states.readState(`user${k}`))?.state.count !== 5) return false;
      return true;
    }, 'every key kept count 5 (the restored sessions ended and kept their state)');
    // Kill -9 B after the idle ends (every state kept), then C serves the third sessions.
    await killChild(workers[1]);
    workers.push(child());
    await eventually(() => lastStats(workers[2])?.owned.length === partitions, 'C took every partition over');
    await send(1);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= keys * 6, 'outputs of the third sessions');
    const last = await lastOutputs(name, partitions);
    for (let k = 0; k < keys; k++) {
      const ns = sent.get(`user${k}`);
      assert.deepEqual(
        last.get(`user${k}`).value,
        { n: ns.at(-1), total: ns.reduce((a, b) => a + b, 0), count: ns.length },
        `user${k}: its third session starts from the state its second kept`,
      );
    }
    // Every output once per (sid, seq), three sessions per key.
    const outputs = await readAllOutputs(client, name, partitions);
    const ids = new Set(outputs.map((o) => `${o.sid} ${o.seq}`));
    assert.equal(ids.size, outputs.length, 'no output written twice');
    assert.equal(outputs.length, keys * 6);
    for (let k = 0; k < keys; k++) assert.equal(new Set(outputs.filter((o) => o.key === `user${k}`).map((o) => o.sid)).size, 3);
    const stats = await stopChild(workers[2]);
    assert.equal(stats.keyStateStarts, keys, 'C started every third session from its key state');
  } finally {
    for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test('cluster: every key a commit writes (the kept states included) is in the partition\'s slot; a state survives an idle end there', async () => {
  const cluster = await startRedisCluster(3);
  let cc;
  let worker;
  try {
    cc = await cluster.client();
    const name = fresh('cluster');
    const partitions = 8;
    worker = redisWorker(checkpointTotals({ idleTimeout: 200 }, 0, 1), {
      client: cc,
      name,
      partitions,
      leaseTtl: 3000,
      keyState: { retention: RETENTION },
    });
    const producer = redisProducer({ client: cc, name, partitions });
    const states = redisKeyState({ client: cc, name, partitions });
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    await producer.sendMany(keys.map((k) => [k, { n: 1 }]));
    await eventually(async () => (await Promise.all(keys.map((k) => states.readState(k)))).every((s) => s?.state.count === 1), 'every key kept');
    await producer.sendMany(keys.map((k) => [k, { n: 2 }]));
    await eventually(async () => (await Promise.all(keys.map((k) => states.readState(k)))).every((s) => s?.state.count === 2), 'every key kept its second');
    const { fnv1a } = await import('velo-stream/redis');
    for (const k of keys) {
      const p = fnv1a(k) % partitions;
      const slot = (name) => cc.sendCommand(name, true, ['CLUSTER', 'KEYSLOT', name]);
      assert.equal(await slot(`velo:{${name}:p${p}}:state:${k}`), await slot(`velo:{${name}:p${p}}`), k);
    }
    assert.equal(worker.stats().errors, 0);
    assert.equal(worker.stats().keyStateStarts, keys.length);
  } finally {
    await worker?.close();
    await cc?.close?.();
    await cluster.stop();
  }
});
