// redisWorker's `debounce`: each key's bursts collapse to one event, on the log's clock (entry ids' times), with
// what is pending kept in a durable timer of the session. Semantics on the virtual clock of velo-stream/testing
// (exact times), crash-freedom by checkDeterminism (a crash after every commit) and by kill -9 of a real worker
// process against a model of the log written here, and the refusals of bad options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batch, streamFn, task, workerFn } from 'velo-stream';
import { bufferCodec, redisProducer, redisWorker } from 'velo-stream/redis';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { Registry } from 'prom-client';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { checkOutputs, eventually, expectedTotals, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

/** Echoes each event it is given with the log time it was given at (`ctx.entry.time`, from the run's start). */
const echo = (config = { idleTimeout: 1000 }) =>
  streamFn(async function* echo(events, ctx) {
    for await (const e of events) yield { i: e.i, at: ctx.entry?.time };
  }, config);

/** Sends `{ i }` to key 'k' at each of `times` (ms from the start) on a test worker; its sessions' outputs as `i@at`. */
async function run(debounce, times, options = {}) {
  const worker = testWorker(echo(options.config), { ...(debounce === undefined ? {} : { debounce }), ...options.worker });
  const t0 = worker.now();
  let now = 0;
  for (const [i, at] of times.entries()) {
    await worker.advance(at - now);
    now = at;
    worker.send('k', { i });
  }
  await worker.settle();
  const sessions = worker
    .sessions()
    .map((s) => s.outputs.map((o) => (o.error ? `error:${o.error.code}` : `${o.value.i}@${o.value.at - t0}`)));
  await worker.close();
  return sessions;
}

const BURSTS = [0, 30, 60, 90, 120, 150, 400, 420];

test('trailing: a burst is delivered as its last event once the key has been quiet for wait, at that time', async () => {
  assert.deepEqual(await run(undefined, BURSTS), [['0@0', '1@30', '2@60', '3@90', '4@120', '5@150', '6@400', '7@420']]);
  assert.deepEqual(await run({ wait: 50 }, BURSTS), [['5@200', '7@470']]);
  // A gap of exactly wait is quiet enough: each event is its own group.
  assert.deepEqual(await run({ wait: 30 }, [0, 30, 60]), [['0@30', '1@60', '2@90']]);
});

test('trailing with maxDelay: a steady stream cannot postpone delivery past maxDelay after its group began', async () => {
  assert.deepEqual(await run({ wait: 50, maxDelay: 120 }, BURSTS), [['3@120', '5@200', '7@470']]);
  const steady = Array.from({ length: 20 }, (_, i) => i * 20); // every 20 ms, never quiet for 50
  assert.deepEqual(await run({ wait: 50 }, steady), [['19@430']]);
  assert.deepEqual(await run({ wait: 50, maxDelay: 100 }, steady), [['4@100', '9@200', '14@300', '19@400']]);
});

test('leading: the first event of a burst goes at once; the rest while within wait of the last are dropped', async () => {
  assert.deepEqual(await run({ wait: 50, edge: 'leading' }, BURSTS), [['0@0', '6@400']]);
  // maxDelay: an event maxDelay or more after the last delivered one goes even within a quiet period.
  assert.deepEqual(await run({ wait: 50, edge: 'leading', maxDelay: 100 }, BURSTS), [['0@0', '4@120', '6@400']]);
});

test('a pending event keeps its session open past idleTimeout; the idle end counts from its delivery', async () => {
  // idleTimeout 40 < wait 100: without debounce each event would be its own session.
  const config = { idleTimeout: 40 };
  assert.deepEqual(await run(undefined, [0, 60, 120], { config }), [['0@0'], ['1@60'], ['2@120']]);
  assert.deepEqual(await run({ wait: 100 }, [0, 60, 120, 400], { config }), [['2@220'], ['3@500']]);
});

test('caps: a held event is delivered when maxSessionEvents ends the input; one whose timer would pass maxSessionAge goes at once', async () => {
  // maxSessionEvents 3: events 0, 1, 2 are taken (1 replaces 0, 2 replaces 1), the 4th input ends the session:
  // the held event (2) is delivered then, its `ctx.entry` its debounce timer's (due at 70), and event 3 opens the
  // next session (delivered after its quiet period).
  const capped = await run({ wait: 50 }, [0, 10, 20, 30], { worker: { maxSessionEvents: 3 } });
  assert.deepEqual(capped, [['2@70', 'error:ERR_VELO_SESSION_EVENTS'], ['3@80']]);
  // maxSessionAge 60 (its end at 61): an event at 30 would be due at 80, past it: it goes at once; so does one at 45.
  assert.deepEqual(await run({ wait: 50 }, [0, 30], { worker: { maxSessionAge: 60 } }), [['1@30', 'error:ERR_VELO_SESSION_AGE']]);
  assert.deepEqual(await run({ wait: 50 }, [0, 30, 45], { worker: { maxSessionAge: 60 } }), [
    ['1@30', '2@45', 'error:ERR_VELO_SESSION_AGE'],
  ]);
});

test('checkDeterminism: debounced sessions (trailing, leading, with checkpoints) are the same with a crash after any commit', async () => {
  const start = Date.UTC(2024, 0, 1);
  const events = [];
  for (const [key, times] of [
    ['a', [0, 20, 40, 300, 310, 900]],
    ['b', [5, 15, 500, 520, 540, 560, 580, 600]],
  ]) {
    for (const [i, at] of times.entries()) events.push({ key, event: { i }, at: start + at });
  }
  const counting = streamFn(
    async function* (events, ctx) {
      let { n } = ctx.restored ?? { n: 0 };
      for await (const e of events) {
        n++;
        ctx.checkpoint({ n });
        yield { i: e.i, n, at: ctx.entry?.time };
      }
    },
    { idleTimeout: 1000 },
  );
  for (const debounce of [{ wait: 50 }, { wait: 50, maxDelay: 60 }, { wait: 50, edge: 'leading' }]) {
    const report = await checkDeterminism(counting, events, { debounce, leaseTtl: 3000, start });
    assert.equal(report.ok, true, `${JSON.stringify(debounce)}: ${report.message}`);
  }
  // A cap that ends a session while an event is held, restored from a checkpoint made at its last input (a wake-up
  // of the handler's own timer): the held event shows its debounce timer as `ctx.entry` whichever owner delivers it.
  const ticking = streamFn(
    async function* (inputs, ctx) {
      for await (const e of inputs) {
        if (e.tick === true) ctx.checkpoint({});
        else {
          if (e.i === 0) ctx.wakeAt(ctx.entry.time + 10, { tick: true });
          yield { i: e.i, at: ctx.entry?.time };
        }
      }
    },
    { idleTimeout: 1000 },
  );
  const capped = [0, 55].map((at, i) => ({ key: 'c', event: { i }, at: start + at }));
  const report = await checkDeterminism(ticking, capped, { debounce: { wait: 50 }, maxSessionEvents: 4, leaseTtl: 3000, start });
  assert.equal(report.ok, true, `with a cap: ${report.message}`);
});

/** The trailing rule written plainly over a key's entry times: an event goes unless the next comes within wait. */
function trailingModel(entries, wait) {
  return entries.filter((e, i) => i === entries.length - 1 || entries[i + 1].time - e.time >= wait).map((e) => e.n);
}

test('kill -9 of a debouncing worker mid-burst: the next owner delivers what the log defines, once, in order', async () => {
  const name = fresh('deb');
  const wait = 150;
  const extra = { handler: 'ckpt', every: 2, debounce: { wait } };
  const a = workerChild(name, { partitions: 2, ttl: 1500, idle: 5000, extra });
  await eventually(() => lastStats(a)?.owned.length === 2, 'A owns both partitions');
  const producer = redisProducer({ client, name, partitions: 2 });
  let n = 0;
  // 8 keys; rounds 20-60 ms apart, some keys skipped in some rounds, so groups both collapse and split.
  for (let round = 0; round < 12; round++) {
    const batchOf = [];
    for (let k = 0; k < 8; k++) if ((round + k) % 3 !== 0) batchOf.push([`key${k}`, { n: ++n }]);
    await producer.sendMany(batchOf);
    if (round === 6) await killChild(a);
    await new Promise((resolve) => setTimeout(resolve, round % 4 === 3 ? 200 : 25));
  }
  const b = workerChild(name, { partitions: 2, ttl: 1500, idle: 5000, extra });
  try {
    // The model: each key's entries as the log has them (their ids' times), debounced by the rule above.
    const byKey = new Map();
    for (let p = 0; p < 2; p++) {
      for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) {
        if (message.k === undefined || message.v === undefined || message.w !== undefined) continue;
        const list = byKey.get(message.k) ?? [];
        list.push({ n: JSON.parse(message.v).n, time: Number(id.split('-')[0]) });
        byKey.set(message.k, list);
      }
    }
    const expected = new Map([...byKey].map(([key, entries]) => [key, expectedTotals(trailingModel(entries, wait))]));
    const total = [...expected.values()].reduce((s, l) => s + l.length, 0);
    assert.ok(total < n, `debounce dropped some of the ${n} events (${total} delivered)`);
    await eventually(async () => (await readAllOutputs(client, name, 2)).length >= total, `${total} outputs`, 60_000);
    checkOutputs(await readAllOutputs(client, name, 2), expected);
    const stats = await stopChild(b);
    assert.ok(stats.debounced > 0, 'B counted the events it dropped');
  } finally {
    if (b.child.exitCode === null) b.child.kill('SIGKILL');
  }
});

test('a worker counts what debounce dropped, in stats() and Prometheus', async () => {
  const name = fresh('count');
  const worker = redisWorker(echo({ idleTimeout: 200 }), {
    client,
    name,
    partitions: 1,
    debounce: { wait: 100, edge: 'leading' },
  });
  try {
    const producer = redisProducer({ client, name, partitions: 1 });
    await producer.sendMany(Array.from({ length: 5 }, (_, i) => ['k', { i }]));
    await eventually(() => worker.stats().debounced === 4, 'four of the burst dropped', 30_000);
    const registry = new Registry();
    registerRedisWorkerMetrics(registry, [worker]);
    assert.match(await registry.metrics(), /^velo_redis_debounced_total(\{[^}]*\})? 4$/m);
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 1, 'one output');
    assert.equal((await readAllOutputs(client, name, 1))[0].value.i, 0);
  } finally {
    await worker.close();
  }
});

test('bad debounce options are refused at redisWorker() and testWorker() with coded errors', async () => {
  const fn = echo();
  const make =
    (debounce, f = fn) =>
    () =>
      redisWorker(f, { client, name: fresh('bad'), partitions: 1, debounce });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  for (const [i, [debounce, code]] of [
    [null, 'ERR_INVALID_ARG_TYPE'],
    [50, 'ERR_INVALID_ARG_TYPE'],
    [{}, 'ERR_OUT_OF_RANGE'],
    [{ wait: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ wait: NaN }, 'ERR_OUT_OF_RANGE'],
    [{ wait: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ wait: 2 ** 31 }, 'ERR_OUT_OF_RANGE'],
    [{ wait: 10n }, 'ERR_OUT_OF_RANGE'],
    [{ wait: 50, edge: 'middle' }, 'ERR_INVALID_ARG_VALUE'],
    [{ wait: 50, maxDelay: 10 }, 'ERR_OUT_OF_RANGE'],
    [{ wait: 50, wiat: 1 }, 'ERR_INVALID_ARG_VALUE'],
    [revoked.proxy, 'ERR_INVALID_ARG_TYPE'],
  ].entries()) {
    assert.throws(make(debounce), { code }, `case ${i}`);
    assert.throws(() => testWorker(fn, { debounce }), { code }, `case ${i}`);
  }
  // debounce filters one handler's input: a pipe, a task or batch stage, a workerFn take theirs otherwise.
  const stage = task(async (x) => x);
  for (const other of [
    fn.pipe(stage),
    stage,
    batch(async (xs) => xs, { maxSize: 4 }),
    workerFn(new URL('./fixtures/worker-handlers.mjs', import.meta.url), { export: 'echo', threads: 1 }),
  ]) {
    assert.throws(make({ wait: 50 }, other), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /"debounce" needs a stream function of one handler/,
    });
    assert.throws(() => testWorker(other, { debounce: { wait: 50 } }), { code: 'ERR_INVALID_ARG_VALUE' });
    await other.close?.();
  }
});

/**
 * Echoes what it is given as `<name>@<time>` (an event's `i`, or a timer's `mine`), and at its first input sets a
 * timer of its own (key 'mine') `after` ms later; also tries the reserved key, and reports what that threw.
 */
function withOwnTimer(after, reserved = []) {
  return streamFn(
    async function* (events, ctx) {
      let first = true;
      for await (const e of events) {
        yield `${e.mine ? 'mine' : e.i}@${ctx.entry.time}`;
        if (!first) continue;
        first = false;
        ctx.wakeAt(ctx.entry.time + after, { mine: true }, { key: 'mine' });
        for (const call of [
          () => ctx.wakeAt(ctx.entry.time + 1, { mine: true }, { key: 'velo.debounce' }),
          () => ctx.cancelTimer('velo.debounce'),
        ]) {
          try {
            call();
            reserved.push('accepted');
          } catch (error) {
            reserved.push(error.code);
          }
        }
      }
    },
    { idleTimeout: 1000 },
  );
}

async function sessionsOf(fn, debounce, times, { pad, ...options } = {}) {
  const worker = testWorker(fn, { debounce, ...options });
  const t0 = worker.now();
  let now = 0;
  for (const [i, at] of times.entries()) {
    await worker.advance(at - now);
    now = at;
    worker.send('k', { i, ...(pad ? { pad: 'x'.repeat(pad) } : {}) });
  }
  await worker.settle();
  const out = worker
    .sessions()
    .map((s) => s.outputs.map((o) => (o.error ? `error:${o.error.code}` : o.value.replace(/@(\d+)/, (_, t) => `@${t - t0}`))));
  await worker.close();
  return out;
}

test("the handler's own timers are not debounced: they come through, and neither hold nor end a group; the reserved key is refused", async () => {
  const reserved = [];
  assert.deepEqual(await sessionsOf(withOwnTimer(100, reserved), { wait: 100 }, [0, 210]), [['0@100', 'mine@200', '1@310']]);
  assert.deepEqual(reserved, ['ERR_INVALID_ARG_VALUE', 'ERR_INVALID_ARG_VALUE']);
  assert.deepEqual(await sessionsOf(withOwnTimer(100), { wait: 100, edge: 'leading' }, [0, 110]), [['0@0', 'mine@100', '1@110']]);
  // An own timer due while an event is held: the held event stays held and goes at its own time.
  assert.deepEqual(await sessionsOf(withOwnTimer(30), { wait: 100 }, [0, 140, 150]), [['0@100', 'mine@130', '2@250']]);
});

test('the debounce timer has a slot of its own: the handler keeps all of maxSessionTimers, and no held event is lost at the cap', async () => {
  assert.deepEqual(await sessionsOf(withOwnTimer(1000), { wait: 100 }, [0, 210, 220], { maxSessionTimers: 1 }), [
    ['0@100', '2@320', 'mine@1100'],
  ]);
});

test('an event the worker accepts always fits its debounce timer, whatever its size within maxEventBytes', async () => {
  const out = await sessionsOf(withOwnTimer(10_000), { wait: 100 }, [0], { maxEventBytes: 1024, pad: 990 });
  assert.deepEqual(out, [['0@100', 'mine@10100']]);
});

test('any codec works: the debounce timer keeps its own format (bufferCodec, trailing and leading)', async () => {
  const bytes = streamFn(
    async function* (events, ctx) {
      for await (const e of events) yield Buffer.from(`${e.toString()}@${ctx.entry.time}`);
    },
    { idleTimeout: 1000 },
  );
  for (const [debounce, expected] of [
    [{ wait: 50 }, ['b@60']],
    [{ wait: 50, edge: 'leading' }, ['a@0']],
  ]) {
    const worker = testWorker(bytes, { debounce, codec: bufferCodec });
    const t0 = worker.now();
    worker.send('k', Buffer.from('a'));
    await worker.advance(10);
    worker.send('k', Buffer.from('b'));
    await worker.settle();
    const out = worker
      .sessions()
      .map((s) =>
        s.outputs.map((o) => (o.error ? `error:${o.error.code}` : o.value.toString().replace(/@(\d+)/, (_, t) => `@${t - t0}`))),
      );
    assert.deepEqual(out, [expected], JSON.stringify(debounce));
    await worker.close();
  }
});

test('leading: an event whose quiet period would pass maxSessionAge still goes at once', async () => {
  assert.deepEqual(await run({ wait: 100, edge: 'leading' }, [0], { worker: { maxSessionAge: 50 } }), [
    ['0@0', 'error:ERR_VELO_SESSION_AGE'],
  ]);
  assert.deepEqual(await run({ wait: 100, edge: 'leading' }, [0, 120], { worker: { maxSessionAge: 150 } }), [
    ['0@0', '1@120', 'error:ERR_VELO_SESSION_AGE'],
  ]);
});

test('a handler that returns while an event is held gives it up, counted: the entries after it open the next session', async () => {
  const returning = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.mine) return;
        yield `${e.i}@${ctx.entry.time}`;
        ctx.wakeAt(ctx.entry.time + 50, { mine: true }, { key: 'mine' });
      }
    },
    { idleTimeout: 1000 },
  );
  // 0 delivered at 100, own timer due at 150 (it returns there); 1 (at 120) held then, given up; 2 (at 400) next.
  assert.deepEqual(await sessionsOf(returning, { wait: 100 }, [0, 120, 400]), [['0@100'], ['2@500']]);
});

test("a held event does not count against the handler's checkpoint: a small checkpoint beside a large held event is kept, and the event delivered", async () => {
  // The handler checkpoints a number at each input and makes a timer of its own; while that timer is pending a
  // 700,000-character event comes and is held. Its checkpoint at the timer must not count the held event (it
  // failed the session with ERR_VELO_CHECKPOINT_TOO_LARGE, and the held event was lost).
  const fn = streamFn(
    async function* (events, ctx) {
      let n = ctx.restored ?? 0;
      for await (const e of events) {
        n++;
        yield { i: e.i, size: e.s.length };
        ctx.checkpoint(n);
        if (e.i === 1) ctx.wakeAt(ctx.entry.time + 80, { i: -1, s: '' });
      }
    },
    { idleTimeout: 5000 },
  );
  for (const checkpointLimit of [undefined, 64]) {
    const w = testWorker(fn, { debounce: { wait: 100 }, ...(checkpointLimit === undefined ? {} : { maxCheckpointBytes: checkpointLimit }) });
    w.send('k', { i: 1, s: 'a' });
    await w.advance(150);
    w.send('k', { i: 2, s: 'b'.repeat(700_000) });
    await w.advance(1);
    await w.settle();
    assert.deepEqual(
      w.sessions().map((s) => s.outputs.map((o) => o.value ?? o.error.code)),
      [
        [
          { i: 1, size: 1 },
          { i: -1, size: 0 },
          { i: 2, size: 700_000 },
        ],
      ],
      `maxCheckpointBytes ${checkpointLimit}`,
    );
    await w.close();
  }
  // The same with a crash after any commit: a snapshot holding the large held event restores it.
  const start = Date.UTC(2024, 0, 1);
  const events = [
    { key: 'k', event: { i: 1, s: 'a' }, at: start },
    { key: 'k', event: { i: 2, s: 'b'.repeat(700_000) }, at: start + 150 },
  ];
  const report = await checkDeterminism(fn, events, { debounce: { wait: 100 }, maxCheckpointBytes: 64, start });
  assert.equal(report.ok, true, report.message);
});
