// redisWorker's `limiter` option on a private redis-server: sessions (`limiter.session`) and handler steps
// (`limiter.step`) taking permits of an in-process `limiter()` or a fleet-wide `redisLimiter`. What must hold is
// checked by counting, never by timing: an auditor in Redis (helpers/redis-permit-child.mjs) counts the sessions
// (or steps) running at once inside their permits' holding, and the outputs must be those the log defines (a wait
// for a permit is a slow handler: it changes neither which inputs a session takes nor where it ends).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { limiter, streamFn, task } from 'velo-stream';
import { sessionWorker } from 'velo-stream/durable';
import { redisLimiter, redisProducer, redisWorker } from 'velo-stream/redis';
import { start } from './helpers/child.mjs';
import { client, fresh, killChild, lastStats, redis, useRedis } from './helpers/redis-suite.mjs';
import {
  eventually,
  expectedTotals,
  pendingCount,
  readAllOutputs,
  sessionsInLog,
  settled,
  totals,
} from './helpers/redis-fixtures.mjs';

useRedis();

const CHILD = fileURLToPath(new URL('./helpers/redis-permit-child.mjs', import.meta.url));
const permitChild = (options) => start([CHILD, JSON.stringify({ url: redis.url, ...options })], { timeout: 120_000 });

/** SIGTERM: a clean hand-off, no error reported, and its last stats (`closed`). */
async function stop(child) {
  child.child.kill('SIGTERM');
  const { stdout } = await child.finished();
  assert.deepEqual(
    stdout.split('\n').filter((l) => l.startsWith('error ')),
    [],
    'the worker reported no error',
  );
  return JSON.parse(
    stdout
      .split('\n')
      .find((l) => l.startsWith('closed '))
      .slice(7),
  );
}

/** Sends `perKey` events to each of `keys` (`[key, tenant]`), in rounds, `n` from `from + 1`; returns key -> ns sent. */
async function sendAll(name, partitions, keys, perKey, from = 0) {
  const producer = redisProducer({ client, name, partitions });
  const sent = new Map();
  let n = from;
  for (let round = 0; round < perKey; round++) {
    const batch = keys.map(([key, tenant]) => {
      n++;
      sent.set(key, [...(sent.get(key) ?? []), n]);
      return [key, { n, tenant }];
    });
    await producer.sendMany(batch);
  }
  return sent;
}

const maxOf = async (name, scope) => Number((await client.get(`audit:${name}:${scope}:max`)) ?? 0);
const holders = (limiterName, key = '') => client.zCard(`velo:lim:{${limiterName}}:h:${key}`);

test('limiter.session, concurrency 2 shared by two worker processes over 30 keys: never more than 2 sessions at once, outputs as without it', async () => {
  const name = fresh('conc');
  const lim = `${name}-lim`;
  const options = {
    name,
    partitions: 4,
    leaseTtl: 2000,
    idleTimeout: 150,
    per: 'session',
    limiter: { name: lim, concurrency: 2 },
  };
  const children = [permitChild({ ...options, tag: 'A' }), permitChild({ ...options, tag: 'B' })];
  await Promise.all(children.map((c) => c.waitFor(/ready/)));
  await eventually(() => children.every((c) => (lastStats(c)?.owned.length ?? 0) > 0), 'both workers own partitions');
  const keys = Array.from({ length: 30 }, (_, i) => [`t${i % 3}:u${i}`, `t${i % 3}`]);
  const sent = await sendAll(name, 4, keys, 3);
  // Every key's outputs are a crash-free run's: its running totals, one session per key (its events were sent
  // together, within the idle time, however long its session waited to start).
  await settled(client, name, 4, sent);
  const max = await maxOf(name, 'all');
  assert.ok(max <= 2, `the auditor saw ${max} sessions at once`);
  assert.equal(max, 2, 'the limit was reached (the test is not vacuous)');
  // Both processes ran sessions, and waited for permits.
  const log = await client.lRange(`audit:${name}:log`, 0, -1);
  assert.ok(log.some((l) => l.startsWith('A ')) && log.some((l) => l.startsWith('B ')), 'both workers ran sessions');
  const closed = await Promise.all(children.map(stop));
  for (const stats of closed) assert.deepEqual(stats.permits, { waitingSessions: 0, waitingSteps: 0, held: 0, failures: 0 });
  assert.equal(await holders(lim), 0, 'every permit given back');
  assert.equal(await client.exists(`velo:lim:{${lim}}:q:`), 0, 'nobody left in the line');
});

test('limiter.session keyed by tenant, concurrency 1 per tenant: one session per tenant at a time, tenants at once', async () => {
  const name = fresh('tenant');
  const lim = `${name}-lim`;
  const options = {
    name,
    partitions: 4,
    leaseTtl: 2000,
    idleTimeout: 150,
    per: 'session',
    byTenant: true,
    limiter: { name: lim, concurrency: 1 },
  };
  const children = [permitChild({ ...options, tag: 'A' }), permitChild({ ...options, tag: 'B' })];
  await Promise.all(children.map((c) => c.waitFor(/ready/)));
  await eventually(() => children.every((c) => (lastStats(c)?.owned.length ?? 0) > 0), 'both workers own partitions');
  const keys = Array.from({ length: 18 }, (_, i) => [`t${i % 3}:u${i}`, `t${i % 3}`]);
  const sent = await sendAll(name, 4, keys, 2);
  await settled(client, name, 4, sent);
  for (const tenant of ['t0', 't1', 't2']) {
    assert.equal(await maxOf(name, `t:${tenant}`), 1, `tenant ${tenant}: one session at a time`);
  }
  // A tenant at its limit never held the others back: sessions of different tenants ran at once.
  const max = await maxOf(name, 'all');
  assert.ok(max >= 2 && max <= 3, `${max} sessions at once (one per tenant at most)`);
  await Promise.all(children.map(stop));
  for (const tenant of ['t0', 't1', 't2']) assert.equal(await holders(lim, tenant), 0);
});

test('limiter.session with a rate: session starts spaced as the rate allows (GCRA on Redis clock), outputs as without it', async () => {
  const name = fresh('rate');
  const lim = `${name}-lim`;
  const rate = { limit: 10, period: 1000, burst: 2 };
  const child = permitChild({
    name,
    partitions: 2,
    leaseTtl: 2000,
    idleTimeout: 100,
    per: 'session',
    limiter: { name: lim, rate },
  });
  await child.waitFor(/ready/);
  await eventually(() => (lastStats(child)?.owned.length ?? 0) === 2, 'the worker owns both partitions');
  const keys = Array.from({ length: 10 }, (_, i) => [`t0:k${i}`, 't0']);
  const sent = await sendAll(name, 2, keys, 2);
  await settled(client, name, 2, sent);
  const grants = (await client.lRange(`audit:${name}:grants`, 0, -1)).map(Number).sort((a, b) => a - b);
  assert.equal(grants.length, 10, 'a grant per session');
  const T = rate.period / rate.limit;
  for (let i = 0; i < grants.length; i++) {
    for (let j = i; j < grants.length; j++) {
      const bound = rate.burst + (grants[j] - grants[i]) / T;
      assert.ok(j - i + 1 <= bound + 1e-9, `${j - i + 1} session starts in [${grants[i]}, ${grants[j]}]: the bound is ${bound}`);
    }
  }
  // 10 starts with a burst of 2: the last is at least 8 emission intervals after the first.
  assert.ok(
    grants.at(-1) - grants[0] >= (grants.length - rate.burst) * T - 1,
    `starts spread over ${grants.at(-1) - grants[0]} ms`,
  );
  await stop(child);
});

test('limiter.step, concurrency 1 over two processes: one handler step at a time, and every session ends where the log says', async () => {
  const name = fresh('step');
  const lim = `${name}-lim`;
  const idle = 300;
  const options = {
    name,
    partitions: 4,
    leaseTtl: 2000,
    idleTimeout: idle,
    per: 'step',
    delayMs: 5,
    limiter: { name: lim, concurrency: 1 },
  };
  const children = [permitChild({ ...options, tag: 'A' }), permitChild({ ...options, tag: 'B' })];
  await Promise.all(children.map((c) => c.waitFor(/ready/)));
  await eventually(() => children.every((c) => (lastStats(c)?.owned.length ?? 0) > 0), 'both workers own partitions');
  // Two bursts per key, more than the idle time apart on Redis' clock: two sessions per key. The steps of all
  // sessions wait for one permit, far longer in all than the idle time: a rule by the worker's clock would split
  // or merge them elsewhere.
  const keys = Array.from({ length: 8 }, (_, i) => [`t${i % 2}:s${i}`, `t${i % 2}`]);
  const sent = await sendAll(name, 4, keys, 3);
  await new Promise((resolve) => setTimeout(resolve, idle * 3));
  // (The log says where sessions split: a burst slowed past the idle time by load splits there, for both.)
  for (const [key, ns] of await sendAll(name, 4, keys, 3, 24)) sent.set(key, [...sent.get(key), ...ns]);
  const total = 48;
  await eventually(async () => (await readAllOutputs(client, name, 4)).length >= total, `${total} outputs`, 60_000);
  await eventually(async () => (await pendingCount(client, name, 4)) === 0, 'nothing pending', 60_000);
  const outputs = await readAllOutputs(client, name, 4);
  const logSessions = await sessionsInLog(client, name, 4, idle);
  assert.ok(logSessions.size >= 16, `the log defines two sessions per key at least (${logSessions.size})`);
  for (const [sid, session] of logSessions) {
    const mine = outputs.filter((o) => o.sid === sid).sort((a, b) => a.seq - b.seq);
    assert.deepEqual(
      mine.map((o) => o.value),
      expectedTotals(session.ns),
      `${sid}: the outputs of the log's session`,
    );
  }
  assert.equal(outputs.length, total);
  const max = await maxOf(name, 'all');
  assert.equal(max, 1, `the auditor saw ${max} handler steps at once`);
  const closed = await Promise.all(children.map(stop));
  assert.ok(closed.some((s) => s.limiter.admitted > 0));
  assert.equal(await holders(lim), 0, 'every permit given back');
});

/**
 * A handler that records, as each key's session starts, the keys whose sessions run then (`seen`: key -> keys); a
 * session of a key for which `brief(key)` holds returns after its first event.
 */
function observed(config, brief = () => false) {
  const running = new Set();
  const seen = new Map();
  const fn = streamFn(async function* observedSessions(events) {
    let key;
    try {
      for await (const e of events) {
        if (key === undefined) {
          key = e.key;
          seen.set(key, [...running]);
          running.add(key);
        }
        yield { n: e.n };
        if (brief(key)) return;
      }
    } finally {
      running.delete(key);
    }
  }, config);
  return { fn, seen };
}

test('a key waiting for its permit holds back no other key of its partition (no head-of-line blocking)', async () => {
  // One partition; one session per tenant at a time. hot:a runs for its idle time, hot:b waits behind it, and the
  // cold tenant's keys, later in the log than hot:b, must start while hot:a still runs.
  const name = fresh('hol');
  const perTenant = limiter({ concurrency: 1, key: (s) => s.key.slice(0, s.key.indexOf(':')) });
  const { fn, seen } = observed({ idleTimeout: 1500 });
  const errors = [];
  const worker = redisWorker(fn, {
    client,
    name,
    partitions: 1,
    limiter: { session: perTenant },
    onError: (e) => errors.push(e),
  });
  const producer = redisProducer({ client, name, partitions: 1 });
  const keys = ['hot:a', 'hot:b', 'cold:x', 'cold:y'];
  await producer.sendMany(keys.map((key, n) => [key, { key, n }]));
  await eventually(() => seen.size === 4, 'every session started', 30_000);
  assert.deepEqual(seen.get('hot:a'), [], 'hot:a started first');
  assert.ok(!seen.get('hot:b').includes('hot:a'), 'hot:b started once hot:a had ended (one per tenant)');
  assert.ok(seen.get('cold:x').includes('hot:a'), 'cold:x started while hot:a ran, past hot:b waiting in front of it');
  await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'nothing pending', 30_000);
  await worker.close();
  assert.deepEqual(errors, []);
  assert.equal(perTenant.stats().inUse, 0);
});

test("a tenant with more keys waiting than the worker's maxWaiting keeps no other tenant's key from its free permits", async () => {
  // One partition, two session slots, one session per tenant at a time, two keys of the worker may wait. hot:0 holds
  // the hot tenant's permit for its idle time and brief:0 the other slot; the keys behind them are held, short of a
  // slot. brief:0 ends at once: of the held keys, hot:1 and hot:2 wait for their permit, hot:3 to hot:5 find no place
  // to wait, and cold:x finds its permit free: it must start while hot:0 runs, not once the hot keys are through.
  const name = fresh('maxwaiting');
  const perTenant = limiter({ concurrency: 1, key: (s) => s.key.slice(0, s.key.indexOf(':')) });
  const { fn, seen } = observed({ idleTimeout: 1500, maxConcurrent: 2 }, (key) => key.startsWith('brief:'));
  const errors = [];
  const worker = redisWorker(fn, {
    client,
    name,
    partitions: 1,
    limiter: { session: perTenant, maxWaiting: 2 },
    // (Keys waiting for the two slots are reported too: a warning, not an error.)
    onError: (e) => e?.code === 'ERR_VELO_SESSION_SLOTS' || errors.push(e),
  });
  const producer = redisProducer({ client, name, partitions: 1 });
  const keys = ['hot:0', 'brief:0', 'hot:1', 'hot:2', 'hot:3', 'hot:4', 'hot:5', 'cold:x'];
  await producer.sendMany(keys.map((key, n) => [key, { key, n }]));
  await eventually(() => seen.has('cold:x'), 'cold:x started', 30_000);
  assert.ok(seen.get('cold:x').includes('hot:0'), `cold:x started while hot:0 ran (with ${seen.get('cold:x')})`);
  await eventually(() => seen.size === keys.length, 'every session started', 60_000);
  await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'nothing pending', 30_000);
  await worker.close();
  assert.deepEqual(errors, []);
  assert.equal(perTenant.stats().inUse, 0);
});

test("a key granted its permits once the worker's session slots are full gives them back, and asks again once one frees", async () => {
  // One slot. t1:a asks with the slot free and waits for tenant t1's permit (held here); t2:b then takes the slot.
  // Granted while t2:b runs, t1:a must not hold t1's permit waiting for the slot: t1's permit stays free for others.
  const name = fresh('grantslot');
  const perTenant = limiter({ concurrency: 1, key: (s) => s.key.slice(0, s.key.indexOf(':')) });
  const outside = await perTenant.acquire({ key: 't1:outside' });
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield { n: e.n };
    },
    { idleTimeout: 1500, maxConcurrent: 1 },
  );
  const errors = [];
  const worker = redisWorker(fn, {
    client,
    name,
    partitions: 1,
    limiter: { session: perTenant },
    // (Keys waiting for the one slot are reported too: a warning, not an error.)
    onError: (e) => e?.code === 'ERR_VELO_SESSION_SLOTS' || errors.push(e),
  });
  const producer = redisProducer({ client, name, partitions: 1 });
  await producer.send('t1:a', { n: 1 });
  await eventually(() => worker.stats().permits?.waitingSessions === 1, 't1:a waits for its permit', 30_000);
  await producer.send('t2:b', { n: 2 });
  await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 't2:b runs', 30_000);
  outside.release();
  await new Promise((resolve) => setTimeout(resolve, 300));
  // t2:b still holds the only slot: t1's permit is free for anyone else.
  const other = perTenant.tryAcquire({ key: 't1:other' });
  assert.ok(other !== undefined, "t1's permit is free while t1:a has no slot");
  other.release();
  await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 't1:a runs once t2:b ends', 30_000);
  await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'nothing pending', 30_000);
  await worker.close();
  assert.deepEqual(errors, []);
  assert.equal(perTenant.stats().inUse, 0);
});

test("limiter.session with fairness: a worker's waiting keys are admitted round robin across tenants, not in log order", async () => {
  // One partition, one session at a time; each session takes one event and returns. 20 keys of a hot tenant come
  // first in the log, then 3 of a calm one, all waiting for the limiter's one permit (held here until every key
  // waits: a worker dispatches a backlog's first entries in a slice before the rest): with fairness by tenant the
  // calm keys start 2nd, 4th and 6th (first come, first served they would start 21st to 23rd). By counting starts,
  // never by timing.
  for (const fair of [true, false]) {
    const name = fresh(fair ? 'fair' : 'fifo');
    const tenant = (item) => item.key.slice(0, item.key.indexOf(':'));
    const one = limiter({ concurrency: 1, ...(fair ? { fairness: { by: tenant } } : {}) });
    const started = [];
    const fn = streamFn(
      async function* (events) {
        for await (const e of events) {
          started.push(e.key);
          yield { n: e.n };
          return;
        }
      },
      { idleTimeout: 0 },
    );
    const errors = [];
    const producer = redisProducer({ client, name, partitions: 1 });
    const keys = [...Array.from({ length: 20 }, (_, i) => `hot:${i}`), 'calm:0', 'calm:1', 'calm:2'];
    // Written before the worker starts: its first read finds every key waiting.
    await producer.sendMany(keys.map((key, n) => [key, { key, n }]));
    const held = await one.acquire({ key: 'outside:0' });
    const worker = redisWorker(fn, { client, name, partitions: 1, limiter: { session: one }, onError: (e) => errors.push(e) });
    try {
      await eventually(() => worker.stats().permits?.waitingSessions === keys.length, 'every key waits for the permit', 30_000);
      held.release();
      await eventually(() => started.length === keys.length, 'every session started', 30_000);
      const calm = started.flatMap((key, i) => (key.startsWith('calm:') ? [i + 1] : []));
      assert.deepEqual(calm, fair ? [2, 4, 6] : [21, 22, 23], started.join(' '));
      assert.deepEqual(
        started.filter((key) => key.startsWith('hot:')),
        keys.slice(0, 20),
        "a tenant's keys in log order",
      );
      await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'nothing pending', 30_000);
    } finally {
      await worker.close();
    }
    assert.deepEqual(errors, []);
    assert.equal(one.stats().inUse, 0);
    await one.close();
  }
});

test('a worker killed -9 holding a redisLimiter permit: the other takes its sessions over after the permit lease, not before', async () => {
  const name = fresh('kill');
  const lim = `${name}-lim`;
  const options = {
    name,
    partitions: 1,
    leaseTtl: 900,
    idleTimeout: 3000,
    per: 'session',
    limiter: { name: lim, concurrency: 1, leaseTtl: 2400 },
  };
  const a = permitChild({ ...options, tag: 'A' });
  await a.waitFor(/ready/);
  await eventually(() => (lastStats(a)?.owned.length ?? 0) === 1, 'A owns the partition');
  const b = permitChild({ ...options, tag: 'B' });
  await b.waitFor(/ready/);
  const sent = await sendAll(name, 1, [['t0:first', 't0']], 2);
  await eventually(() => lastStats(a)?.permits.held === 1, "A's session holds the permit");
  for (const [key, ns] of await sendAll(name, 1, [['t0:second', 't0']], 2, 2)) sent.set(key, ns);
  await eventually(() => lastStats(a)?.permits.waitingSessions === 1, 'the second key waits for the permit');
  await killChild(a);
  // The permit's lease as Redis holds it now that no renewal can come.
  const [lease] = (await client.zRangeWithScores(`velo:lim:{${lim}}:h:`, 0, -1)).map((e) => e.score);
  assert.ok(lease > 0, "the dead worker's permit is held");
  await settled(client, name, 1, sent);
  // B replayed the first session, then ran the second: each started once it held the permit, after the lease.
  const starts = (await client.lRange(`audit:${name}:log`, 0, -1))
    .filter((l) => l.startsWith('B '))
    .map((l) => Number(l.split(' ').at(-1)));
  assert.equal(starts.length, 2);
  for (const at of starts)
    assert.ok(at >= lease, `a session of B started at ${at}, before the dead permit's lease ran out at ${lease}`);
  const grants = (await client.lRange(`audit:${name}:grants`, 0, -1)).map(Number).sort((x, y) => x - y);
  assert.equal(grants.length, 3, "A's grant, then B's two");
  assert.ok(
    grants.slice(1).every((g) => g >= lease),
    `grants ${grants} after the lease ${lease}`,
  );
  const closed = await stop(b);
  assert.equal(closed.permits.held, 0);
  assert.equal(await holders(lim), 0);
});

test('close() while sessions wait for permits: it settles, their waits stop, the permits go back; another worker runs them all', async () => {
  for (const kind of ['redis', 'local']) {
    const name = fresh(`close-${kind}`);
    const lim =
      kind === 'redis'
        ? redisLimiter({ client, name: `${name}-lim`, concurrency: 1, leaseTtl: 3000 })
        : limiter({ concurrency: 1 });
    const errors = [];
    const fn = totals({ idleTimeout: 60_000 });
    const opts = { client, name, partitions: 1, leaseTtl: 1500, limiter: { session: lim }, onError: (e) => errors.push(e) };
    const worker = redisWorker(fn, opts);
    const keys = Array.from({ length: 4 }, (_, i) => [`t0:c${i}`, 't0']);
    const sent = await sendAll(name, 1, keys, 2);
    await eventually(
      () => worker.stats().permits.held === 1 && worker.stats().permits.waitingSessions === 3,
      'one session runs, three wait',
    );
    await worker.close();
    assert.deepEqual(errors, [], `${kind}: close() reported nothing (no ERR_VELO_CLOSE_TIMEOUT)`);
    assert.deepEqual(worker.stats().permits, { waitingSessions: 0, waitingSteps: 0, held: 0, failures: 0 });
    if (kind === 'redis') {
      assert.equal(await holders(`${name}-lim`), 0, 'the permit given back by close()');
      await eventually(async () => (await client.exists(`velo:lim:{${name}-lim}:q:`)) === 0, 'the waits left the line');
    } else {
      assert.equal(lim.stats().inUse, 0);
      assert.equal(lim.stats().waiting, 0);
    }
    // Another worker (same log, same sessions) runs every session from the start. The one that ran keeps the idle
    // time it opened with (a minute): a `stop` event per key ends each session once its events are in.
    const next = redisWorker(totals({ idleTimeout: 100 }), { ...opts, onError: (e) => errors.push(e) });
    await redisProducer({ client, name, partitions: 1 }).sendMany(keys.map(([key]) => [key, { stop: true }]));
    await settled(client, name, 1, sent);
    await next.close();
    assert.deepEqual(errors, []);
    await lim.close();
  }
});

test('hostile limiter options are refused at redisWorker() with coded errors, before anything starts', async () => {
  const fn = totals({ idleTimeout: 100 });
  const l = limiter({ concurrency: 1 });
  const base = { client, name: fresh('bad'), partitions: 1 };
  const made = [];
  const refused = (limiterOption, code, what, withFn = fn) =>
    assert.throws(() => made.push(redisWorker(withFn, { ...base, limiter: limiterOption })), { code }, what);
  // (A worker made where a refusal was expected is closed, so that the failure is reported, not a hang.)
  after(() => Promise.all(made.map((w) => w.close())));
  refused(5, 'ERR_INVALID_ARG_TYPE', 'a number');
  refused(null, 'ERR_INVALID_ARG_TYPE', 'null');
  refused(l, 'ERR_INVALID_ARG_TYPE', 'a limiter where the options object goes');
  refused([l], 'ERR_INVALID_ARG_TYPE', 'an array');
  refused({}, 'ERR_INVALID_ARG_VALUE', 'neither session nor step');
  refused({ session: l, per: 'session' }, 'ERR_INVALID_ARG_VALUE', 'an unknown option');
  refused({ session: [] }, 'ERR_INVALID_ARG_TYPE', 'an empty array');
  refused({ session: {} }, 'ERR_INVALID_ARG_TYPE', 'not a limiter');
  refused({ session: [l, 'x'] }, 'ERR_INVALID_ARG_TYPE', 'an array with something else');
  refused({ session: l, step: l }, 'ERR_INVALID_ARG_VALUE', 'one limiter for sessions and steps');
  refused({ session: [l, l] }, 'ERR_INVALID_ARG_VALUE', 'one limiter twice');
  refused({ session: limiter({ concurrency: 1, mode: 'reject' }) }, 'ERR_INVALID_ARG_VALUE', "a limiter in 'reject' mode");
  const rejecting = redisLimiter({ client, name: `${base.name}-r`, concurrency: 1, mode: 'reject' });
  refused({ session: rejecting }, 'ERR_INVALID_ARG_VALUE', "a redisLimiter in 'reject' mode");
  await rejecting.close();
  for (const maxWaiting of [0, -1, 1.5, NaN, Infinity, 1e7, '10'])
    refused({ session: l, maxWaiting }, 'ERR_OUT_OF_RANGE', `maxWaiting ${String(maxWaiting)}`);
  const piped = streamFn(async function* first(xs) {
    yield* xs;
  }).pipe(
    streamFn(async function* second(xs) {
      yield* xs;
    }),
  );
  refused({ step: l }, 'ERR_INVALID_ARG_VALUE', 'step with a pipe', piped);
  refused(
    { step: l },
    'ERR_INVALID_ARG_VALUE',
    'step with a task stage',
    task(async (x) => x),
  );
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  refused(proxy, 'ERR_INVALID_ARG_TYPE', 'a revoked Proxy');
  refused(
    {
      get session() {
        throw new Error('no');
      },
    },
    'ERR_INVALID_ARG_TYPE',
    'a getter that throws',
  );
  assert.throws(
    () =>
      redisWorker(fn, {
        ...base,
        get limiter() {
          throw new Error('no');
        },
      }),
    { code: 'ERR_INVALID_ARG_TYPE' },
    'an options getter that throws',
  );
  // Accepted: a limiter, arrays, both kinds, maxWaiting in range (closed at once: nothing was waited for).
  const accepted = [
    { session: l },
    { step: [l] },
    { session: [l, limiter({ rate: { limit: 5, period: 1000 } })], step: limiter({ concurrency: 2 }), maxWaiting: 1 },
  ];
  await Promise.all(accepted.map((ok) => redisWorker(fn, { ...base, name: fresh('ok'), limiter: ok }).close()));
});

test('bad limiter and version options name the entry point called: sessionWorker() on Redis, or redisWorker()', async () => {
  const fn = totals({ idleTimeout: 100 });
  const l = limiter({ concurrency: 1 });
  const base = { client, name: fresh('named'), partitions: 1 };
  const bad = [
    [{ limiter: 5 }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiter: { session: l, maxWaiting: 0 } }, 'ERR_OUT_OF_RANGE'],
    [{ limiter: { session: [l, l] } }, 'ERR_INVALID_ARG_VALUE'],
    [{ versions: {} }, 'ERR_INVALID_ARG_VALUE'],
    [{ version: 'v2', versions: 1 }, 'ERR_INVALID_ARG_TYPE'],
  ];
  const made = [];
  const misnamed = [];
  try {
    for (const [name, start] of [
      ['sessionWorker', sessionWorker],
      ['redisWorker', redisWorker],
    ]) {
      for (const [options, code] of bad) {
        const what = `${name} ${JSON.stringify(options)}`;
        let error;
        try {
          made.push(start(fn, { ...base, ...options }));
        } catch (e) {
          error = e;
        }
        assert.equal(error?.code, code, what);
        if (!error.message.startsWith(`${name}(): `)) misnamed.push(`${name}: ${error.message}`);
      }
    }
  } finally {
    // (A worker made where a refusal was expected is closed, so that the failure is reported, not a hang.)
    await Promise.all(made.map((w) => w.close()));
  }
  assert.deepEqual(misnamed, []);
});
