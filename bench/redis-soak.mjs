// A randomized soak of velo-stream/redis: worker processes
// (__test__/helpers/redis-worker-child.mjs, the `totals` handler) on a
// private redis-server, producers sending throughout, and one worker killed
// -9 and restarted every few seconds. Each session is one key's burst of
// events (gaps well under the idle timeout), closed by its idle marker, so
// markers race the kills. Input is trimmed at every lease renewal.
//
// At the end Redis is read directly: every (sid, seq) once, seqs 1..n per
// session, each session's outputs those of a crash-free run over its events,
// every event sent in exactly one output, in order per key, nothing pending
// and no high-water mark left (every session ended). With `every` (`--checkpoint N`), the workers run
// `totals` with a checkpoint every N events (the same outputs), so kills land between checkpoints, and no
// snapshot is left at the end either.
//
// With `timers` (`--timers`), the workers run the `timers` handler (timerCounts, with a checkpoint every `every`
// entries, 0: none): each session's first event asks for a wake-up `wake` ms later (well before its idle end),
// and every entry, event or wake-up, gives one output `{ n | woke, count }`. The checks (checkTimerSoak): every
// (sid, seq) once, seqs 1..n, `count` equal to `seq` in every output (each entry taken once, in the order of the
// log, also across restores from checkpoints: what a crash-free run gives), every event once in order per key,
// every timer fired once and in the session that made it, nothing pending, no snapshot and no timer record left.
//
// The seed fixes the schedule (sessions, their lengths and gaps, kill times
// and victims); process timing still varies between runs. Any failure names
// the seed: rerun with it (`npm run soak -- --redis --seed N`, or
// VELO_SOAK_SEED=N for the test).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { redisProducer } from 'velo-stream/redis';
import { start } from '../__test__/helpers/child.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { eventually, expectedTotals, pendingCount, readAllOutputs } from '../__test__/helpers/redis-fixtures.mjs';
import { prng } from './prng.mjs';

const CHILD = fileURLToPath(new URL('../__test__/helpers/redis-worker-child.mjs', import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Stream entry id "ms-seq" as a comparable pair. */
const idOf = (sid) => sid.slice(sid.lastIndexOf('@') + 1).split('-').map(BigInt);
const before = (x, y) => (x[0] === y[0] ? x[1] < y[1] : x[0] < y[0]);

/**
 * The checks at the end (see the module comment). `sent`: key -> the `n`s sent to it, in order.
 * Returns { outputs, sessions }.
 */
export async function checkSoak(client, name, partitions, sent) {
  const outputs = await readAllOutputs(client, name, partitions);
  const bySid = new Map();
  const seen = new Set();
  for (const o of outputs) {
    const id = `${o.sid}#${o.seq}`;
    assert.ok(!seen.has(id), `output ${id} written twice`);
    seen.add(id);
    assert.equal(o.error, undefined, `${id}: the handler never fails here`);
    if (!bySid.has(o.sid)) bySid.set(o.sid, []);
    bySid.get(o.sid).push(o);
  }
  const byKey = new Map();
  for (const [sid, list] of bySid) {
    assert.deepEqual(list.map((o) => o.seq), list.map((_, i) => i + 1), `${sid}: seqs from 1, in order, no gap`);
    const ns = list.map((o) => o.value.n);
    assert.deepEqual(list.map((o) => o.value), expectedTotals(ns), `${sid}: the outputs of a crash-free run over its events`);
    const key = list[0].key;
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push({ at: idOf(sid), ns });
  }
  assert.deepEqual([...byKey.keys()].sort(), [...sent.keys()].sort(), 'keys with outputs');
  for (const [key, list] of byKey) {
    list.sort((x, y) => (before(x.at, y.at) ? -1 : 1));
    assert.deepEqual(list.flatMap((s) => s.ns), sent.get(key), `${key}: every event once, in order`);
  }
  assert.equal(await pendingCount(client, name, partitions), 0, 'nothing pending');
  for (let p = 0; p < partitions; p++) {
    const left = await client.hGetAll(`velo:{${name}:p${p}}:hw`);
    assert.deepEqual(left, {}, `partition ${p}: no high-water mark left (every session ended)`);
    assert.equal(await client.exists(`velo:{${name}:p${p}}:ckpt`), 0, `partition ${p}: no snapshot left (every session ended)`);
  }
  return { outputs: outputs.length, sessions: bySid.size };
}

/**
 * The checks of a soak with timers (see the module comment). `sent`: key -> the `n`s sent to it, in order;
 * `wakes`: the `n`s of the events that asked for a wake-up.
 */
export async function checkTimerSoak(client, name, partitions, sent, wakes) {
  const outputs = await readAllOutputs(client, name, partitions);
  const bySid = new Map();
  const seen = new Set();
  const sidOf = new Map();
  const woke = new Map();
  for (const o of outputs) {
    const id = `${o.sid}#${o.seq}`;
    assert.ok(!seen.has(id), `output ${id} written twice`);
    seen.add(id);
    assert.equal(o.error, undefined, `${id}: the handler never fails here`);
    assert.equal(o.value.count, o.seq, `${id}: the session's entries taken once each, in order`);
    if (o.value.woke !== undefined) {
      assert.ok(!woke.has(o.value.woke), `the timer of event ${o.value.woke} fired twice`);
      woke.set(o.value.woke, o.sid);
    } else sidOf.set(o.value.n, o.sid);
    if (!bySid.has(o.sid)) bySid.set(o.sid, []);
    bySid.get(o.sid).push(o);
  }
  assert.deepEqual([...woke.keys()].sort((x, y) => x - y), [...wakes].sort((x, y) => x - y), 'every timer fired once');
  for (const [n, sid] of woke) assert.equal(sid, sidOf.get(n), `the timer of event ${n} woke the session that made it`);
  const byKey = new Map();
  for (const [sid, list] of bySid) {
    assert.deepEqual(list.map((o) => o.seq), list.map((_, i) => i + 1), `${sid}: seqs from 1, in order, no gap`);
    const key = list[0].key;
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push({ at: idOf(sid), ns: list.filter((o) => o.value.n !== undefined).map((o) => o.value.n) });
  }
  assert.deepEqual([...byKey.keys()].sort(), [...sent.keys()].sort(), 'keys with outputs');
  for (const [key, list] of byKey) {
    list.sort((x, y) => (before(x.at, y.at) ? -1 : 1));
    assert.deepEqual(list.flatMap((s) => s.ns), sent.get(key), `${key}: every event once, in order`);
  }
  assert.equal(await pendingCount(client, name, partitions), 0, 'nothing pending');
  for (let p = 0; p < partitions; p++) {
    assert.deepEqual(await client.hGetAll(`velo:{${name}:p${p}}:hw`), {}, `partition ${p}: no high-water mark left`);
    assert.equal(await client.exists(`velo:{${name}:p${p}}:ckpt`), 0, `partition ${p}: no snapshot left`);
    assert.equal(await client.exists(`velo:{${name}:p${p}}:timers`), 0, `partition ${p}: no timer record left`);
  }
  return { outputs: outputs.length, sessions: bySid.size, wakeups: woke.size };
}

/**
 * Runs the soak; resolves with a summary, rejects (naming the seed) if an invariant breaks.
 *
 * - `sessions` in all, at most `concurrent` live at once, each of `events` [min, max] events.
 * - Every `tick` ms a live session sends its next event with probability `chance` (and always when it has not
 *   sent for `maxGap` ms); the idle timeout (`idle`) is well above `maxGap`.
 * - Every `killEvery` [min, max] ms while producers run, a random worker is killed -9 and a new one started.
 * - `every` > 0: the handler checkpoints every `every` events (same outputs).
 * - `timers`: the `timers` handler; each session's first event asks for a wake-up `wake` [min, max] ms later.
 */
export async function redisSoak({
  seed,
  sessions = 1000,
  concurrent = 250,
  events = [2, 5],
  chance = 0.08,
  maxGap = 500,
  tick = 25,
  workers = 3,
  partitions = 16,
  ttl = 1000,
  idle = 1500,
  killEvery = [1000, 2500],
  settleTimeout = 60_000,
  every = 0,
  timers = false,
  wake = [200, 800],
  log = () => {},
} = {}) {
  assert.ok(Number.isInteger(seed), 'a seed is required');
  const random = prng(seed);
  const between = ([lo, hi]) => lo + Math.floor(random() * (hi - lo + 1));
  const redis = await startRedis();
  const children = [];
  const t0 = performance.now();
  try {
    const client = await redis.client();
    const name = 'soak';
    const producer = redisProducer({ client, name, partitions });
    const startWorker = () =>
      start([CHILD, redis.url, name, partitions, ttl, idle, 1, 1, JSON.stringify(timers ? { handler: 'timers', every } : every > 0 ? { handler: 'ckpt', every } : {})].map(String), {
        timeout: 24 * 3600_000,
      });
    const pool = Array.from({ length: workers }, startWorker);
    children.push(...pool);

    // The schedule, drawn up front from the seed.
    const plan = Array.from({ length: sessions }, (_, i) => ({ key: `s${i}`, left: between(events), last: 0 }));
    const sent = new Map();
    const wakes = [];
    let n = 0;
    let producing = true;
    let kills = 0;

    const killer = (async () => {
      for (;;) {
        await sleep(between(killEvery));
        if (!producing) return;
        const slot = Math.floor(random() * workers);
        const victim = pool[slot];
        victim.child.kill('SIGKILL');
        await victim.finished().catch((error) => assert.match(String(error), /killed by SIGKILL/));
        kills++;
        pool[slot] = startWorker();
        children.push(pool[slot]);
        log(`kill ${kills}: worker ${slot} (${((performance.now() - t0) / 1000).toFixed(1)} s, ${n} events sent)`);
      }
    })();

    let next = 0;
    const live = [];
    while (next < plan.length || live.length > 0) {
      while (live.length < concurrent && next < plan.length) live.push(plan[next++]);
      const now = performance.now();
      const batch = [];
      for (const s of live) {
        if (s.last !== 0 && random() >= chance && now - s.last < maxGap) continue;
        s.last = now;
        s.left--;
        if (!sent.has(s.key)) sent.set(s.key, []);
        sent.get(s.key).push(n);
        if (timers && sent.get(s.key).length === 1) {
          wakes.push(n);
          batch.push([s.key, { n: n++, at: Date.now(), wake: between(wake) }]);
        } else batch.push([s.key, { n: n++ }]);
      }
      for (let i = live.length - 1; i >= 0; i--) if (live[i].left === 0) live.splice(i, 1);
      if (batch.length > 0) await producer.sendMany(batch);
      await sleep(tick);
    }
    producing = false;
    await killer;
    const sentAt = performance.now();
    log(`${n} events sent over ${sessions} sessions in ${((sentAt - t0) / 1000).toFixed(1)} s, ${kills} kills; settling`);

    const outputsDue = n + wakes.length;
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= outputsDue, `${outputsDue} outputs`, settleTimeout);
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'nothing pending', settleTimeout);
    // With checkpoints a live session may have nothing pending (its checkpoint acked all it took): every session
    // has ended once no snapshot is left either.
    const snapshots = async () => {
      let n = 0;
      for (let p = 0; p < partitions; p++) n += await client.exists(`velo:{${name}:p${p}}:ckpt`);
      return n;
    };
    await eventually(async () => (await snapshots()) === 0, 'no snapshot left (every session ended)', settleTimeout);
    const stats = [];
    for (const c of pool) {
      c.child.kill('SIGTERM');
      const { stdout } = await c.finished();
      assert.doesNotMatch(stdout, /^error /m, 'a worker met no error');
      stats.push(JSON.parse(stdout.split('\n').find((l) => l.startsWith('closed ')).slice(7)));
    }
    const checked = timers ? await checkTimerSoak(client, name, partitions, sent, wakes) : await checkSoak(client, name, partitions, sent);
    return {
      seed,
      sessions,
      events: n,
      kills,
      workers,
      sessionsWritten: checked.sessions,
      // Sessions an idle close split in two (a worker slower than the gaps): allowed, counted.
      idleSplits: checked.sessions - sent.size,
      replayedSessions: stats.reduce((x, s) => x + s.replayedSessions, 0),
      checkpoints: stats.reduce((x, s) => x + s.checkpoints, 0),
      restored: stats.reduce((x, s) => x + s.restored, 0),
      ...(timers ? { timers: wakes.length, wakeupsFired: checked.wakeups, wakeupsWritten: stats.reduce((x, s) => x + s.wakeups, 0) } : {}),
      trimmed: stats.reduce((x, s) => x + s.trimmed, 0),
      sendSeconds: +((sentAt - t0) / 1000).toFixed(1),
      seconds: +((performance.now() - t0) / 1000).toFixed(1),
    };
  } catch (error) {
    if (error instanceof Error) error.message = `redis soak, seed ${seed}: ${error.message}`;
    throw error;
  } finally {
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await redis.stop();
  }
}
