// velo-stream/testing: a handler run as redisWorker runs it, in memory on a virtual clock (testWorker), and the
// determinism check (checkDeterminism). The example's checkout handler is the user's test as docs/redis/testing.md
// describes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
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
  assert.throws(() => worker.advance(-1), { code: 'ERR_INVALID_ARG_VALUE' });
  await worker.close();
});
