// Fault scenarios with worker processes on a private redis-server: kill -9 of
// an owner mid-run, SIGSTOP of an owner past its lease then SIGCONT, graceful
// hand-off, SIGSTOP of redis-server. After each, Redis is read directly: every (sid, seq) once, per-key
// order, the outputs of a crash-free run, every session closed, nothing pending.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fnv1a, redisProducer } from 'velo-stream/redis';
import { run } from './helpers/child.mjs';
import { client, fresh, killChild, lastStats, redis, sender, stopChild as stop, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, expectedTotals, pendingCount, readAllOutputs, sessionsInLog, settled as settledOutputs } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 8;
const TTL = 1000;
// Longer than any pause in sending, takeovers included: each key is one session in every run.
const IDLE = 2500;

useRedis();

// Trimming at every lease renewal: a pending entry trimmed away would be an event lost at the next replay.
const worker = (name, delayMs = 1, idle = IDLE, trimInterval = 1) =>
  workerChild(name, { partitions: PARTITIONS, ttl: TTL, idle, delayMs, trimInterval });

const ownsAll = (child) => lastStats(child)?.owned.length === PARTITIONS;

const settled = (name, sent) => settledOutputs(client, name, PARTITIONS, sent, IDLE);

for (const moment of ['early', 'late']) {
  test(`kill -9 of the owner (${moment}): a new worker replays the live sessions; outputs once each, as without the crash`, async () => {
    const name = fresh('kill');
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    const sent = new Map();
    const send = sender(producer, 20, sent);
    const a = worker(name);
    await eventually(() => ownsAll(a), 'A owns every partition');
    await send(moment === 'early' ? 60 : 200);
    if (moment === 'late') await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length >= 150, 'A wrote outputs');
    await killChild(a);
    const b = worker(name);
    await send(100);
    await eventually(() => ownsAll(b), 'B owns every partition', 30_000);
    await settled(name, sent);
    const stats = await stop(b);
    assert.ok(stats.replayed > 0, 'B replayed the pending entries');
  });
}

test('SIGSTOP of the owner past its lease, then SIGCONT: another worker takes over, every write of the paused one is refused', async () => {
  const name = fresh('stop');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, 20, sent);
  // A slow handler: A holds buffered events and unwritten outputs when it stops.
  const a = worker(name, 20);
  await eventually(() => ownsAll(a), 'A owns every partition');
  await send(200);
  a.child.kill('SIGSTOP');
  const b = worker(name);
  await eventually(() => ownsAll(b), 'B owns every partition after A lease ran out', 30_000);
  await send(40);
  a.child.kill('SIGCONT');
  // (Its lost counter, not its owned list: B hands A its share back soon after, so A owns nothing only for a while.)
  await eventually(() => lastStats(a)?.lost === PARTITIONS, 'A noticed it lost every partition');
  await send(40);
  await settled(name, sent);
  const statsA = await stop(a);
  // A's leases ran out while it was stopped: at SIGCONT it drops its partitions by its own clock, before any call
  // with an old lease (had one gone out first, Redis would have refused it: stats().fenced). Redis refusing late
  // calls is checked in redis-partition.test.mjs; here, the invariants above show that nothing of A's got through.
  assert.equal(statsA.lost, PARTITIONS, 'A lost every partition it held');
  await stop(b);
});

test('graceful hand-off: a joining worker gets its fair share, the leaving one hands everything back on SIGTERM', async () => {
  const name = fresh('handoff');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, 20, sent);
  const a = worker(name, 2);
  await eventually(() => ownsAll(a), 'A owns every partition');
  await send(100);
  const b = worker(name, 2);
  await eventually(
    () => lastStats(a)?.owned.length === PARTITIONS / 2 && lastStats(b)?.owned.length === PARTITIONS / 2,
    'A and B own half each',
  );
  await send(100);
  const statsA = await stop(a);
  assert.equal(statsA.lost, 0, 'A lost nothing: it handed back');
  assert.equal(statsA.fenced, 0);
  assert.equal(statsA.released, PARTITIONS, 'half at the fair share, half at close()');
  await send(50);
  await eventually(() => ownsAll(b), 'B owns every partition');
  await settled(name, sent);
  const statsB = await stop(b);
  assert.equal(statsB.lost, 0);
});

test('SIGSTOP of redis-server for longer than the leases: the workers take the partitions back and lose nothing', async () => {
  const name = fresh('server');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, 20, sent);
  const a = worker(name, 2);
  const b = worker(name, 2);
  await eventually(() => lastStats(a)?.owned.length + lastStats(b)?.owned.length === PARTITIONS && lastStats(a)?.owned.length > 0, 'A and B share the partitions');
  await send(100);
  redis.pause();
  await new Promise((resolve) => setTimeout(resolve, 2 * TTL));
  redis.resume();
  await send(100);
  await eventually(() => lastStats(a)?.owned.length + lastStats(b)?.owned.length === PARTITIONS, 'every partition owned again', 30_000);
  await settled(name, sent);
  await stop(a);
  await stop(b);
});

test('close() while redis-server is paused: it resolves once the leases must have run out, reporting ERR_VELO_CLOSE_TIMEOUT, and the process exits; after the resume another worker loses nothing', async () => {
  const name = fresh('closepaused');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, 20, sent);
  const a = workerChild(name, { partitions: PARTITIONS, ttl: TTL, idle: IDLE, extra: { destroyClient: true } });
  await eventually(() => ownsAll(a), 'A owns every partition');
  await send(100);
  await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === 100, 'live sessions on A');
  redis.pause();
  try {
    a.child.kill('SIGTERM');
    // Exit code 0 and a clean stderr are checked by the child helper.
    const { stdout } = await a.finished();
    assert.match(stdout, /^error ERR_VELO_CLOSE_TIMEOUT close\(\) stopped waiting: .*partitions \[0, 1, 2, 3, 4, 5, 6, 7\] were dropped/m);
    assert.match(stdout, /^closed /m);
    // The child destroys its client once close() resolved: the calls close() stopped waiting for fail then, and
    // nothing of them reaches onError any more.
    const afterClose = stdout.slice(stdout.search(/^closed /m)).split('\n').slice(1);
    assert.deepEqual(
      afterClose.filter((line) => line.startsWith('error ')),
      [],
      'onError after close() resolved',
    );
  } finally {
    redis.resume();
  }
  const b = worker(name);
  await eventually(() => ownsAll(b), 'B owns every partition', 30_000);
  await send(40);
  await settled(name, sent);
  await stop(b);
});

test('close() with a handler parked on an await of its own: the other partitions are released at once, close() resolves at the lease deadline (ERR_VELO_CLOSE_TIMEOUT) and the process exits', async () => {
  const name = fresh('closeparked');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const a = workerChild(name, { partitions: PARTITIONS, ttl: TTL, idle: IDLE, extra: { handler: 'parked' } });
  await eventually(() => ownsAll(a), 'A owns every partition');
  await producer.sendMany([['k', { n: 1 }], ['k', { n: 2, park: true }], ['j', { n: 3 }]]);
  await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).length === 2, "k's first output and j's");
  a.child.kill('SIGTERM');
  const { stdout } = await a.finished();
  const parkedAt = fnv1a('k') % PARTITIONS;
  assert.match(stdout, new RegExp(`^error ERR_VELO_CLOSE_TIMEOUT .*partitions \\[${parkedAt}\\] were dropped`, 'm'));
  const closed = JSON.parse(stdout.split('\n').find((l) => l.startsWith('closed ')).slice(7));
  assert.equal(closed.released, PARTITIONS - 1, 'every partition but the parked one handed back');
  // The released leases are deleted; only the dropped one is left to lapse by its ttl.
  const leases = await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => client.exists(`velo:{${name}:p${p}}:lease`)));
  assert.deepEqual(leases.map((n, p) => (p === parkedAt ? 0 : n)), Array(PARTITIONS).fill(0));
});

test('without redis-server on PATH the Redis tests fail, naming the Debian package; with a VELO_REDIS_SERVER that cannot run, naming the variable', async () => {
  const helper = new URL('./helpers/redis-server.mjs', import.meta.url).href;
  // An empty directory as the whole PATH (this Node is started by its full path).
  const empty = mkdtempSync(join(tmpdir(), 'velo-nopath-'));
  try {
    const script = `const { startRedis } = await import(${JSON.stringify(helper)}); await startRedis();`;
    // Without VELO_REDIS_SERVER (npm run test:valkey sets it): redis-server from PATH.
    const { VELO_REDIS_SERVER: _, ...env } = process.env;
    await run(['--input-type=module', '-e', script], {
      env: { ...env, PATH: empty },
      code: 1,
      timeout: 20_000,
      expectStderr: /redis-server was not found on PATH: .*Install the Debian package `redis-server` \(apt-get install redis-server\)\./,
    });
    // With VELO_REDIS_SERVER naming nothing that runs: the variable is named.
    await run(['--input-type=module', '-e', script], {
      env: { ...env, PATH: empty, VELO_REDIS_SERVER: join(empty, 'valkey-server') },
      code: 1,
      timeout: 20_000,
      expectStderr: /VELO_REDIS_SERVER=\S+valkey-server cannot be run \(.*\): it must name a redis-server or valkey-server binary\./,
    });
  } finally {
    rmSync(empty, { recursive: true });
  }
});

for (const at of [0.5, 0.9]) {
  test(`idle-close markers racing a kill -9 (at ${at} of the idle time): each session's outputs are those of its events in the log`, async () => {
    const name = fresh('race');
    const idle = 300;
    // No trimming: the check reads the whole input log.
    const start = (delay) => worker(name, delay, idle, 0);
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    const sent = new Map();
    const send = sender(producer, 12, sent);
    const a = start(1);
    await eventually(() => ownsAll(a), 'A owns every partition');
    // Bursts with pauses around the idle time: sessions close (or not) while A dies.
    for (let burst = 0; burst < 3; burst++) {
      await send(36);
      await new Promise((resolve) => setTimeout(resolve, idle * (burst === 2 ? at : 1.2)));
    }
    await killChild(a);
    await send(36);
    const b = start(1);
    await eventually(() => ownsAll(b), 'B owns every partition', 30_000);
    await send(36);
    await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0 && (await sessionsInLog(client, name, PARTITIONS, idle)).size > 0, 'nothing pending', 30_000);
    await eventually(async () => [...(await sessionsInLog(client, name, PARTITIONS, idle)).values()].every((s) => s.closed), 'every session closed');
    const sessions = await sessionsInLog(client, name, PARTITIONS, idle);
    const outputs = await readAllOutputs(client, name, PARTITIONS);
    const seen = new Set();
    for (const o of outputs) {
      assert.ok(!seen.has(`${o.sid}#${o.seq}`), `${o.sid}#${o.seq} written twice`);
      seen.add(`${o.sid}#${o.seq}`);
    }
    assert.deepEqual([...new Set(outputs.map((o) => o.sid))].sort(), [...sessions.keys()].sort(), 'a session per log session');
    for (const [sid, { ns }] of sessions) {
      assert.deepEqual(
        outputs.filter((o) => o.sid === sid).map((o) => o.value),
        expectedTotals(ns),
        sid,
      );
    }
    // Every event is in exactly one session.
    const all = [...sessions.values()].flatMap((s) => s.ns).sort((x, y) => x - y);
    assert.deepEqual(all, [...sent.values()].flat().sort((x, y) => x - y));
    assert.ok(sessions.size > sent.size, 'some keys had more than one session');
    await stop(b);
  });
}
