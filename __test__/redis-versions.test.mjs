// Versions on Redis (`version`, `versions`, `redisVersions`): a session runs on the version it opened with until it
// ends, on whichever worker runs it; a worker takes a partition only if it runs the version of each of its live
// sessions; a worker superseded by a newer one hands its partitions over, so new sessions open on the newest; the
// caps a session opened with travel with it; `redisVersions().status()` counts live sessions per version and
// `drained(version)` resolves once the last session of a version has ended. The rolling deploy runs worker
// processes (two of v1, two of v2 that still run v1, one killed -9 in the middle) under a steady load of keys whose
// sessions come and go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Registry } from 'prom-client';
import { streamFn } from 'velo-stream';
import { redisProducer, redisVersions, redisWorker } from 'velo-stream/redis';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs, versionedTotals } from './helpers/redis-fixtures.mjs';

const require = createRequire(import.meta.url);
const { activeWorkers, supersedes } = require('../dist/durable/rules/versions.js');

useRedis();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const idTime = (id) => Number(id.slice(0, id.indexOf('-')));
/** A sid's first entry time (`<key>@<ms>-<seq>`). */
const sidTime = (sid) => idTime(sid.slice(sid.lastIndexOf('@') + 1));

/** Outputs grouped by session, each session's in seq order: sid -> outputs. */
function bySession(outputs) {
  const sessions = new Map();
  for (const o of outputs) sessions.set(o.sid, [...(sessions.get(o.sid) ?? []), o]);
  for (const list of sessions.values()) list.sort((a, b) => a.seq - b.seq);
  return sessions;
}

/**
 * Nothing lost, nothing written twice: per key, its sessions (in the order of their first entries) hold exactly the
 * events it was sent, in order, each once; within a session, seqs 1..k and running totals; one version per session.
 */
function checkExactlyOnce(outputs, sent) {
  const sessions = bySession(outputs);
  const perKey = new Map();
  for (const [sid, list] of sessions) {
    const key = list[0].key;
    perKey.set(key, [...(perKey.get(key) ?? []), [sid, list]]);
    assert.deepEqual(
      list.map((o) => o.seq),
      list.map((_, i) => i + 1),
      `session ${sid}: seqs 1..${list.length}, none twice`,
    );
    assert.equal(new Set(list.map((o) => o.value.v)).size, 1, `session ${sid} ran on one version: ${list.map((o) => o.value.v)}`);
    let total = 0;
    list.forEach((o, i) => {
      total += o.value.n;
      assert.deepEqual([o.value.total, o.value.count], [total, i + 1], `session ${sid}: running totals`);
    });
  }
  for (const [key, ns] of sent) {
    const got = (perKey.get(key) ?? [])
      .sort(([a], [b]) => sidTime(a) - sidTime(b) || (a < b ? -1 : 1))
      .flatMap(([, list]) => list.map((o) => o.value.n));
    assert.deepEqual(got, ns, `key ${key}: every event once, in order`);
  }
  assert.equal(sent.size, perKey.size, 'no output of a key never sent');
  return sessions;
}

/**
 * A steady load: `keys` keys, each sending bursts of 8-20 events 100 ms apart (sessions of about 1-2 s), then quiet
 * for 700-1000 ms (past the workers' idle time: its session ends, the next burst opens another). Returns `stop()`; `sent`: key -> ns in order.
 */
function load(producer, keys, sent) {
  let stopped = false;
  let n = 0;
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const loops = Array.from({ length: keys }, async (_, k) => {
    const key = `cart${k}`;
    await sleep(random() * 300);
    while (!stopped) {
      const burst = 8 + Math.floor(random() * 13);
      for (let i = 0; i < burst && !stopped; i++) {
        const event = n++;
        sent.set(key, [...(sent.get(key) ?? []), event]);
        await producer.send(key, { n: event });
        await sleep(100);
      }
      await sleep(700 + random() * 300);
    }
  });
  return async () => {
    stopped = true;
    await Promise.all(loops);
  };
}

test('a rolling deploy v1 -> v2 under load (two v1 workers, two v2 workers that still run v1, one v2 killed -9 in the middle): every session runs on one version, nothing is lost or written twice, new sessions open on v2, and v1 is drained once its last session has ended', async () => {
  const name = fresh('roll');
  const partitions = 8;
  const common = { partitions, ttl: 1500, idle: 500, delayMs: 0 };
  const v1 = [0, 1].map(() => workerChild(name, { ...common, extra: { handler: 'versioned', runs: ['v1'] } }));
  const producer = redisProducer({ client, name, partitions });
  const versions = redisVersions({ client, name, partitions });
  const sent = new Map();
  let v2 = [];
  let stop = async () => {};
  try {
    await eventually(() => v1.every((c) => lastStats(c)?.owned.length > 0), 'both v1 workers own partitions');
    stop = load(producer, 12, sent);
    await eventually(async () => ((await versions.status()).sessions.v1 ?? 0) > 0, 'live v1 sessions');
    v2 = [0, 1].map(() => workerChild(name, { ...common, extra: { handler: 'versioned', runs: ['v1', 'v2'] } }));
    // The v1 workers see a worker that runs all they run and more: they hand over everything.
    await eventually(
      () => v1.every((c) => lastStats(c)?.superseded === true && lastStats(c).owned.length === 0),
      'the v1 workers superseded, owning nothing',
    );
    const handedOver = Date.now();
    const during = await versions.status();
    assert.deepEqual(
      during.workers.filter((w) => w.version === 'v1').map((w) => [w.superseded, w.partitions.length]),
      [
        [true, 0],
        [true, 0],
      ],
      'status(): the v1 workers superseded, owning nothing',
    );
    // A v1 session still running then runs on at a v2 worker, on v1.
    await sleep(300);
    await killChild(v2[0]);
    // drained('v1') while the load goes on: once every v1 session has ended (each key's burst ends by idle).
    await versions.drained('v1', { interval: 50 });
    const drainedOutputs = await readAllOutputs(client, name, partitions, { ids: true });
    await sleep(1500);
    await stop();
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed');
    await eventually(async () => Object.keys((await versions.status()).sessions).length === 0, 'no live session');
    const outputs = await readAllOutputs(client, name, partitions, { ids: true });
    const sessions = checkExactlyOnce(outputs, sent);

    const byVersion = (v) => [...sessions.values()].filter((list) => list[0].value.v === v);
    assert.ok(byVersion('v1').length > 0 && byVersion('v2').length > 0, 'sessions of both versions');
    // Sessions opened after the hand-over (Redis' clock, from their first entry) are v2's; a margin for clocks.
    const late = [...sessions].filter(([sid]) => sidTime(sid) > handedOver + 500);
    assert.ok(late.length > 0, 'sessions opened after the hand-over');
    for (const [sid, list] of late) assert.equal(list[0].value.v, 'v2', `session ${sid} opened after the hand-over runs v2`);
    // v1 sessions went on at the v2 workers after the hand-over (pinned to v1: the v2 workers ran their v1 handler).
    assert.ok(
      outputs.some((o) => o.value.v === 'v1' && idTime(o.id) > handedOver + 100),
      'a v1 session wrote outputs after the hand-over, at a v2 worker',
    );
    // Drained means drained: no v1 output came after it.
    assert.deepEqual(
      outputs.filter((o) => o.value.v === 'v1').length,
      drainedOutputs.filter((o) => o.value.v === 'v1').length,
      'no v1 output after drained() resolved',
    );
    // Nothing is left of the ended sessions' openings.
    for (let p = 0; p < partitions; p++) {
      assert.equal(await client.hLen(`velo:{${name}:p${p}}:opened`), 0, `partition ${p}: no opening left`);
      assert.equal(await client.hLen(`velo:{${name}:p${p}}:versions`), 0, `partition ${p}: no count left`);
    }
  } finally {
    await stop();
    const stats = await Promise.all([...v1, v2[1]].filter(Boolean).map((c) => stopChild(c)));
    for (const s of stats.slice(0, 2)) assert.equal(s.version, 'v1');
  }
});

test("a session's caps travel with it: a worker with another idleTimeout ends it where the one that opened it would (and new sessions open with the new worker's)", async () => {
  const name = fresh('caps');
  const errors = [];
  const options = { client, name, partitions: 1, leaseTtl: 1500, onError: (e) => errors.push(e) };
  const producer = redisProducer({ client, name, partitions: 1 });
  const a = redisWorker(versionedTotals('v1', { idleTimeout: 400 }), options);
  let b;
  try {
    await producer.send('k', { n: 1 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 'the first output');
    await a.close();
    // B's idle time is far longer: had it applied its own, the next event (1 s later, past A's 400 ms) would join.
    b = redisWorker(versionedTotals('v1', { idleTimeout: 60_000 }), options);
    await sleep(1000);
    await producer.send('k', { n: 2 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'the second output');
    const [first, second] = await readAllOutputs(client, name, 1);
    assert.notEqual(second.sid, first.sid, "the session ended by the idleTimeout it opened with (A's)");
    assert.equal(second.seq, 1);
    // The new session opened with B's caps: an event 1 s later joins it.
    await sleep(1000);
    await producer.send('k', { n: 3 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'the third output');
    const third = (await readAllOutputs(client, name, 1))[2];
    assert.equal(third.sid, second.sid, "the new session runs with B's idleTimeout");
    const opening = JSON.parse(await client.hGet(`velo:{${name}:p0}:opened`, second.sid));
    assert.deepEqual(opening, { idle: 60_000, age: 0, events: 0, timers: 1000, d: 0 }, 'stored: no version, its caps, no debounce');
    assert.deepEqual(errors, []);
  } finally {
    await a.close();
    await b?.close();
  }
});

test('a worker takes a partition only if it runs the version of each live session there: refused, counted, and taken by a worker that does', async () => {
  const name = fresh('refuse');
  const errors = [];
  const options = { client, name, partitions: 1, leaseTtl: 900, onError: (e) => errors.push(e) };
  const producer = redisProducer({ client, name, partitions: 1 });
  const fnOf = (v) => versionedTotals(v, { idleTimeout: 60_000 });
  const v2 = redisWorker(fnOf('v2'), { ...options, version: 'v2' });
  const workers = [v2];
  try {
    await producer.send('k', { n: 1 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 'a v2 session');
    await v2.close();
    const v1 = redisWorker(fnOf('v1'), { ...options, version: 'v1' });
    workers.push(v1);
    await eventually(() => v1.stats().refusedVersions >= 2, 'the v1 worker refused, again at its next balance');
    assert.deepEqual(v1.stats().owned, [], 'it owns nothing');
    const registry = new Registry();
    registerRedisWorkerMetrics(registry, [v1]);
    assert.match(await registry.metrics(), /^velo_redis_refused_versions_total\{[^}]*\} [1-9]\d*$/m);
    const status = await redisVersions({ client, name, partitions: 1 }).status();
    assert.deepEqual(status.sessions, { v2: 1 });
    assert.deepEqual(status.unowned, [0], 'partition 0 is owned by no one');
    // A worker of v3 that still runs v2 takes it, and the session goes on on v2.
    const v3 = redisWorker(fnOf('v3'), { ...options, version: 'v3', versions: { v2: fnOf('v2') } });
    workers.push(v3);
    await eventually(() => v3.stats().owned.length === 1, 'the v3 worker owns the partition');
    await producer.send('k', { n: 2 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'the second output');
    const outputs = await readAllOutputs(client, name, 1);
    assert.equal(outputs[1].sid, outputs[0].sid, 'the same session');
    assert.equal(outputs[1].value.v, 'v2', 'on v2, at the v3 worker');
    assert.deepEqual(v3.stats().sessionsByVersion, { v2: 1 });
    const metrics = new Registry();
    registerRedisWorkerMetrics(metrics, [v3]);
    assert.match(await metrics.metrics(), /^velo_redis_sessions_by_version\{[^}]*version="v2"[^}]*\} 1$/m);
    // The v3 worker supersedes the v1 one (it runs v1? no: v1 is not among v3's runs): both stay active.
    assert.equal(v1.stats().superseded, false);
    // The refusals were reported, once (at most once a minute), naming the partition and the version it waits for.
    assert.ok(v1.stats().refusedVersions >= 2);
    assert.deepEqual(
      errors.map((e) => [e.code, e.partitions, e.refused]),
      [['ERR_VELO_VERSION_REFUSED', [0], ['v2']]],
    );
    assert.match(errors[0].message, /Partition 0 waits for a worker of version "v2".*runs "v1"/);
  } finally {
    for (const w of workers) await w.close();
  }
});

test('supersedes: a worker that runs every version another runs, and more; activeWorkers counts those no one supersedes', () => {
  const w = (version, ...older) => ({ version, runs: [version, ...older] });
  assert.equal(supersedes(w('v2', 'v1'), w('v1')), true);
  assert.equal(supersedes(w('v1'), w('v2', 'v1')), false);
  assert.equal(supersedes(w('v2'), w('v1')), false, 'v2 alone cannot run v1 sessions: both stay');
  assert.equal(supersedes(w('v2', 'v1'), w('v1', 'v2')), false, 'the same versions: neither');
  assert.equal(supersedes(w('v1'), { version: '', runs: [''] }), true, 'any version supersedes none');
  assert.equal(supersedes(w('v2', '*'), w('v1', 'v0')), true, 'a worker that migrates supersedes one that does not');
  assert.equal(supersedes(w('v2', '*'), w('v3', '*')), false, 'two that migrate: neither');
  assert.equal(
    supersedes(w('v3', 'v2', '*'), w('v2', '*')),
    true,
    'a release that migrates and keeps the last one supersedes it',
  );
  assert.equal(supersedes(w('v3', 'v2', 'v1'), w('v2', '*')), false);
  const adverts = new Map([
    ['a', w('v1')],
    ['b', w('v1')],
    ['c', w('v2', 'v1')],
  ]);
  const judged = (...args) => (({ active, superseded }) => ({ active, superseded }))(activeWorkers(...args));
  assert.deepEqual(judged(adverts, 3, 'a'), { active: 1, superseded: true });
  assert.deepEqual(judged(adverts, 3, 'c'), { active: 1, superseded: false });
  // A live worker of an older release says nothing: it runs no version, and is superseded by any that has one.
  assert.deepEqual(judged(adverts, 4, 'c'), { active: 1, superseded: false });
  assert.deepEqual(judged(new Map(), 3, 'x'), { active: 3, superseded: false });
});

test('version options: bad values are refused with coded errors', () => {
  const fn = versionedTotals('v1');
  const base = { client, name: fresh('bad'), partitions: 1 };
  const refused = (extra, code, message) =>
    assert.throws(
      () => redisWorker(fn, { ...base, ...extra }),
      (e) => e.code === code && (message === undefined || message.test(e.message)),
    );
  refused({ version: 1 }, 'ERR_INVALID_ARG_TYPE', /options\.version must be a string/);
  refused({ version: '' }, 'ERR_INVALID_ARG_VALUE', /^(?!.*__proto__).*1-64 letters/);
  refused({ version: 'v 1' }, 'ERR_INVALID_ARG_VALUE');
  refused({ version: 'x'.repeat(65) }, 'ERR_INVALID_ARG_VALUE');
  refused({ version: '__proto__' }, 'ERR_INVALID_ARG_VALUE', /not "__proto__"/);
  refused({ version: 'v2', versions: JSON.parse('{"__proto__": 1}') }, 'ERR_INVALID_ARG_VALUE', /not "__proto__"/);
  refused({ version: 10n }, 'ERR_INVALID_ARG_TYPE');
  refused({ version: 'v2', migrate: async (state) => state }, 'ERR_INVALID_ARG_TYPE', /synchronously/);
  refused({ versions: { v0: fn } }, 'ERR_INVALID_ARG_VALUE', /needs "version"/);
  refused({ version: 'v2', versions: [fn] }, 'ERR_INVALID_ARG_TYPE');
  refused({ version: 'v2', versions: null }, 'ERR_INVALID_ARG_TYPE');
  refused({ version: 'v2', versions: { v1: async function* () {} } }, 'ERR_INVALID_ARG_TYPE', /stream function/);
  refused({ version: 'v2', versions: { v2: fn } }, 'ERR_INVALID_ARG_VALUE', /own version/);
  refused({ version: 'v2', versions: { 'v 1': fn } }, 'ERR_INVALID_ARG_VALUE');
  refused({ migrate: (s) => s }, 'ERR_INVALID_ARG_VALUE', /"migrate" option needs "version"/);
  refused({ version: 'v2', migrate: 'yes' }, 'ERR_INVALID_ARG_TYPE', /migrate must be a function/);
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  refused({ version: 'v2', versions: proxy }, 'ERR_INVALID_ARG_TYPE', /could not be read/);
  const getter = Object.defineProperty({ ...base }, 'version', {
    get() {
      throw new Error('no');
    },
    enumerable: true,
  });
  assert.throws(
    () => redisWorker(fn, getter),
    (e) => e.code === 'ERR_INVALID_ARG_TYPE',
  );
});

test('redisVersions: status() before any worker; drained() refuses bad arguments and a version nothing runs or holds (a typo: ERR_VELO_VERSION_UNKNOWN, unless ifUnknown), and stops at its signal', async () => {
  const name = fresh('status');
  const versions = redisVersions({ client, name, partitions: 3 });
  assert.deepEqual(await versions.status(), { sessions: {}, workers: [], unowned: [0, 1, 2] });
  // A version no live worker runs and no session is on: refused, not taken for drained; with ifUnknown, drained.
  await assert.rejects(versions.drained('never'), {
    code: 'ERR_VELO_VERSION_UNKNOWN',
    message: /no live worker runs version "never" and no live session is on it .*Versions there now: none/,
  });
  await versions.drained('never', { ifUnknown: 'resolve' });
  await assert.rejects(versions.drained('v1', { ifUnknown: 'yes' }), (e) => e.code === 'ERR_INVALID_ARG_VALUE');
  // An option it does not know (a typo of ifUnknown would otherwise reject for the version instead) is refused.
  await assert.rejects(versions.drained('v1', { ifUnkown: 'resolve' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "ifUnkown". Known options: signal, interval, ifUnknown/,
  });
  await assert.rejects(versions.drained(''), (e) => e.code === 'ERR_INVALID_ARG_VALUE');
  await assert.rejects(versions.drained(7), (e) => e.code === 'ERR_INVALID_ARG_TYPE');
  await assert.rejects(versions.drained('v1', { interval: 0 }), (e) => e.code === 'ERR_OUT_OF_RANGE');
  await assert.rejects(versions.drained('v1', { signal: {} }), (e) => e.code === 'ERR_INVALID_ARG_TYPE');
  await assert.rejects(versions.drained('v1', null), (e) => e.code === 'ERR_INVALID_ARG_TYPE');
  // A live worker of v1 owning partitions: not drained until it stops.
  const worker = redisWorker(versionedTotals('v1'), { client, name, partitions: 3, leaseTtl: 900, version: 'v1' });
  try {
    await eventually(() => worker.stats().owned.length === 3, 'the worker owns every partition');
    const status = await versions.status();
    assert.deepEqual(
      status.workers.map((w) => [w.id, w.version, w.runs, w.partitions, w.superseded]),
      [[worker.id, 'v1', ['v1'], [0, 1, 2], false]],
    );
    // A typo of a live version: refused at the first read, naming the versions there.
    await assert.rejects(versions.drained('vl'), { code: 'ERR_VELO_VERSION_UNKNOWN', message: /Versions there now: "v1"/ });
    const controller = new AbortController();
    const waiting = versions.drained('v1', { interval: 20, signal: controller.signal });
    let settled = false;
    waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await sleep(200);
    assert.equal(settled, false, 'not drained while a v1 worker owns partitions');
    const reason = new Error('deploy cancelled');
    controller.abort(reason);
    await assert.rejects(waiting, (e) => e === reason);
    const afterClose = versions.drained('v1', { interval: 20 });
    let closed = false;
    afterClose.then(() => (closed = true));
    // (Its first read sees the v1 worker: a version that is there when the wait starts.)
    await sleep(200);
    assert.equal(closed, false);
    await worker.close();
    await afterClose;
  } finally {
    await worker.close();
  }
});

/** `totals` of version `v` that checkpoints `{ total, from }` after each output (with `every`; 0: never). */
function checkpointed(v, every = 1) {
  return streamFn(
    async function* checkpointed(events, ctx) {
      let { total = 0, from } = ctx.restored ?? {};
      let n = 0;
      for await (const e of events) {
        total += e.n;
        yield { v, total, from };
        if (every > 0 && ++n % every === 0) ctx.checkpoint({ total, from });
      }
    },
    { idleTimeout: 60_000 },
  );
}

/** A session of key `k` on a v1 worker (its outputs written, its worker closed): the partition's sessions' openings. */
async function v1Session(name, options, every) {
  const v1 = redisWorker(checkpointed('v1', every), { ...options, version: 'v1' });
  const producer = redisProducer({ client, name, partitions: 1 });
  await producer.sendMany([
    ['k', { n: 1 }],
    ['k', { n: 2 }],
  ]);
  await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'two v1 outputs');
  await v1.close();
  return producer;
}

test("migrate: a worker of v2 without v1's handler adopts a v1 session from its checkpoint (migrate(state, 'v1')), goes on with it on v2 in the same session, and the session's opening and count move to v2", async () => {
  const name = fresh('migrate');
  const errors = [];
  const options = { client, name, partitions: 1, leaseTtl: 900, onError: (e) => errors.push(e) };
  const producer = await v1Session(name, options, 1);
  const calls = [];
  const v2 = redisWorker(checkpointed('v2'), {
    ...options,
    version: 'v2',
    migrate: (state, fromVersion) => {
      calls.push([state, fromVersion]);
      return { ...state, from: fromVersion };
    },
  });
  try {
    await producer.send('k', { n: 3 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'the third output');
    const outputs = await readAllOutputs(client, name, 1);
    assert.deepEqual(
      outputs.map((o) => [o.seq, o.value]),
      [
        [1, { v: 'v1', total: 1 }],
        [2, { v: 'v1', total: 3 }],
        [3, { v: 'v2', total: 6, from: 'v1' }],
      ],
    );
    assert.equal(new Set(outputs.map((o) => o.sid)).size, 1, 'one session');
    assert.deepEqual(calls, [[{ total: 3 }, 'v1']], 'migrate got the checkpoint, once');
    assert.equal(v2.stats().migrated, 1);
    await eventually(async () => (await client.hGet(`velo:{${name}:p0}:versions`, 'v2')) === '1', 'the count moved to v2');
    assert.equal(await client.hGet(`velo:{${name}:p0}:versions`, 'v1'), null);
    assert.equal(JSON.parse(await client.hGet(`velo:{${name}:p0}:opened`, outputs[0].sid)).v, 'v2');
    assert.deepEqual(
      await redisVersions({ client, name, partitions: 1 })
        .status()
        .then((s) => s.sessions),
      { v2: 1 },
    );
    assert.deepEqual(errors, []);
  } finally {
    await v2.close();
  }
});

test('migrate: adopting many sessions with a slow migrate (longer in all than the lease) keeps the lease: each session is adopted once, while the superseded v1 worker stays up', async () => {
  const name = fresh('migrate-slow');
  const errors = [];
  const options = { client, name, partitions: 1, leaseTtl: 600, onError: (e) => errors.push(e) };
  const v1 = redisWorker(checkpointed('v1'), { ...options, version: 'v1' });
  const producer = redisProducer({ client, name, partitions: 1 });
  const keys = Array.from({ length: 120 }, (_, i) => `k${i}`);
  const calls = [];
  let v2;
  try {
    await producer.sendMany(keys.map((k) => [k, { n: 1 }]));
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === keys.length, 'the v1 outputs');
    v2 = redisWorker(checkpointed('v2'), {
      ...options,
      version: 'v2',
      // 10 ms of CPU per session: 1.2 s for all of them, twice the lease.
      migrate: (state, fromVersion) => {
        const until = performance.now() + 10;
        while (performance.now() < until);
        calls.push(fromVersion);
        return { ...state, from: fromVersion };
      },
    });
    await eventually(() => v2.stats().migrated === keys.length, 'every session adopted', 30_000);
    await producer.sendMany(keys.map((k) => [k, { n: 2 }]));
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2 * keys.length, 'the v2 outputs', 30_000);
    const outputs = await readAllOutputs(client, name, 1);
    for (const [sid, list] of bySession(outputs)) {
      assert.deepEqual(
        list.map((o) => [o.seq, o.value]),
        [
          [1, { v: 'v1', total: 1 }],
          [2, { v: 'v2', total: 3, from: 'v1' }],
        ],
        sid,
      );
    }
    assert.equal(calls.length, keys.length, 'migrate called once per session');
    assert.deepEqual(errors, []);
  } finally {
    await v2?.close();
    await v1.close();
  }
});

test('migrate: a session with no checkpoint goes on on the new version from its first event (as a takeover replays it: the outputs written stay); a migrate that throws fails its session with ERR_VELO_MIGRATE and the next events open a new session', async () => {
  const name = fresh('migrate2');
  const errors = [];
  const options = { client, name, partitions: 1, leaseTtl: 900, onError: (e) => errors.push(e) };
  let producer = await v1Session(name, options, 0);
  let calls = 0;
  let v2 = redisWorker(checkpointed('v2', 0), { ...options, version: 'v2', migrate: () => calls++ });
  try {
    await producer.send('k', { n: 3 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'the third output');
    assert.deepEqual((await readAllOutputs(client, name, 1))[2].value, { v: 'v2', total: 6 }, 'v2 over the whole session');
    assert.equal(calls, 0, 'no checkpoint: nothing to migrate');
    assert.equal(v2.stats().migrated, 1);
  } finally {
    await v2.close();
  }
  const name3 = fresh('migrate3');
  const options3 = { ...options, name: name3 };
  producer = await v1Session(name3, options3, 1);
  // A migrate that returns a promise (not an async function: that is refused at redisWorker()): the adoption is
  // refused (the handler would start from a promise).
  const name4 = fresh('migrate4');
  const options4 = { ...options, name: name4 };
  const producer4 = await v1Session(name4, options4, 1);
  const asyncV2 = redisWorker(checkpointed('v2'), { ...options4, version: 'v2', migrate: (state) => Promise.resolve(state) });
  try {
    await producer4.send('k', { n: 3 });
    await eventually(async () => (await readAllOutputs(client, name4, 1)).length >= 3, 'the failure');
    const failed = (await readAllOutputs(client, name4, 1))[2];
    assert.equal(failed.error?.code, 'ERR_VELO_MIGRATE');
    assert.match(failed.error.message, /returned a promise/);
    assert.equal(asyncV2.stats().migrated, 0, 'a failed adoption is not counted');
  } finally {
    await asyncV2.close();
  }
  // A state whose `then` cannot be read (a getter that throws): refused the same way, the partition goes on.
  const name5 = fresh('migrate5');
  const options5 = { ...options, name: name5 };
  const producer5 = await v1Session(name5, options5, 1);
  const hostileV2 = redisWorker(checkpointed('v2'), {
    ...options5,
    version: 'v2',
    migrate: (state) => ({
      ...state,
      get then() {
        throw new Error('no then');
      },
    }),
  });
  try {
    await producer5.send('k', { n: 3 });
    await eventually(async () => (await readAllOutputs(client, name5, 1)).length >= 4, 'the failure and a new session');
    const outputs = await readAllOutputs(client, name5, 1);
    assert.equal(outputs[2].error?.code, 'ERR_VELO_MIGRATE');
    assert.deepEqual(outputs[3].value, { v: 'v2', total: 3 }, 'the event after the checkpoint opens a new v2 session');
    assert.equal(hostileV2.stats().lost, 0, 'the partition was never lost');
  } finally {
    await hostileV2.close();
  }
  const refusal = new Error('no path from v1');
  v2 = redisWorker(checkpointed('v2'), {
    ...options3,
    version: 'v2',
    migrate: () => {
      throw refusal;
    },
  });
  try {
    await producer.send('k', { n: 3 });
    await eventually(async () => (await readAllOutputs(client, name3, 1)).length >= 4, 'the failure and a new session');
    const outputs = await readAllOutputs(client, name3, 1);
    assert.equal(outputs[2].sid, outputs[0].sid);
    assert.equal(outputs[2].error.code, 'ERR_VELO_MIGRATE', 'the failed session ends with ERR_VELO_MIGRATE');
    assert.notEqual(outputs[3].sid, outputs[0].sid);
    assert.deepEqual(outputs[3].value, { v: 'v2', total: 3 }, 'the event after the checkpoint opens a new v2 session');
    assert.ok(
      errors.some((e) => e.code === 'ERR_VELO_MIGRATE' && e.cause === refusal),
      'reported to onError with its cause',
    );
  } finally {
    await v2.close();
  }
});

test('a v2 that does not carry v1 beside v1 workers: every partition stays owned (the v1 workers keep, or take past their share, those with live v1 sessions), and every event is served', async () => {
  const name = fresh('nocarry');
  const partitions = 4;
  const errors = [];
  const options = { client, name, partitions, leaseTtl: 900, onError: (e) => errors.push(e) };
  const fnOf = (v) => versionedTotals(v, { idleTimeout: 60_000 });
  const producer = redisProducer({ client, name, partitions });
  const { fnv1a } = await import('velo-stream/redis');
  // A key per partition.
  const keys = [];
  for (let i = 0; keys.length < partitions; i++)
    if (!keys.some((k) => fnv1a(k) % partitions === fnv1a(`u${i}`) % partitions)) keys.push(`u${i}`);
  const v1 = [0, 1].map(() => redisWorker(fnOf('v1'), { ...options, version: 'v1' }));
  const workers = [...v1];
  try {
    await eventually(
      () => v1[0].stats().owned.length + v1[1].stats().owned.length === partitions,
      'the v1 workers own every partition',
    );
    await producer.sendMany(keys.map((k) => [k, { n: 1 }]));
    await eventually(
      async () => (await readAllOutputs(client, name, partitions)).length === partitions,
      'a v1 session per partition',
    );
    workers.push(...[0, 1].map(() => redisWorker(fnOf('v2'), { ...options, version: 'v2' })));
    const versions = redisVersions({ client, name, partitions });
    // Three balancing rounds of every worker (leaseTtl/3 each), then: owned, and served.
    await sleep(1200);
    for (let round = 2; round <= 4; round++) {
      await producer.sendMany(keys.map((k) => [k, { n: round }]));
      await eventually(
        async () => (await readAllOutputs(client, name, partitions)).length === round * partitions,
        `round ${round} served`,
      );
      assert.deepEqual((await versions.status()).unowned, [], 'no partition unowned');
    }
    assert.deepEqual(
      workers.slice(2).map((w) => w.stats().owned.length),
      [0, 0],
      'the v1 workers keep their partitions past their share (the v2 ones cannot run them)',
    );
    // The v1 worker that owns most stops: its partitions, refused to the v2 workers, are taken past its share by the
    // other.
    const [gone, left] = v1[0].stats().owned.length >= v1[1].stats().owned.length ? v1 : [v1[1], v1[0]];
    await gone.close();
    await eventually(() => left.stats().owned.length === partitions, 'the other v1 worker owns every partition');
    await producer.sendMany(keys.map((k) => [k, { n: 5 }]));
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 5 * partitions, 'round 5 served');
    assert.ok(
      workers.slice(2).some((w) => w.stats().refusedVersions > 0),
      'the v2 workers were refused the freed partitions',
    );
    const outputs = await readAllOutputs(client, name, partitions);
    for (const k of keys)
      assert.deepEqual(
        outputs.filter((o) => o.key === k).map((o) => [o.value.v, o.value.count]),
        [1, 2, 3, 4, 5].map((count) => ['v1', count]),
        `key ${k}: one v1 session`,
      );
    // Only the v2 workers' reports of the partitions refused to them (once a minute each at most).
    assert.deepEqual([...new Set(errors.map((e) => e.code))], ['ERR_VELO_VERSION_REFUSED']);
    assert.ok(errors.length <= 2, `${errors.length} reports`);
  } finally {
    for (const w of workers) await w.close();
  }
});

test('drained(): a version named like an Object.prototype member resolves as any other; an abort during a status read is seen at once; versions given as a Map are refused; interval out of range is ERR_OUT_OF_RANGE', async () => {
  const name = fresh('proto');
  const versions = redisVersions({ client, name, partitions: 2 });
  for (const v of ['constructor', 'toString', 'valueOf', 'hasOwnProperty']) {
    await assert.rejects(versions.drained(v, { interval: 10 }), { code: 'ERR_VELO_VERSION_UNKNOWN' });
    await versions.drained(v, { interval: 10, ifUnknown: 'resolve' });
  }
  await assert.rejects(versions.drained('__proto__'), (e) => e.code === 'ERR_INVALID_ARG_VALUE');
  const worker = redisWorker(versionedTotals('v1'), { client, name, partitions: 2, leaseTtl: 900, version: 'v1' });
  try {
    await eventually(() => worker.stats().owned.length === 2, 'the worker owns the partitions');
    for (const delay of [0, 1, 2]) {
      const controller = new AbortController();
      const waiting = versions.drained('v1', { interval: 3_600_000, signal: controller.signal });
      setTimeout(() => controller.abort(new Error(`stop ${delay}`)), delay);
      // Seen at once whenever it lands (one that landed during a status read used to wait out the hour).
      await assert.rejects(waiting, { message: `stop ${delay}` });
    }
  } finally {
    await worker.close();
  }
  assert.throws(
    () =>
      redisWorker(versionedTotals('v2'), {
        client,
        name,
        partitions: 2,
        version: 'v2',
        versions: new Map([['v1', versionedTotals('v1')]]),
      }),
    (e) => e.code === 'ERR_INVALID_ARG_TYPE' && /plain object/.test(e.message),
  );
  await assert.rejects(versions.drained('v1', { interval: 5 }), (e) => e.code === 'ERR_OUT_OF_RANGE');
  await assert.rejects(versions.drained('v1', { interval: NaN }), (e) => e.code === 'ERR_OUT_OF_RANGE');
});
