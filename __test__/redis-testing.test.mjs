// velo-stream/testing: a handler run as redisWorker runs it, in memory on a virtual clock (testWorker), and the
// determinism check (checkDeterminism). The example's checkout handler is the user's test as docs/redis/testing.md
// describes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
import { simBounds } from '#testing';
import { EXPECTED, checkoutFn, shoppers } from '../examples/checkout-timeout.mjs';

const byUser = (worker) => {
  const out = {};
  for (const s of worker.sessions()) out[s.key] = [...(out[s.key] ?? []), ...s.outputs.map((o) => o.value)];
  return out;
};

test('the checkout example: the timeout fires for the cart left unpaid, crash-free and with a crash at every step', async () => {
  for (let crashAt = -1; crashAt < 6; crashAt++) {
    const worker = testWorker(checkoutFn(300), { leaseTtl: 1000 });
    const at = worker.now();
    for (const [step, [user, event]] of shoppers(at).entries()) {
      worker.send(user, event);
      await worker.advance(10);
      if (step === crashAt) worker.crash();
    }
    await worker.settle();
    assert.deepEqual(byUser(worker), EXPECTED, `crash after step ${crashAt}`);
    assert.deepEqual(
      worker.errors().filter((e) => e?.code !== 'ERR_VELO_FENCED'),
      [],
    );
    await worker.close();
  }
});

test('the checkout example passes the determinism check', async () => {
  const start = Date.UTC(2024, 0, 1);
  const events = shoppers(start).map(([key, event], i) => ({ key, event, at: start + i }));
  const report = await checkDeterminism(checkoutFn(300), events);
  assert.equal(report.ok, true, report.message);
  assert.ok(report.crashes >= 3, `${report.crashes} crash points`);
});

test('time moves only by advance(): nothing runs between calls, and advance(ms) moves the clock by ms', async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 1000 },
  );
  const worker = testWorker(echo);
  const t0 = worker.now();
  assert.equal(t0, Date.UTC(2024, 0, 1));
  const id = worker.send('k', { n: 1 });
  assert.equal(id, `${t0}-0`, 'the entry id is the virtual time');
  assert.deepEqual(worker.outputs(), [], 'nothing ran yet');
  await worker.advance(5);
  assert.equal(worker.now(), t0 + 5);
  assert.deepEqual(
    worker.outputs().map((o) => [o.sid, o.seq, o.value]),
    [[`k@${id}`, 1, { n: 1 }]],
  );
  await worker.advance(2000);
  worker.send('k', { n: 2 });
  await worker.settle();
  assert.deepEqual(
    worker.sessions().map((s) => s.outputs.length),
    [1, 1],
    'two sessions: the second event came after the idle end',
  );
  await worker.close();
});

test('checkDeterminism fails a handler that reads the clock or Math.random, not one that checkpoints before yielding or throwing', async () => {
  const start = Date.UTC(2024, 0, 1);
  const events = [1, 2, 3].map((n) => ({ key: 'ada', event: { n }, at: start + n }));
  const handler = (make) =>
    streamFn(
      async function* (events, ctx) {
        let total = ctx.restored ?? 0;
        for await (const e of events) {
          total += e.n;
          yield { total, extra: make() };
          ctx.checkpoint(total);
        }
      },
      { idleTimeout: 1000 },
    );
  assert.equal(
    (
      await checkDeterminism(
        handler(() => 0),
        events,
      )
    ).ok,
    true,
  );

  const clock = await checkDeterminism(
    handler(() => Date.now()),
    events,
  );
  assert.equal(clock.ok, false);
  assert.equal(clock.divergence.key, 'ada');
  assert.equal(clock.divergence.firstEvent, 0);
  assert.match(clock.message, /Date\.now\(\) .*redis-testing\.test\.mjs/);

  const random = await checkDeterminism(
    handler(() => Math.random()),
    events,
  );
  assert.equal(random.ok, false);
  assert.match(random.message, /Math\.random\(\)/);
  assert.equal(typeof Date.now(), 'number');
  assert.ok(Math.abs(Date.now() - new Date().getTime()) < 1000, 'Date.now is the machine clock again after the check');

  // A checkpoint stands for the end of the handler's step (it is committed when the handler takes its next event):
  // what the step does after the call, outputs or a throw, a restore does not skip.
  const early = streamFn(
    async function* (events, ctx) {
      let total = ctx.restored ?? 0;
      for await (const e of events) {
        total += e.n;
        ctx.checkpoint(total);
        yield { total };
        if (total === 6) throw Object.assign(new Error('six'), { code: 'ERR_SIX' });
      }
    },
    { idleTimeout: 1000 },
  );
  const report = await checkDeterminism(early, events);
  assert.equal(report.ok, true, report.message);
});

test("a cap's error reads the same after a crash: checkDeterminism passes an echo handler capped by maxSessionAge", async () => {
  const start = Date.UTC(2024, 0, 1);
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 1000 },
  );
  const events = [0, 500, 1000].map((ms) => ({ key: 'k', event: { ms }, at: start + ms }));
  const report = await checkDeterminism(echo, events, { maxSessionAge: 1200 });
  assert.equal(report.ok, true, report.message);
  assert.ok(report.crashes >= 2, `${report.crashes} crash points`);

  // Crash-free and with the owner killed after its first commit: the same failure, word for word.
  const messages = async (crash) => {
    const worker = testWorker(echo, { maxSessionAge: 1200, leaseTtl: 1000 });
    for (const e of events) {
      worker.send(e.key, e.event);
      await worker.advance(500);
      if (crash && e.event.ms === 0) worker.crash();
    }
    await worker.settle();
    const failures = worker.outputs().filter((o) => o.error !== undefined);
    await worker.close();
    return failures.map((o) => [o.sid, o.error.code, o.error.message]);
  };
  const calm = await messages(false);
  assert.equal(calm.length, 1);
  assert.deepEqual(calm[0].slice(0, 2), [`k@${start}-0`, 'ERR_VELO_SESSION_AGE']);
  assert.match(calm[0][2], new RegExp(`began at ${start} and ended at ${start + 1201},`));
  assert.deepEqual(await messages(true), calm);
});

test('bad arguments get coded errors', async () => {
  assert.throws(() => testWorker(async function* () {}), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(checkDeterminism({}, []), { code: 'ERR_INVALID_ARG_TYPE' });
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  await assert.rejects(checkDeterminism(fn, 'events'), { code: 'ERR_INVALID_ARG_TYPE' });
  const worker = testWorker(fn);
  assert.throws(() => worker.send('', 1), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => worker.send(7, 1), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => testWorker(fn, { maxEventBytes: 10 }).send('k', 'x'.repeat(20)), { code: 'ERR_VELO_EVENT_TOO_LARGE' });
  await assert.rejects(worker.advance(-1), { code: 'ERR_OUT_OF_RANGE' });
  await worker.close();
});

test('testWorker and checkDeterminism check their options as redisWorker does (the same codes), and start', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const refused = [
    [{ leaseTtl: -1 }, 'ERR_OUT_OF_RANGE', /"leaseTtl" option must be an integer from 300/],
    [{ leaseTtl: 0 }, 'ERR_OUT_OF_RANGE', /"leaseTtl"/],
    [{ readCount: 0 }, 'ERR_OUT_OF_RANGE', /"readCount"/],
    [{ partitions: 0 }, 'ERR_OUT_OF_RANGE', /"partitions"/],
    [{ partitions: NaN }, 'ERR_OUT_OF_RANGE', /"partitions"/],
    [{ maxSessionEvents: -1 }, 'ERR_OUT_OF_RANGE', /"maxSessionEvents"/],
    [{ maxBufferedEvents: 0 }, 'ERR_OUT_OF_RANGE', /"maxBufferedEvents"/],
    [{ maxSessionAge: 1.5 }, 'ERR_OUT_OF_RANGE', /"maxSessionAge"/],
    [{ maxSessionTimers: 0 }, 'ERR_OUT_OF_RANGE', /"maxSessionTimers"/],
    [{ maxCheckpointBytes: 0 }, 'ERR_OUT_OF_RANGE', /"maxCheckpointBytes"/],
    [{ maxEventBytes: 0 }, 'ERR_OUT_OF_RANGE', /"maxEventBytes"/],
    [{ checkReplay: 1 }, 'ERR_INVALID_ARG_TYPE', /checkReplay must be a boolean/],
    [{ codec: {} }, 'ERR_INVALID_ARG_TYPE', /codec must have encode\(\) and decode\(\)/],
    [{ start: NaN }, 'ERR_OUT_OF_RANGE', /"start" option must be an integer/],
    [{ start: 'x' }, 'ERR_OUT_OF_RANGE', /"start"/],
    [{ start: 0.5 }, 'ERR_OUT_OF_RANGE', /"start"/],
    // (Time 0: no Redis entry id has it, and a session's idle end would never come.)
    [{ start: 0 }, 'ERR_OUT_OF_RANGE', /"start".*from 1/],
    [
      { maxSessionEvent: 1 },
      'ERR_INVALID_ARG_VALUE',
      /unknown option "maxSessionEvent"\. Known options: partitions, codec, maxEventBytes, leaseTtl, .*maxSessionEvents.*, start(, settleWithin|, version, versions, migrate, onError)?$/,
    ],
    [null, 'ERR_INVALID_ARG_TYPE', /options must be an object/],
  ];
  for (const [options, code, message] of refused) {
    assert.throws(() => testWorker(fn, options), { code, message }, JSON.stringify(options));
    await assert.rejects(checkDeterminism(fn, [], options), { code, message }, JSON.stringify(options));
  }
  // Each in range is taken.
  const worker = testWorker(fn, { partitions: 2, leaseTtl: 300, readCount: 1, maxBufferedEvents: 2, start: 1 });
  assert.equal(worker.now(), 1);
  await worker.close();
});

test('advance() takes an integer span up to a day and settle() up to the longest timer, one move at a time; a closed test worker refuses every call but a read', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 100 },
  );
  const worker = testWorker(fn);
  const start = worker.now();
  for (const ms of [0.5, -1, NaN, '5', 86_400_001, 1e15]) {
    await assert.rejects(
      worker.advance(ms),
      { code: 'ERR_OUT_OF_RANGE', message: /^advance\(\): the ms must be an integer from 0 to 86400000/ },
      String(ms),
    );
  }
  for (const ms of [0.5, -1, NaN, '5', 2 ** 31, 1e15]) {
    await assert.rejects(
      worker.settle(ms),
      { code: 'ERR_OUT_OF_RANGE', message: /^settle\(\): the within must be an integer from 0 to 2147483647/ },
      String(ms),
    );
  }
  assert.equal(worker.now(), start);
  await worker.advance(86_400_000);
  assert.equal(worker.now(), start + 86_400_000);
  const first = worker.advance(500);
  await assert.rejects(worker.advance(500), { code: 'ERR_INVALID_STATE', message: /under way: await it/ });
  await assert.rejects(worker.settle(), { code: 'ERR_INVALID_STATE' });
  await first;
  assert.equal(worker.now(), start + 86_400_000 + 500);
  worker.send('k', 1);
  await worker.settle();
  assert.equal(worker.outputs().length, 1);
  await worker.close();
  assert.throws(() => worker.send('k', 2), { code: 'ERR_INVALID_STATE', message: /^send\(\): the test worker is closed/ });
  assert.throws(() => worker.crash(), { code: 'ERR_INVALID_STATE' });
  await assert.rejects(worker.advance(1), { code: 'ERR_INVALID_STATE' });
  await assert.rejects(worker.settle(), { code: 'ERR_INVALID_STATE' });
  assert.equal(worker.outputs().length, 1);
  await worker.close();
});

test("checkDeterminism checks each event as testWorker's send does, at an integer time from the start; events out of order are sent at their times", async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 100 },
  );
  const t0 = Date.UTC(2024, 0, 1);
  const refused = [
    [[null], 'ERR_INVALID_ARG_TYPE', /events\[0\] must be an object/],
    [[{ key: 'a', event: 1 }, 7], 'ERR_INVALID_ARG_TYPE', /events\[1\]/],
    [[{ key: '', event: 1 }], 'ERR_INVALID_ARG_VALUE', /key must not be empty/],
    [[{ key: 3, event: 1 }], 'ERR_INVALID_ARG_TYPE', /key must be a string/],
    [[{ key: 'a', event: 1, at: NaN }], 'ERR_OUT_OF_RANGE', /"events\[0\]\.at"/],
    [[{ key: 'a', event: 1, at: t0 + 0.5 }], 'ERR_OUT_OF_RANGE', /"events\[0\]\.at"/],
    [[{ key: 'a', event: 1, at: t0 - 1 }], 'ERR_OUT_OF_RANGE', /from the start/],
    [[{ key: 'a', event: 'x'.repeat(20) }], 'ERR_VELO_EVENT_TOO_LARGE', /events\[0\]/, { maxEventBytes: 10 }],
  ];
  for (const [events, code, message, options] of refused) {
    await assert.rejects(checkDeterminism(fn, events, options), { code, message }, JSON.stringify(events));
  }
  // Sent at their `at`, whatever their order in the array: the same report as sorted.
  const sorted = [1, 2, 3].map((n) => ({ key: 'a', event: n, at: t0 + n }));
  assert.deepEqual(await checkDeterminism(fn, [sorted[2], sorted[0], sorted[1]]), await checkDeterminism(fn, sorted));
});

test("a handler that awaits a real timer: the determinism check's error names it (the virtual clock moves virtual time only)", async () => {
  const { setTimeout: sleep } = await import('node:timers/promises');
  // Far longer than the whole virtual run takes, so the handler is still waiting when it gives up; aborted after.
  const stop = new AbortController();
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        await sleep(600_000, undefined, { signal: stop.signal });
        yield e;
      }
    },
    { idleTimeout: 100 },
  );
  // The hint comes from process.getActiveResourcesInfo(), which reports no timer on Bun (it always gives []): there
  // the error is the same without it (docs/runtimes.md).
  const pending = setTimeout(() => {}, 1000);
  const timersReported = process.getActiveResourcesInfo().includes('Timeout');
  clearTimeout(pending);
  assert.equal(timersReported, typeof process.versions.bun !== 'string', 'the runtime reports its pending timers');
  try {
    // (A short settleWithin: the default, a day of virtual time with the session open, costs seconds of steps.)
    await assert.rejects(checkDeterminism(fn, [{ key: 'a', event: 1 }], { settleWithin: 60_000 }), {
      code: 'ERR_VELO_TEST_NOT_SETTLED',
      message: timersReported
        ? /^checkDeterminism\(\): the crash-free run did not settle within settleWithin \(60000 ms .*\. The process has real Timeout pending: a handler that awaits a real timer or I\/O/
        : /^checkDeterminism\(\): the crash-free run did not settle within settleWithin \(60000 ms [^]*settleWithin\.$/,
    });
  } finally {
    stop.abort();
  }
});

test('one checkDeterminism at a time: a second one meanwhile is refused, and Date.now and Math.random are the originals after both', async () => {
  const start = Date.UTC(2024, 0, 1);
  const events = shoppers(start).map(([key, event], i) => ({ key, event, at: start + i }));
  const realNow = Date.now;
  const realRandom = Math.random;
  const first = checkDeterminism(checkoutFn(300), events);
  await assert.rejects(checkDeterminism(checkoutFn(300), events), {
    code: 'ERR_INVALID_STATE',
    message: /another check is running/,
  });
  assert.equal((await first).ok, true);
  assert.equal(Date.now, realNow);
  assert.equal(Math.random, realRandom);
  // And a check after them runs.
  assert.equal((await checkDeterminism(checkoutFn(300), events)).ok, true);
});

test('a backlog after a takeover: a session that took exactly maxSessionEvents inputs ends by idle, as crash-free (the entry being drained was counted again as its next)', async () => {
  const counter = streamFn(
    async function* (events) {
      let n = 0;
      for await (const _ of events) n++;
      yield { taken: n };
    },
    { idleTimeout: 1000 },
  );
  const runs = [];
  for (const crash of [false, true]) {
    for (const options of [{ maxSessionEvents: 2 }, { maxSessionEvents: 2, maxSessionAge: 500 }]) {
      const w = testWorker(counter, options);
      await w.advance(0);
      if (crash) w.crash();
      w.send('k', 'a');
      await w.advance(1000);
      w.send('k', 'b');
      await w.advance(1);
      w.send('k', 'c');
      await w.settle();
      runs.push(w.sessions().map((s) => s.outputs.map((o) => o.value ?? o.error.code)));
      await w.close();
    }
  }
  const [calm, calmAge, crashed, crashedAge] = runs;
  assert.deepEqual(calm, [[{ taken: 1 }], [{ taken: 2 }]]);
  assert.deepEqual(crashed, calm);
  assert.deepEqual(crashedAge, calmAge);
});

const HOUR = 3_600_000;

test('checkDeterminism waits for long idle ends and timers hours ahead: by default a day plus idleTimeout after the last event (settleWithin)', async () => {
  // A session open 11 hours of virtual time: its timer fires 5 hours in, its idle end 6 hours after that.
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.type === 'start') ctx.wakeAt(e.at + 5 * HOUR, { type: 'late' });
        else yield e.type;
      }
    },
    { idleTimeout: 6 * HOUR },
  );
  const start = Date.UTC(2024, 0, 1);
  const events = [{ key: 'a', event: { type: 'start', at: start } }];
  const options = { leaseTtl: 60_000 };
  const report = await checkDeterminism(fn, events, options);
  assert.equal(report.ok, true, report.message);
  assert.ok(report.crashes > 0);
  // A bound shorter than the session's life: the coded error, naming the option.
  await assert.rejects(checkDeterminism(fn, events, { ...options, settleWithin: 10 * HOUR }), {
    code: 'ERR_VELO_TEST_NOT_SETTLED',
    message: /crash-free run did not settle within settleWithin \(36000000 ms/,
  });
  for (const settleWithin of [-1, 0.5, 2 ** 31, '1']) {
    await assert.rejects(checkDeterminism(fn, events, { settleWithin }), { code: 'ERR_OUT_OF_RANGE', message: /"settleWithin"/ });
  }
  // settleWithin is the check's own: testWorker does not know it.
  assert.throws(() => testWorker(fn, { settleWithin: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('checkDeterminism refuses a sparse events array, and an event more than a day after the one before it (as advance())', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 100 },
  );
  const t0 = Date.UTC(2024, 0, 1);
  const DAY = 86_400_000;
  const sparse = [, { key: 'a', event: 1 }];
  await assert.rejects(checkDeterminism(fn, sparse), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: /events\[0\] must be an object \{ key, event, at\? \}, not a hole \(the array is sparse\)/,
  });
  const holey = new Array(3);
  holey[0] = { key: 'a', event: 1 };
  await assert.rejects(checkDeterminism(fn, holey), { code: 'ERR_INVALID_ARG_TYPE', message: /events\[1\].*sparse/ });
  await assert.rejects(checkDeterminism(fn, [{ key: 'a', event: 1, at: t0 + DAY + 1 }]), {
    code: 'ERR_OUT_OF_RANGE',
    message: /events\[0\]\.at \(\d+\) is more than a day/,
  });
  // Each a day after the one before (in time, not in the array's order): taken, the last two days on.
  const apart = [2, 0, 1].map((n) => ({ key: 'a', event: n, at: t0 + n * DAY }));
  assert.deepEqual(await checkDeterminism(fn, apart), { ok: true, crashes: 6 });
  await assert.rejects(checkDeterminism(fn, [apart[0], apart[1]]), {
    code: 'ERR_OUT_OF_RANGE',
    message:
      /events\[0\]\.at \(\d+\) is more than a day \(86400000 ms\) after the event before it in time \(or the start\), at \d+/,
  });
});

test('settle() that runs out of virtual time rejects with ERR_VELO_TEST_NOT_SETTLED; a move of the clock past its bound of steps with ERR_VELO_TEST_STEPS', async () => {
  const start = Date.UTC(2024, 0, 1);
  // Work every second of virtual time for an hour: a timer a second on from each input (a quiet span would pass
  // at once, at no cost in steps).
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e === 1) yield e;
        if (ctx.entry.time < start + HOUR) ctx.wakeAt(ctx.entry.time + 1000, 'again');
      }
    },
    { idleTimeout: 1000 },
  );
  const worker = testWorker(fn);
  worker.send('k', 1);
  await assert.rejects(worker.settle(1000), {
    code: 'ERR_VELO_TEST_NOT_SETTLED',
    message: /^settle\(\): the run did not settle within 1000 ms/,
  });
  const saved = simBounds.maxSteps;
  simBounds.maxSteps = 50;
  try {
    // The session stays open an hour: each of its timers is steps (its wake-up written, read, taken).
    await assert.rejects(worker.advance(HOUR / 2), {
      code: 'ERR_VELO_TEST_STEPS',
      message: /^advance\(\): the run took 50 steps/,
    });
    await assert.rejects(worker.settle(), { code: 'ERR_VELO_TEST_STEPS', message: /^settle\(\): the run took 50 steps/ });
  } finally {
    simBounds.maxSteps = saved;
  }
  await worker.settle();
  assert.deepEqual(
    worker.outputs().map((o) => o.value),
    [1],
  );
  await worker.close();
});

test('a timer hours ahead is reached in a few steps: the quiet span before it passes at once, an open session too', async () => {
  // Before a quiet span was skipped with a session open, each lease renewal on the way (every leaseTtl / 3) was a
  // step: five hours at the default lease are 5,400 of them per process.
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.type === 'start') ctx.wakeAt(ctx.entry.time + 5 * HOUR, { type: 'late' });
        else yield e.type;
      }
    },
    { idleTimeout: 6 * HOUR },
  );
  const saved = simBounds.maxSteps;
  simBounds.maxSteps = 500;
  try {
    const worker = testWorker(fn);
    const start = worker.now();
    worker.send('a', { type: 'start' });
    await worker.advance(HOUR);
    assert.deepEqual(worker.outputs(), [], 'not yet due');
    await worker.advance(4 * HOUR);
    assert.deepEqual(
      worker.outputs().map((o) => o.value),
      ['late'],
    );
    assert.equal(worker.now(), start + 5 * HOUR);
    await worker.settle();
    assert.equal(worker.sessions().length, 1);
    await worker.close();
    const report = await checkDeterminism(fn, [{ key: 'a', event: { type: 'start' } }]);
    assert.equal(report.ok, true, report.message);
  } finally {
    simBounds.maxSteps = saved;
  }
});

test('checkDeterminism names the session that changed by its key and first event, with two partitions giving the same entry ids', async () => {
  // Keys a and b are in partitions 0 and 1: their first events, sent in the same ms, both get entry id <ms>-0.
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) yield e.key === 'b' ? Date.now() : e.n;
    },
    { idleTimeout: 100 },
  );
  const at = Date.UTC(2024, 0, 1);
  const report = await checkDeterminism(
    fn,
    [
      { key: 'b', event: { key: 'b', n: 0 }, at },
      { key: 'a', event: { key: 'a', n: 1 }, at },
    ],
    { partitions: 2 },
  );
  assert.equal(report.ok, false);
  assert.equal(report.divergence.key, 'b');
  assert.equal(report.divergence.firstEvent, 0);
});

test('testWorker: ctx.entry is the entry id and its virtual time (t<n> and the due time for a timer); a keyed timer replaces and a cancel stops it, with a crash at every step; checkDeterminism passes such a handler', async () => {
  // A reminder 500 ms after each event of a key, moved by the next event (one keyed timer), cancelled by `done`.
  const reminders = () =>
    streamFn(
      async function* (events, ctx) {
        for await (const e of events) {
          if (e.type === 'remind') yield { remind: ctx.entry };
          else if (e.type === 'done') yield { done: ctx.entry.id, cancelled: ctx.cancelTimer('r') };
          else {
            ctx.wakeAt(ctx.entry.time + 500, { type: 'remind' }, { key: 'r' });
            yield { seen: ctx.entry.id };
          }
        }
      },
      { idleTimeout: 200 },
    );
  for (let crashAt = -1; crashAt < 4; crashAt++) {
    const worker = testWorker(reminders(), { leaseTtl: 1000 });
    const ids = [];
    const steps = [
      ['a', { type: 'note' }],
      ['a', { type: 'note' }],
      ['b', { type: 'note' }],
      ['b', { type: 'done' }],
    ];
    for (const [step, [key, event]] of steps.entries()) {
      ids.push(worker.send(key, event));
      await worker.advance(100);
      if (step === crashAt) worker.crash();
    }
    await worker.settle();
    const time = (id) => Number(id.split('-')[0]);
    assert.deepEqual(
      byUser(worker),
      {
        // a's first timer (number 1) replaced by its second (2), which fires 500 ms after a's second event.
        a: [{ seen: ids[0] }, { seen: ids[1] }, { remind: { id: 't2', time: time(ids[1]) + 500 } }],
        b: [{ seen: ids[2] }, { done: ids[3], cancelled: true }],
      },
      `crash after step ${crashAt}`,
    );
    await worker.close();
  }
  const start = Date.UTC(2024, 0, 1);
  const events = ['note', 'note', 'done', 'note'].map((type, i) => ({ key: 'k', event: { type }, at: start + i * 50 }));
  const report = await checkDeterminism(reminders(), events);
  assert.equal(report.ok, true, report.message);
});
