// A randomized soak of velo-stream/redis: worker processes (__test__/helpers/redis-worker-child.mjs running the
// scripted handler of __test__/helpers/session-script.mjs) on a private redis-server, producers sending throughout,
// and one worker killed -9 and restarted every few seconds. Each planned session is one key's burst of events (gaps
// well under the idle timeout), so ticks race the kills. Input is trimmed at every lease renewal.
//
// Every event is a reaction of the script: what the handler yields and, drawn from the seed, checkpoints (`every`:
// every N-th event of a key, and as timers fire), durable timers (`timers`: due in the past, at the event, at the idle
// end and one ms either side, at the session's age end and either side, and chained), and now and then a return or a
// throw. An event's `at` (its producer's timestamp) is now and then up to 300 ms before its entry's id. The
// caps (`caps`: maxSessionEvents, maxSessionAge, maxSessionTimers) are small enough to be hit.
//
// The oracle is the reference model (__test__/helpers/session-model.mjs) run on the log as Redis wrote it (every
// entry's id, as `sendMany` answered it, with its event): at the end Redis is read directly and the outputs must be
// exactly the model's, per session (`sid`) and in order, no more and no fewer sessions (an idle split is not
// allowed: it is either in the log's ids, and then in the model, or a divergence); every (sid, seq) once, seqs
// 1..n; nothing pending, and no high-water mark, snapshot or timer record left (every session ended).
//
// The seed fixes the schedule (sessions, their lengths and gaps, reactions, kill times and victims); process timing
// still varies between runs. Any failure names the seed: rerun with it (`npm run soak -- --redis --seed N`, or
// VELO_SOAK_SEED=N for the test).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { redisProducer } from 'velo-stream/redis';
import { start } from '../__test__/helpers/child.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { eventually, pendingCount, readAllOutputs } from '../__test__/helpers/redis-fixtures.mjs';
import { model } from '../__test__/helpers/session-model.mjs';
import { outputView, timeOf } from '../__test__/helpers/session-script.mjs';
import { prng } from './prng.mjs';

const CHILD = fileURLToPath(new URL('../__test__/helpers/redis-worker-child.mjs', import.meta.url));

/**
 * A worker's last figures (`stats()`): those it said at its close, or, for a worker killed -9, its last `stats` line
 * (it says one every 100 ms); null if it said none.
 */
function lastFigures(worker) {
  // (Complete lines only: a worker killed mid-write leaves a part of one.)
  const lines = worker.stdout.split('\n').slice(0, -1);
  const closed = lines.find((l) => l.startsWith('closed '));
  if (closed !== undefined) return JSON.parse(closed.slice(7));
  const last = lines.findLast((l) => l.startsWith('stats '));
  return last === undefined ? null : JSON.parse(last.slice(6));
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Entry ids `<ms>-<seq>` in log order. */
const byId = (x, y) => timeOf(x) - timeOf(y) || Number(x.split('-')[1]) - Number(y.split('-')[1]);
const sidOrder = (x, y) => byId(x.slice(x.lastIndexOf('@') + 1), y.slice(y.lastIndexOf('@') + 1));

/**
 * The checks at the end (see the module comment): `log` is every entry sent, `{ id, key, event }`, `limits` the
 * function's idleTimeout and the workers' caps. Returns counts of what the model says happened.
 */
export async function checkSoak(client, name, partitions, log, limits) {
  const outputs = await readAllOutputs(client, name, partitions);
  const bySid = new Map();
  const seen = new Set();
  for (const o of outputs) {
    const id = `${o.sid}#${o.seq}`;
    assert.ok(!seen.has(id), `output ${id} written twice`);
    seen.add(id);
    bySid.set(o.sid, [...(bySid.get(o.sid) ?? []), o]);
  }
  const got = new Map();
  for (const [sid, list] of bySid) {
    list.sort((x, y) => x.seq - y.seq);
    assert.deepEqual(
      list.map((o) => o.seq),
      list.map((_, i) => i + 1),
      `${sid}: seqs from 1, in order, no gap`,
    );
    const key = list[0].key;
    got.set(key, [...(got.get(key) ?? []), { sid, outputs: list.map(outputView) }]);
  }
  const ordered = [...log].sort((x, y) => byId(x.id, y.id));
  const want = model({ log: ordered, limits });
  const counts = { sessions: 0, timersFired: 0, ended: {} };
  for (const [key, sessions] of Object.entries(want)) {
    // (Every entry yields, so every session has outputs, and its sid is in Redis.)
    const expected = sessions.map((s) => ({ sid: s.sid, outputs: s.outputs }));
    const actual = (got.get(key) ?? []).sort((x, y) => sidOrder(x.sid, y.sid));
    // First in short (a session per line: its sid, then each output's input, or an error's code), then in full.
    const short = (list) =>
      list.map((s) => `${s.sid}: ${s.outputs.map((o) => (o.error !== undefined ? `!${o.error}` : o.in)).join(' ')}`);
    const context = `${key}: the sessions and outputs of the model; the key's log: ${JSON.stringify(ordered.filter((e) => e.key === key))}`;
    assert.deepEqual(short(actual), short(expected), context);
    assert.deepEqual(actual, expected, context);
    got.delete(key);
    counts.sessions += sessions.length;
    for (const s of sessions) {
      counts.timersFired += s.inputs.filter((i) => i.timer !== undefined).length;
      counts.ended[s.end.how] = (counts.ended[s.end.how] ?? 0) + 1;
    }
  }
  assert.deepEqual([...got.keys()], [], 'no outputs of keys never sent');
  assert.equal(await pendingCount(client, name, partitions), 0, 'nothing pending');
  for (let p = 0; p < partitions; p++) {
    assert.deepEqual(
      await client.hGetAll(`velo:{${name}:p${p}}:hw`),
      {},
      `partition ${p}: no high-water mark left (every session ended)`,
    );
    assert.equal(await client.exists(`velo:{${name}:p${p}}:ckpt`), 0, `partition ${p}: no snapshot left`);
    // (By sid, the timers whose wake-ups were written: named, if one is left.)
    assert.deepEqual(await client.hGetAll(`velo:{${name}:p${p}}:timers`), {}, `partition ${p}: no timer record left`);
  }
  return { outputs: outputs.length, ...counts };
}

/**
 * Runs the soak; resolves with a summary, rejects (naming the seed) if an invariant breaks. The summary's worker
 * figures (checkpoints, restored, ...) are summed over every worker process of the run, those killed included (each
 * one's last `stats` line).
 *
 * - `sessions` planned, at most `concurrent` live at once, each of `events` [min, max] events.
 * - Every `tick` ms a live session sends its next event with probability `chance` (and always when it has not
 *   sent for `maxGap` ms); the idle timeout (`idle`) is well above `maxGap`.
 * - Every `killEvery` [min, max] ms while producers run, a random worker is killed -9 and a new one started.
 * - `every` > 0: every `every`-th event of a key checkpoints.
 * - `timers`: an event makes durable timers with probability 1/2, due at the boundaries (see the module comment).
 * - `ends`: the chance that an event returns, and that one throws.
 * - `caps`: `{ maxSessionEvents?, maxSessionAge?, maxSessionTimers? }` for the workers.
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
  ends = 0.01,
  caps = {},
  log = () => {},
} = {}) {
  assert.ok(Number.isInteger(seed), 'a seed is required');
  const random = prng(seed);
  const between = ([lo, hi]) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (list) => list[Math.floor(random() * list.length)];
  const limits = { idleTimeout: idle, ...caps };
  const age = caps.maxSessionAge ?? 0;
  const redis = await startRedis();
  const children = [];
  const t0 = performance.now();
  try {
    const client = await redis.client();
    const name = 'soak';
    const producer = redisProducer({ client, name, partitions });
    const startWorker = () =>
      start([CHILD, redis.url, name, partitions, ttl, idle, 1, 1, JSON.stringify({ handler: 'script', ...caps })].map(String), {
        timeout: 24 * 3600_000,
      });
    const pool = Array.from({ length: workers }, startWorker);
    children.push(...pool);

    // A timer's offset from its input's time `at`: at the boundaries of a session whose first event was at `first`
    // (the producer's clock, a few ms before Redis' ids: near the boundaries, often on them).
    const after = (at, first) =>
      pick([
        -between([1, 300]),
        0,
        1,
        idle - 1,
        idle,
        idle + 1,
        between([200, 800]),
        ...(age > 0 ? [first + age - at, first + age + 1 - at] : []),
      ]);
    const reaction = (tag, at, first, count) => {
      const event = { tag, at };
      if (timers && random() < 0.5) {
        event.timers = Array.from({ length: pick([1, 1, 2]) }, () => {
          const offset = after(at, first);
          const timer = random() < 0.2 ? { after: offset, timers: [{ after: after(at + offset, first) }] } : { after: offset };
          // A checkpoint as a timer fires: a takeover then restores a session whose latest input was a timer.
          if (every > 0 && random() < 0.5) timer.checkpoint = true;
          return timer;
        });
      }
      if (every > 0 && count % every === 0) event.checkpoint = true;
      const end = random();
      if (end < ends) event.end = 'return';
      else if (end < 2 * ends) event.end = 'throw';
      return event;
    };

    // The schedule, drawn from the seed.
    const plan = Array.from({ length: sessions }, (_, i) => ({
      key: `s${i}`,
      left: between(events),
      last: 0,
      first: 0,
      count: 0,
    }));
    const sent = [];
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
        // An event's own time: now, or (a producer's timestamp taken earlier) up to 300 ms before its entry's.
        const at = Date.now() - (random() < 0.2 ? between([1, 300]) : 0);
        if (s.count === 0) s.first = at;
        batch.push([s.key, reaction(`e${n++}`, at, s.first, ++s.count)]);
      }
      for (let i = live.length - 1; i >= 0; i--) if (live[i].left === 0) live.splice(i, 1);
      if (batch.length > 0) {
        const ids = await producer.sendMany(batch);
        for (const [i, [key, event]] of batch.entries()) sent.push({ id: ids[i], key, event });
      }
      await sleep(tick);
    }
    producing = false;
    await killer;
    const sentAt = performance.now();
    log(`${n} events sent over ${sessions} planned sessions in ${((sentAt - t0) / 1000).toFixed(1)} s, ${kills} kills; settling`);

    // Settled once the model's outputs are all written (fewer after a divergence: the comparison then names it).
    const due = Object.values(model({ log: [...sent].sort((x, y) => byId(x.id, y.id)), limits }))
      .flat()
      .reduce((sum, s) => sum + s.outputs.length, 0);
    try {
      await eventually(
        async () => (await readAllOutputs(client, name, partitions)).length >= due,
        `${due} outputs`,
        settleTimeout,
      );
    } catch (timeout) {
      await checkSoak(client, name, partitions, sent, limits);
      throw timeout;
    }
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'nothing pending', settleTimeout);
    // With checkpoints a live session may have nothing pending (its checkpoint acked all it took): every session
    // has ended once no snapshot and no high-water mark is left either.
    const left = async () => {
      let n = 0;
      for (let p = 0; p < partitions; p++) n += await client.exists([`velo:{${name}:p${p}}:ckpt`, `velo:{${name}:p${p}}:hw`]);
      return n;
    };
    await eventually(
      async () => (await left()) === 0,
      'no snapshot or high-water mark left (every session ended)',
      settleTimeout,
    );
    for (const c of pool) {
      // (A worker restarted by the last kill may still be starting: until it is ready, a SIGTERM ends it unhandled.)
      await c.waitFor(/^ready /m);
      c.child.kill('SIGTERM');
      const { stdout } = await c.finished();
      const errors = stdout.split('\n').filter((line) => line.startsWith('error '));
      assert.deepEqual(errors, [], 'a worker met no error');
      assert.ok(
        stdout.split('\n').some((l) => l.startsWith('closed ')),
        'a worker closed and said its figures',
      );
    }
    // What every worker did, those killed included: a session restored by a worker killed later counts.
    const stats = children.map(lastFigures).filter((figures) => figures !== null);
    const checked = await checkSoak(client, name, partitions, sent, limits);
    return {
      seed,
      sessions: checked.sessions,
      events: n,
      kills,
      workers,
      outputs: checked.outputs,
      ended: checked.ended,
      timersFired: checked.timersFired,
      replayedSessions: stats.reduce((x, s) => x + s.replayedSessions, 0),
      checkpoints: stats.reduce((x, s) => x + s.checkpoints, 0),
      restored: stats.reduce((x, s) => x + s.restored, 0),
      wakeupsWritten: stats.reduce((x, s) => x + s.wakeups, 0),
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
