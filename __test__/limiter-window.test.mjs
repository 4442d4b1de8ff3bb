// A task stage whose one limiter has no per-item options (`key`, `cost`, `fairness`, `priority`): the task window
// takes each call's permit as it starts the call and gives it back as it settles it, in its own native calls
// (crates/velo-node/src/limiter.rs, `TaskPermits`). The same promises as any permit, by counting: held from the grant
// to the settle whatever the limits, no jump over the limiter's line, waiters granted when the window gives back,
// the clock read as the limiter reads it. Needs --expose-gc (an abandoned stream's permits).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batch, limiter, task } from 'velo-stream';
import { collect, collectUntil, deferred, settle } from './helpers/util.mjs';

test('a permit is held from the call start to its settle: inUse counts the calls running, admitted every call', async () => {
  const l = limiter({ concurrency: 100 });
  const gates = [];
  const stage = task(
    (x) => {
      const d = deferred();
      gates.push(d);
      return d.promise.then(() => x);
    },
    { concurrency: 8, limiter: l },
  );
  const s = stage.open();
  for (let i = 0; i < 5; i++) await s.send(i);
  await settle();
  assert.equal(gates.length, 5);
  assert.equal(l.stats().inUse, 5);
  gates[0].resolve();
  gates[1].resolve();
  await settle();
  assert.equal(l.stats().inUse, 3);
  for (const g of gates) g.resolve();
  s.end();
  const out = [];
  for await (const v of s) out.push(v);
  assert.deepEqual(out, [0, 1, 2, 3, 4]);
  assert.deepEqual([l.stats().inUse, l.stats().admitted], [0, 5]);
});

test('calls do not jump the line: with a waiter of acquire() in line, a call waits behind it', async () => {
  const l = limiter({ concurrency: 1 });
  const order = [];
  const first = await l.acquire();
  const waiter = l.acquire().then((p) => {
    order.push('waiter');
    return p;
  });
  await settle();
  assert.equal(l.stats().waiting, 1);
  const stage = task(
    async (x) => {
      order.push(`call ${x}`);
      await settle(1);
      return x;
    },
    { concurrency: 4, limiter: l },
  );
  const run = stage.run([1, 2]);
  await settle();
  assert.deepEqual(order, [], 'no call started while the line waits');
  assert.equal(l.stats().waiting, 3);
  first.release();
  (await waiter).release();
  assert.deepEqual(await run, [1, 2]);
  assert.deepEqual(order, ['waiter', 'call 1', 'call 2']);
  assert.deepEqual([l.stats().inUse, l.stats().waiting, l.stats().admitted], [0, 0, 4]);
});

test("a call settling grants the limiter's waiters at once, their wait recorded on the limiter's clock", async () => {
  let now = 0;
  const l = limiter({ concurrency: 2, clock: () => now });
  const gate = deferred();
  const stage = task(async (x) => (await gate.promise) + x, { concurrency: 4, limiter: l });
  const run = stage.run([1, 2]);
  await settle();
  assert.equal(l.stats().inUse, 2);
  let granted = false;
  const waiting = l.acquire().then((p) => {
    granted = true;
    return p;
  });
  await settle();
  assert.equal(granted, false);
  now = 40;
  gate.resolve(10);
  assert.deepEqual(await run, [11, 12]);
  const permit = await waiting;
  assert.equal(granted, true);
  assert.equal(l.stats().inUse, 1);
  assert.equal(l.stats().waitedMs.p99 >= 30, true, `a wait of 40 ms on the clock, p99 ${l.stats().waitedMs.p99}`);
  permit.release();
  assert.equal(l.stats().inUse, 0);
});

test('a rate: the window reads the limiter clock, and the calls past the burst wait for it', async () => {
  const l = limiter({ rate: { limit: 100, period: 1000, burst: 2 } });
  const started = [];
  const t0 = performance.now();
  const stage = task(
    async (x) => {
      started.push(performance.now() - t0);
      return x;
    },
    { concurrency: 8, limiter: l },
  );
  assert.deepEqual(await stage.run([0, 1, 2, 3, 4]), [0, 1, 2, 3, 4]);
  assert.equal(l.stats().admitted, 5);
  assert.equal(l.stats().inUse, 0);
  // 2 at once, then one per 10 ms: the fifth no sooner than 30 ms after the first grant, itself after t0. (Measured
  // from t0, not from the first call's start: a loaded machine can start the first call late, never the fifth early.)
  assert.ok(started[4] >= 29, `the fifth started ${started[4]} ms after the run began`);
});

test('setLimits at runtime: a lower limit grants nothing until the permits held fall below it; a higher one at once', async () => {
  const l = limiter({ concurrency: 4 });
  let limit = 4;
  let running = 0;
  const gates = [];
  const stage = task(
    async (x) => {
      running++;
      assert.ok(running <= limit, `${running} calls at once, limit ${limit}`);
      const d = deferred();
      gates.push(d);
      await d.promise;
      running--;
      return x;
    },
    { concurrency: 16, limiter: l },
  );
  const s = stage.open();
  for (let i = 0; i < 10; i++) await s.send(i);
  s.end();
  await settle();
  assert.deepEqual([running, l.stats().inUse, l.stats().waiting], [4, 4, 6]);
  l.setLimits({ concurrency: 2 });
  // Two of the four held come back: still 2 held, at the new limit: nothing granted.
  gates[0].resolve();
  gates[1].resolve();
  await settle();
  limit = 2;
  assert.deepEqual([running, l.stats().inUse], [2, 2]);
  gates[2].resolve();
  await settle();
  assert.deepEqual([running, l.stats().inUse, gates.length], [2, 2, 5], 'one came back, one granted');
  limit = 10;
  l.setLimits({ concurrency: 10 });
  await settle();
  assert.deepEqual([running, l.stats().inUse, l.stats().waiting], [7, 7, 0], 'the rest granted at once');
  for (const g of gates) g.resolve();
  const out = [];
  for await (const v of s) out.push(v);
  assert.deepEqual(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([l.stats().inUse, l.stats().admitted], [0, 10]);
});

test('close(): calls holding permits give them back when they settle; later calls fail with ERR_VELO_LIMITER_CLOSED', async () => {
  const l = limiter({ concurrency: 4 });
  const gate = deferred();
  const stage = task(async (x) => (await gate.promise) + x, { concurrency: 4, limiter: l, onError: (e) => e.code });
  const s = stage.open();
  await s.send(1);
  await settle();
  assert.equal(l.stats().inUse, 1);
  await l.close();
  await s.send(2);
  gate.resolve(10);
  s.end();
  const out = [];
  for await (const v of s) out.push(v);
  assert.deepEqual(out, [11, 'ERR_VELO_LIMITER_CLOSED']);
  assert.equal(l.stats().inUse, 0);
});

test("a clock that throws fails the calls as the limiter's own acquire does (nothing is taken by the window)", async () => {
  const l = limiter({
    rate: { limit: 10, period: 1000 },
    clock: () => {
      throw new Error('no time');
    },
  });
  await assert.rejects(
    task(async (x) => x, { limiter: l }).run([1]),
    (error) => error.code === 'ERR_INVALID_RETURN_VALUE' && /clock\(\) threw/.test(error.message),
  );
});

test('errors, retries and sync results: every attempt gives its permit back', async () => {
  const l = limiter({ concurrency: 2 });
  const stage = task(
    (x, ctx) => {
      if (x === 0) return x;
      if (x === 1 && ctx.attempt === 1) throw new Error('sync');
      if (x === 2 && ctx.attempt < 3) return Promise.reject(new Error('async'));
      if (x === 3) throw new Error('for good');
      return Promise.resolve(x);
    },
    { concurrency: 4, limiter: l, retry: { attempts: 3, delay: 1 }, onError: 'skip' },
  );
  assert.deepEqual(await stage.run([0, 1, 2, 3, 4]), [0, 1, 2, 4]);
  // 0: 1 attempt; 1: 2; 2: 3; 3: 3; 4: 1.
  assert.deepEqual([l.stats().inUse, l.stats().admitted], [0, 10]);
});

test('a stage whose stream is dropped while a call never settles: collected, and its permit comes back', async () => {
  const l = limiter({ concurrency: 1 });
  // (No idle clock: a stream whose clock runs is held until it fires.)
  const stage = task(() => new Promise(() => {}), { limiter: l, idleTimeout: 0 });
  (() => {
    const s = stage.open();
    void s.send(1);
  })();
  await settle();
  assert.equal(l.stats().inUse, 1);
  await collectUntil(() => l.stats().inUse === 0, 'the dropped stream gives its permit back');
  // The limiter goes on: a permit now.
  const p = l.tryAcquire();
  assert.notEqual(p, undefined);
  p.release();
});

for (const [what, options] of [
  ['a limiter() the window takes permits from', {}],
  ['a keyed limiter()', { key: () => 'k' }],
  ['two limiters', { two: true }],
  ['a batch() stage', { batch: true }],
]) {
  test(`dropped stages whose calls never settle, ${what}: every permit comes back, those granted from the line and to retries too`, async () => {
    const l = limiter({ concurrency: 2, ...(options.key === undefined ? {} : { key: options.key }) });
    const other = limiter({ concurrency: 10 });
    const limited = options.two ? [l, other] : l;
    const started = [];
    // A call for 'retry' fails its first attempt; every attempt after, and every other call, never settles (a promise
    // of its own: one kept here would keep its reactions, and so the streams, alive).
    const call = (x, ctx) => {
      started.push(`${x}#${ctx.attempt}`);
      if (x === 'retry' && ctx.attempt === 1) throw new Error('first attempt');
      return new Promise(() => {});
    };
    const settings = { limiter: limited, idleTimeout: 0, retry: { attempts: 2, delay: 1 } };
    const stage = options.batch ? batch(([x], ctx) => call(x, ctx), { ...settings, maxSize: 1 }) : task(call, settings);
    (() => {
      // Two calls hold the two permits; three more wait in the line (one of them retries once granted).
      for (const x of ['a', 'b', 'c', 'retry', 'e']) void stage.open().send(x);
    })();
    await settle();
    await collectUntil(
      () => started.length === 6 && l.stats().inUse === 0,
      'every call started, and every permit back once its stream was collected',
    );
    assert.deepEqual(started.toSorted(), ['a#1', 'b#1', 'c#1', 'e#1', 'retry#1', 'retry#2']);
    assert.equal(l.stats().waiting, 0);
    assert.equal(other.stats().inUse, 0);
    const free = [l.tryAcquire(), l.tryAcquire(), l.tryAcquire()];
    assert.equal(free.filter((p) => p !== undefined).length, 2);
    for (const p of free) p?.release();
  });
}

test("a call waiting in the line when a dropped stage's permits come back by collection is granted, and starts", async () => {
  for (const rate of [undefined, { limit: 1000, period: 1000 }]) {
    const l = limiter({ concurrency: 2, ...(rate === undefined ? {} : { rate }) });
    const started = [];
    // (No idle clock: a stream whose clock runs is held until it fires.)
    const stage = task(
      (x) => {
        started.push(x);
        return x === 'kept' ? x : new Promise(() => {});
      },
      { limiter: l, idleTimeout: 0 },
    );
    (() => {
      for (const x of ['a', 'b']) void stage.open().send(x);
    })();
    await settle();
    const kept = stage.open();
    await kept.send('kept');
    await settle();
    assert.deepEqual([started, l.stats().waiting], [['a', 'b'], 1]);
    // The dropped streams' permits come back when they are collected: the kept stream's call is granted one, starts
    // and settles, and gives it back.
    await collectUntil(() => started.length === 3, 'the waiting call starts');
    kept.end();
    assert.deepEqual(await collect(kept), ['kept']);
    await collectUntil(() => l.stats().inUse === 0, 'every permit back');
    assert.equal(l.stats().waiting, 0);
  }
});
