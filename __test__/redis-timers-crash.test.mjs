// Durable timers through crashes, judged against the log's time: a crash and takeover must change nothing a reader
// sees. The outputs must be what a crash-free run makes of the same input, where a session's events are its key's
// entries (at their entry ids' times) and its timers (at their due times) in time order, a session ends once
// `idleTimeout` passes after its last event with no event of its key or timer of its own, and each timer fires
// once. The caps count those events in that order: the first past `maxSessionEvents` or `maxSessionAge` ends the
// session with the cap's error (an entry opens the key's next session, a timer never fires). `expected` models that
// from the input log; every scenario runs workers as child processes and compares.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from '../index.mjs';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { anyUnread, eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

const alive = (c) => c && c.child.exitCode === null && c.child.signalCode === null;
const time = (id) => Number(id.slice(0, id.indexOf('-')));

function worker(name, idle, extra = {}) {
  return workerChild(name, {
    partitions: 1,
    ttl: 1500,
    idle,
    delayMs: 0,
    trimInterval: 0,
    extra: { handler: 'timers', every: 0, ...extra },
  });
}

/** Redis' clock, ms. */
async function redisNow() {
  const [s, us] = (await client.sendCommand(['TIME'])).map(Number);
  return s * 1000 + Math.floor(us / 1000);
}

/**
 * What a crash-free run makes of the input log (timerCounts): per key, its sessions' outputs in order, a capped
 * session's last its error's code. Events are read from the log (their entry ids' times); a timer of a wake-up
 * `[d, ...]` is due at the event's `at + d`; at the same time, a timer goes before an event.
 */
async function expected(name, idle, { maxSessionEvents = 0, maxSessionAge = 0 } = {}) {
  const entries = await client.xRange(`velo:{${name}:p0}`, '-', '+');
  const byKey = new Map();
  for (const { id, message } of entries) {
    if (message.w !== undefined || message.c !== undefined || message.k === undefined) continue;
    if (!byKey.has(message.k)) byKey.set(message.k, []);
    byKey.get(message.k).push({ time: time(id), event: JSON.parse(message.v) });
  }
  const out = {};
  for (const [key, events] of byKey) {
    const sessions = [];
    let session = null;
    let last = 0;
    let start = 0;
    let timers = [];
    let made = 0;
    // How the session ends if its next event is at `at`: by idle (null), a cap (its code), or not (undefined).
    const endAt = (at) => {
      // (A pending timer keeps the session open: no idle end before it fires.)
      const idleEnd = timers.length > 0 ? Infinity : last + idle;
      const ageEnd = maxSessionAge > 0 ? start + maxSessionAge + 1 : Infinity;
      if (at >= Math.min(idleEnd, ageEnd)) return idleEnd <= ageEnd ? null : 'ERR_VELO_SESSION_AGE';
      if (maxSessionEvents > 0 && session.length >= maxSessionEvents) return 'ERR_VELO_SESSION_EVENTS';
      return undefined;
    };
    const end = (how) => {
      if (how !== null) session.push(how);
      session = null;
      timers = [];
    };
    // A chained timer (`chain`) makes the next when it fires, that long after its own time.
    // A timer due after the session's age end is refused: none is made.
    const late = (due) => maxSessionAge > 0 && due > start + maxSessionAge;
    const chain = (n, step, from, delays) => {
      if (delays?.length > 0 && !late(from + delays[0]))
        timers.push({ id: ++made, due: from + delays[0], woke: `${n}.c${step}`, n, step, chain: delays.slice(1) });
    };
    const fireUntil = (until) => {
      for (;;) {
        timers.sort((a, b) => a.due - b.due || a.id - b.id);
        if (timers.length === 0 || timers[0].due > until || session === null) return;
        // (Decided with the timer still pending.)
        const t = timers[0];
        const how = endAt(t.due);
        if (how !== undefined) return end(how);
        timers.shift();
        session.push({ woke: t.woke, count: session.length + 1 });
        last = Math.max(last, t.due);
        chain(t.n, t.step + 1, t.due, t.chain);
      }
    };
    for (const { time: at, event: e } of events) {
      fireUntil(at);
      const how = session === null ? undefined : endAt(at);
      if (how !== undefined) end(how);
      if (session === null) {
        sessions.push((session = []));
        start = at;
      }
      session.push({ n: e.n, count: session.length + 1 });
      last = at;
      const delays = Array.isArray(e.wake) ? e.wake : e.wake === undefined ? [] : [e.wake];
      for (const [i, d] of delays.entries()) {
        if (!late(e.at + d)) timers.push({ id: ++made, due: e.at + d, woke: Array.isArray(e.wake) ? `${e.n}.${i}` : e.n });
      }
      chain(e.n, 0, e.at, e.chain);
    }
    fireUntil(Infinity);
    // Its age marker, unless its idle end comes first.
    if (session !== null && maxSessionAge > 0 && start + maxSessionAge + 1 < last + idle) end('ERR_VELO_SESSION_AGE');
    out[key] = sessions;
  }
  return out;
}

/** The outputs per key (a cap's error as its code), sessions in order of their sids' ids, each (sid, seq) once and seqs 1..n. */
async function outputs(name) {
  const all = await readAllOutputs(client, name, 1);
  const seen = new Set();
  const bySid = new Map();
  for (const o of all) {
    assert.ok(!seen.has(`${o.sid}#${o.seq}`), `${o.sid}#${o.seq} written twice`);
    seen.add(`${o.sid}#${o.seq}`);
    const cap = ['ERR_VELO_SESSION_EVENTS', 'ERR_VELO_SESSION_AGE'].includes(o.error?.code);
    assert.ok(o.error === undefined || cap, `no error output but a cap's: ${JSON.stringify(o.error)}`);
    if (!bySid.has(o.sid)) bySid.set(o.sid, { key: o.key, items: [] });
    bySid.get(o.sid).items.push(o);
  }
  const out = {};
  const sids = [...bySid.keys()].sort((a, b) => time(a.slice(a.lastIndexOf('@') + 1)) - time(b.slice(b.lastIndexOf('@') + 1)));
  for (const sid of sids) {
    const { key, items } = bySid.get(sid);
    items.sort((a, b) => a.seq - b.seq);
    assert.deepEqual(
      items.map((o) => o.seq),
      items.map((_, i) => i + 1),
      `${sid}: seqs without gaps`,
    );
    (out[key] ??= []).push(items.map((o) => o.value ?? o.error.code));
  }
  return out;
}

/** Waits until every session ended (nothing pending, no session's timers remembered), stops the workers cleanly. */
async function settle(name, workers) {
  await eventually(
    async () => !(await anyUnread(client, name, 1)) && (await pendingCount(client, name, 1)) === 0,
    'every entry read, every session ended',
    40_000,
  );
  await eventually(async () => (await client.exists(`velo:{${name}:p0}:timers`)) === 0, 'no timers remembered', 20_000);
  for (const c of workers) if (alive(c)) await stopChild(c);
}

async function owns(w) {
  await eventually(() => lastStats(w)?.owned.length === 1, 'the worker owns the partition', 30_000);
}

async function committed(name, n) {
  await eventually(async () => (await readAllOutputs(client, name, 1)).length >= n, `${n} outputs committed`, 20_000);
}

test('a session whose timer fired, taken over before its idle end, fires its timer due after that idle end (a pending timer keeps it open) and ends by idle after it, as a crash-free run', async () => {
  const IDLE = 2500;
  for (const crash of [false, true]) {
    const name = fresh(crash ? 'stuck' : 'stuckRef');
    const producer = redisProducer({ client, name, partitions: 1 });
    const workers = [worker(name, IDLE)];
    try {
      await owns(workers[0]);
      const at = await redisNow();
      await producer.send('K', { n: 0, at, wake: [500, 2 * IDLE] });
      // The first timer fired (its output is committed): kill -9 the owner before the session's idle end.
      await committed(name, 2);
      if (crash) {
        await killChild(workers[0]);
        workers.push(worker(name, IDLE));
        await owns(workers[1]);
      }
      await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'the session ended', 40_000);
      // A later event of the key opens a session of its own.
      await producer.send('K', { n: 1, at: await redisNow() });
      await committed(name, 4);
      await settle(name, workers);
      const got = await outputs(name);
      assert.deepEqual(got, await expected(name, IDLE));
      assert.deepEqual(got, {
        K: [
          [
            { n: 0, count: 1 },
            { woke: '0.0', count: 2 },
            { woke: '0.1', count: 3 },
          ],
          [{ n: 1, count: 1 }],
        ],
      });
    } finally {
      for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
    }
  }
});

test('timers made after the last checkpoint survive two crashes in a row (each fires once, in time order)', async () => {
  const IDLE = 3000;
  const name = fresh('twice');
  const producer = redisProducer({ client, name, partitions: 1 });
  // Checkpoints every 2 entries; the handler makes its timers 150 ms after it took the event.
  const extra = { every: 2, wakeDelay: 150 };
  const workers = [worker(name, IDLE, extra)];
  try {
    await owns(workers[0]);
    const at = await redisNow();
    await producer.send('K', { n: 0, at, wake: [1400] });
    await producer.send('K', { n: 1, at });
    await producer.send('K', { n: 2, at, wake: [1600, 2200] });
    await committed(name, 3);
    await killChild(workers[0]);
    // Sent while no one owns the partition.
    await producer.send('K', { n: 3, at, wake: [1500, 2000] });
    // The next owner is killed as soon as it owns the partition, and the one after takes over.
    workers.push(worker(name, IDLE, extra));
    await owns(workers[1]);
    await killChild(workers[1]);
    workers.push(worker(name, IDLE, extra));
    await owns(workers[2]);
    await settle(name, workers);
    const got = await outputs(name);
    assert.deepEqual(got, await expected(name, IDLE));
    const woke = got.K.flat().filter((o) => o.woke !== undefined);
    assert.deepEqual(woke.map((o) => o.woke).sort(), ['0.0', '2.0', '2.1', '3.0', '3.1'], 'each timer fired once');
  } finally {
    for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test("a key's event written during an outage after its session's idle end (timers counted) opens a new session, as in a crash-free run", async () => {
  const IDLE = 2000;
  for (const crash of [false, true]) {
    const name = fresh(crash ? 'late' : 'lateRef');
    const producer = redisProducer({ client, name, partitions: 1 });
    const workers = [worker(name, IDLE)];
    try {
      await owns(workers[0]);
      const at = await redisNow();
      await producer.send('K', { n: 0, at, wake: 1500 });
      await committed(name, 1);
      if (crash) await killChild(workers[0]);
      // After the timer's time plus idleTimeout, by Redis' clock: a crash-free run ended the session there.
      await eventually(async () => (await redisNow()) > at + 1500 + IDLE + 50, "Redis' clock passed the idle end");
      await producer.send('K', { n: 1, at: await redisNow() });
      if (crash) {
        workers.push(worker(name, IDLE));
        await owns(workers[1]);
      }
      await committed(name, 3);
      await settle(name, workers);
      const got = await outputs(name);
      assert.deepEqual(got, await expected(name, IDLE));
      assert.deepEqual(got, {
        K: [
          [
            { n: 0, count: 1 },
            { woke: 0, count: 2 },
          ],
          [{ n: 1, count: 1 }],
        ],
      });
    } finally {
      for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
    }
  }
});

test('maxSessionTimers bounds the timers a session has not fired (ERR_VELO_TOO_MANY_TIMERS at wakeAt), and a checkpoint counts its pending timers against maxCheckpointBytes', async () => {
  const name = fresh('bounds');
  const fn = streamFn(
    async function* bounded(events, ctx) {
      for await (const e of events) {
        if (e.many) {
          let made = 0;
          try {
            for (let i = 0; i < 6; i++, made++) ctx.wakeAt(e.at + 600_000 + i, { i });
          } catch (error) {
            yield { made, code: error.code, name: error.name, limit: error.limit };
          }
        } else {
          // 3 timers of 1500 bytes each (2 KB each stored), a small state: over 4096 bytes with the timers.
          for (let i = 0; i < 3; i++) ctx.wakeAt(e.at + 600_000 + i, { pad: 'p'.repeat(1500) });
          yield { made: 3 };
          ctx.checkpoint({ small: 1 });
          yield { unreachable: true };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  assert.throws(() => redisWorker(fn, { client, name, partitions: 1, maxSessionTimers: 0 }), {
    code: 'ERR_OUT_OF_RANGE',
    message: /maxSessionTimers/,
  });
  assert.throws(() => redisWorker(fn, { client, name, partitions: 1, maxSessionTimers: '5' }), {
    code: 'ERR_OUT_OF_RANGE',
    message: /maxSessionTimers/,
  });
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 1500, maxSessionTimers: 5, maxCheckpointBytes: 4096 });
  try {
    const producer = redisProducer({ client, name, partitions: 1 });
    const at = await redisNow();
    await producer.send('many', { many: true, at });
    await producer.send('big', { at });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'the outputs');
    const got = await readAllOutputs(client, name, 1);
    assert.deepEqual(
      got.filter((o) => o.key === 'many').map((o) => o.value),
      [{ made: 5, code: 'ERR_VELO_TOO_MANY_TIMERS', name: 'TooManyTimersError', limit: 5 }],
    );
    const big = got.filter((o) => o.key === 'big');
    assert.deepEqual(big[0].value, { made: 3 });
    assert.equal(big[1].error.code, 'ERR_VELO_CHECKPOINT_TOO_LARGE');
    assert.equal(await client.exists(`velo:{${name}:p0}:ckpt`), 0, 'nothing of the checkpoint written');
  } finally {
    await worker.close();
  }
});

test('two timers of one due time with a checkpoint between them firing: after kill -9, the restored session fires the second once (no divergence)', async () => {
  const IDLE = 5000;
  const name = fresh('eqdue');
  const producer = redisProducer({ client, name, partitions: 1 });
  // A checkpoint every 2 items: after the first timer's output, while the second is in the session's input, untaken.
  const workers = [worker(name, IDLE, { every: 2 })];
  try {
    await owns(workers[0]);
    const at = await redisNow();
    await producer.send('K', { n: 0, at, wake: [1000, 1000, 3000] });
    // Both timers of one due time fired and were committed; the third has not: kill -9 the owner.
    await committed(name, 3);
    await killChild(workers[0]);
    workers.push(worker(name, IDLE, { every: 2 }));
    await owns(workers[1]);
    await settle(name, workers);
    const got = await outputs(name);
    assert.deepEqual(got, await expected(name, IDLE));
    assert.deepEqual(got, {
      K: [
        [
          { n: 0, count: 1 },
          { woke: '0.0', count: 2 },
          { woke: '0.1', count: 3 },
          { woke: '0.2', count: 4 },
        ],
      ],
    });
  } finally {
    for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test('two takeovers in a row while the restored session catches up past its timers, a checkpoint every 2 items: no timer lost, one session as in a crash-free run', async () => {
  const IDLE = 2000;
  const name = fresh('split');
  const producer = redisProducer({ client, name, partitions: 1 });
  const workers = [worker(name, IDLE, { every: 2 })];
  // [ms after the start, the event's timer delays]; kills at [ms after the start], the next owner started 700 ms later.
  const events = [
    [8, [1786, 697]],
    [402, [312]],
    [912, [1479, 717]],
    [1485, []],
    [4300, []],
  ];
  const kills = [1546, 3085];
  try {
    await owns(workers[0]);
    const start = performance.now();
    const at = await redisNow();
    const until = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, start + ms - performance.now())));
    const sending = (async () => {
      for (const [i, [ms, wake]] of events.entries()) {
        await until(ms);
        await producer.send('K', { n: i, at: at + ms, wake });
      }
    })();
    for (const ms of kills) {
      await until(ms);
      await killChild(workers.at(-1));
      await until(ms + 700);
      workers.push(worker(name, IDLE, { every: 2 }));
    }
    await sending;
    await owns(workers.at(-1));
    await settle(name, workers);
    const got = await outputs(name);
    assert.deepEqual(got, await expected(name, IDLE));
    assert.equal(got.K.length, 1, 'one session');
    assert.deepEqual(
      got.K[0].map((o) => o.n ?? o.woke),
      [0, 1, '0.1', '1.0', 2, 3, '2.1', '0.0', '2.0', 4],
    );
  } finally {
    for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
  }
});

test("a timer made by a timer fires after a takeover that replays the first (kill -9 before either fired), and the key's next event joins the session as in a crash-free run", async () => {
  const IDLE = 700;
  for (const every of [0, 1]) {
    for (const crash of [false, true]) {
      const name = fresh(`chain${every}${crash ? '' : 'Ref'}`);
      const producer = redisProducer({ client, name, partitions: 1 });
      const workers = [worker(name, IDLE, { every })];
      try {
        await owns(workers[0]);
        const at = await redisNow();
        // A at +600 makes B at +900; the next event at +1450: within idleTimeout of B, not of A.
        await producer.send('K', { n: 0, at, chain: [600, 300] });
        await committed(name, 1);
        if (crash) await killChild(workers[0]);
        await eventually(async () => (await redisNow()) >= at + 1450, "Redis' clock at +1450");
        await producer.send('K', { n: 1, at: await redisNow() });
        if (crash) {
          workers.push(worker(name, IDLE, { every }));
          await owns(workers[1]);
        }
        await settle(name, workers);
        const got = await outputs(name);
        assert.deepEqual(got, await expected(name, IDLE));
        assert.deepEqual(
          got.K.map((session) => session.map((o) => o.n ?? o.woke)),
          [[0, '0.c0', '0.c1', 1]],
          `one session, every ${every}, ${crash ? 'kill -9' : 'crash-free'}`,
        );
      } finally {
        for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
      }
    }
  }
});

test("the caps count a session's timers among its events in time order, the same after a takeover as crash-free: a timer past a cap never fires, an entry past it opens the key's next session", async () => {
  const IDLE = 3000;
  const EV = 'ERR_VELO_SESSION_EVENTS';
  const AGE = 'ERR_VELO_SESSION_AGE';
  // [case, caps, handler options (and idleTimeout), events as [ms after the start, timer delays, key (K), chained
  // timer delays], K's sessions' events and caps]
  const cases = [
    ['events', { maxSessionEvents: 2 }, {}, [[0, [200, 500]]], [[0, '0.0', EV]]],
    ['age', { maxSessionAge: 350 }, {}, [[0, [200, 500]]], [[0, '0.0', AGE]]],
    // The handler makes its timers 300 ms after it took event 0: event 1 waits in its input meanwhile, and the
    // timer (due before it) goes in front of it, which puts event 1 past the cap.
    [
      'eventsSlow',
      { maxSessionEvents: 2 },
      { wakeDelay: 300 },
      [
        [0, [100]],
        [150, []],
      ],
      [[0, '0.0', EV], [1]],
    ],
    // Event 1 comes past the age while the handler has still to make its timer (due before the age).
    [
      'ageSlow',
      { maxSessionAge: 350 },
      { wakeDelay: 600 },
      [
        [0, [200]],
        [420, []],
      ],
      [
        [0, '0.0', AGE],
        [1, AGE],
      ],
    ],
    // A checkpoint every 2 items, the 5th event a timer: it never fires, and event 3 opens the next session.
    [
      'eventsCkpt',
      { maxSessionEvents: 4 },
      { every: 2, wakeDelay: 100 },
      [
        [0, [150, 300]],
        [100, []],
        [250, []],
        [400, []],
      ],
      [[0, 1, '0.0', 2, EV], [3]],
    ],
    // No event of the session past its age, the next entry past both its age and its idle end: it ends at its age
    // (the earlier), whether its age marker was written (crash-free) or not (its owner killed before it was due).
    [
      'ageThenIdle',
      { maxSessionAge: 300 },
      { idle: 1000 },
      [
        [0, []],
        [1300, []],
      ],
      [
        [0, AGE],
        [1, AGE],
      ],
    ],
    [
      'ageThenIdleOther',
      { maxSessionAge: 300 },
      { idle: 1000 },
      [
        [0, []],
        [1300, [], 'X'],
      ],
      [[0, AGE]],
    ],
    // Its idle end first: it ends by idle, also when the next owner writes its age marker late.
    ['idleThenAge', { maxSessionAge: 900 }, { idle: 400 }, [[0, []]], [[0]]],
    // Its next event past both caps, its age first (at +501): the age's error, its marker written or not.
    ['ageThenEventsTimer', { maxSessionEvents: 1, maxSessionAge: 500 }, {}, [[0, [600]]], [[0, AGE]]],
    [
      'ageThenEventsEntry',
      { maxSessionEvents: 1, maxSessionAge: 500 },
      {},
      [
        [0, []],
        [700, []],
      ],
      [
        [0, AGE],
        [1, AGE],
      ],
    ],
    // Timer 1.c0 (+180) makes 1.c1 (+300) as it fires, both before the age (+451); timer 1.0 (+509) is past it.
    [
      'chainBeforeAge',
      { maxSessionAge: 450 },
      { idle: 400 },
      [
        [0, []],
        [105, [404], undefined, [75, 120]],
      ],
      [[0, 1, '1.c0', '1.c1', AGE]],
    ],
  ];
  for (const [label, caps, { idle = IDLE, ...options }, events, want] of cases) {
    for (const crash of [false, true]) {
      const how = `${label}, ${crash ? 'kill -9' : 'crash-free'}`;
      // The outputs must always be what the model makes of the log (crash or not); the case is run again (a fresh
      // function, at most 4 times) while the log holds another case than `want` (a loaded machine wrote an event
      // late), so `want` also checks the model.
      for (let attempt = 1; ; attempt++) {
        const name = fresh(`cap${label}${crash ? '' : 'Ref'}`);
        const producer = redisProducer({ client, name, partitions: 1 });
        const extra = { ...caps, ...options };
        const workers = [worker(name, idle, extra)];
        try {
          await owns(workers[0]);
          const begin = performance.now();
          const at = await redisNow();
          const until = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, begin + ms - performance.now())));
          // kill -9 once its first output is committed (the events go on being sent on schedule meanwhile): the
          // next owner replays the rest as a backlog, past every timer's time and the session's age.
          let killing;
          for (const [i, [ms, wake, key = 'K', chain]] of events.entries()) {
            await until(ms);
            await producer.send(key, { n: i, at: at + ms, wake, chain });
            if (crash && i === 0) killing = committed(name, 1).then(() => killChild(workers[0]));
          }
          await killing;
          if (crash) {
            await eventually(async () => (await redisNow()) > at + 900, "Redis' clock past every timer and the age");
            workers.push(worker(name, idle, extra));
            await owns(workers[1]);
          }
          await settle(name, workers);
          const got = await outputs(name);
          const model = await expected(name, idle, caps);
          assert.deepEqual(got, model, how);
          const short = (sessions) => sessions.map((session) => session.map((o) => (typeof o === 'string' ? o : (o.n ?? o.woke))));
          if (isDeepStrictEqual(short(model.K), want)) break;
          // The log holds another case than `want` (an event written late): run it again.
          assert.ok(attempt < 4, `${how}: the log made ${JSON.stringify(short(model.K))} in each of ${attempt} attempts, not the case's ${JSON.stringify(want)}`);
        } finally {
          for (const c of workers) if (alive(c)) c.child.kill('SIGKILL');
        }
      }
    }
  }
});
