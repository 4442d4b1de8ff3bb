// The in-process limiter (`limiter()`), by counting, never by timing: an auditor counts permits in acquire and
// release, the line's order is recorded, and the rate is checked in virtual time (node:test's mock timers drive
// the limiter's one timer and its clock, `Date.now`), where the admitted count must equal the GCRA bound exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limiter } from 'velo-stream';
import { run } from './helpers/child.mjs';
import { settle } from './helpers/util.mjs';

// Node 20 warns on stderr at the first use of mock timers (an ExperimentalWarning); this file expects that one.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  if (String(warning?.message ?? warning).includes('MockTimers')) return;
  emitWarning.call(process, warning, ...rest);
};

/** Counts permits held: fails the moment more than `max` are held at once. */
function auditor(max) {
  const a = { held: 0, peak: 0, granted: 0 };
  a.take = (permit) => {
    a.held++;
    a.granted++;
    a.peak = Math.max(a.peak, a.held);
    assert.ok(a.held <= max, `${a.held} permits held at once, limit ${max}`);
    let released = false;
    return () => {
      if (!released) a.held--;
      released = true;
      permit.release();
    };
  };
  return a;
}

test('concurrency: at no instant more than N permits are held, and every acquire is granted', async () => {
  const N = 3;
  const l = limiter({ concurrency: N, name: 'audit' });
  const audit = auditor(N);
  // 200 workers that hold their permit for a random number of turns (seeded: the same run every time).
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      const release = audit.take(await l.acquire(undefined));
      for (let turns = Math.floor(random() * 5); turns > 0; turns--) await null;
      release();
    }),
  );
  assert.equal(audit.granted, 200);
  assert.equal(audit.peak, N);
  const s = l.stats();
  assert.deepEqual([s.inUse, s.waiting, s.admitted, s.rejected], [0, 0, 200, 0]);
});

test('the line is first come, first served; release() is idempotent; tryAcquire never jumps the line', async () => {
  const l = limiter({ concurrency: 1 });
  const first = await l.acquire('a');
  const order = [];
  const waiters = Array.from({ length: 20 }, (_, i) => l.acquire(i).then((p) => (order.push(i), p)));
  assert.equal(l.tryAcquire('x'), undefined);
  assert.equal(l.stats().waiting, 20);
  first.release();
  first.release(); // a second release gives nothing back twice
  for (const w of waiters) (await w).release();
  assert.deepEqual(order, [...Array(20).keys()]);
  assert.equal(l.stats().inUse, 0);
  assert.equal(l.stats().admitted, 21);
});

test('keyed limits are independent: a full key makes no other key wait', async () => {
  const l = limiter({ concurrency: 1, key: (item) => item.tenant });
  const a = await l.acquire({ tenant: 'a' });
  const aWaits = l.acquire({ tenant: 'a' });
  const b = l.tryAcquire({ tenant: 'b' });
  assert.ok(b !== undefined, 'tenant b is not held back by tenant a');
  assert.equal(l.stats().keys, 2);
  assert.equal(l.stats().waiting, 1);
  a.release();
  (await aWaits).release();
  b.release();
  assert.equal(l.stats().keys, 0);
});

test('rate in virtual time: admitted by t equals burst + floor(t / interval) exactly, and never more than the burst at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  // 10 per second (an interval of 100 ms), burst 4.
  const l = limiter({ rate: { limit: 10, period: 1000, burst: 4 }, clock: Date.now, maxWaiting: 1000 });
  let resolved = 0;
  const all = Array.from({ length: 50 }, () => l.acquire(null).then(() => resolved++));
  assert.equal(l.stats().admitted, 4, 'the burst at once');
  for (let ms = 1; ms <= 5000; ms++) {
    t.mock.timers.tick(1);
    assert.equal(l.stats().admitted, Math.min(50, 4 + Math.floor(ms / 100)), `at ${ms} ms`);
  }
  await Promise.all(all);
  assert.equal(resolved, 50);
  // Rested for a long time: the burst again, not more.
  t.mock.timers.tick(60_000);
  let now = 0;
  while (l.tryAcquire(null) !== undefined) now++;
  assert.equal(now, 4);
  await l.close();
});

test('rate with cost: units, not calls; a cost above the burst is refused at once, not queued', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const l = limiter({ rate: { limit: 100, period: 1000, burst: 50 }, cost: (n) => n, clock: Date.now });
  await l.acquire(30);
  const waits = l.acquire(30); // 20 units left: waits 100 ms for 10 more
  await assert.rejects(l.acquire(51), { code: 'ERR_VELO_LIMIT_COST' });
  assert.equal(l.stats().rejected, 1);
  assert.equal(l.stats().waiting, 1);
  t.mock.timers.tick(99);
  assert.equal(l.stats().admitted, 1);
  t.mock.timers.tick(1);
  await waits;
  assert.equal(l.stats().admitted, 2);
  // Lowering the burst below a waiter's cost refuses it (it could never go).
  const big = l.acquire(40);
  l.setLimits({ rate: { limit: 100, period: 1000, burst: 20 } });
  await assert.rejects(big, { code: 'ERR_VELO_LIMIT_COST' });
  await l.close();
});

test('abort while waiting: the acquire rejects with the reason, leaves the line, and the next waiter moves up', async () => {
  const l = limiter({ concurrency: 1 });
  const held = await l.acquire();
  const ac = new AbortController();
  const aborted = l.acquire(undefined, { signal: ac.signal });
  const next = l.acquire();
  ac.abort(new Error('gone'));
  await assert.rejects(aborted, /gone/);
  assert.equal(l.stats().waiting, 1);
  held.release();
  (await next).release();
  assert.equal(l.stats().inUse, 0);
  // An already aborted signal never joins the line.
  await assert.rejects(l.acquire(undefined, { signal: AbortSignal.abort(new Error('before')) }), /before/);
  assert.equal(l.stats().admitted, 2);
});

test('close(): waiters and new acquires are refused with ERR_VELO_LIMITER_CLOSED; held permits still release', async () => {
  const l = limiter({ concurrency: 1, rate: { limit: 1, period: 60_000 }, name: 'closing' });
  const held = await l.acquire();
  const waiting = [l.acquire(), l.acquire()];
  await l.close();
  for (const w of waiting) await assert.rejects(w, { code: 'ERR_VELO_LIMITER_CLOSED', limiter: 'closing' });
  await assert.rejects(l.acquire(), { code: 'ERR_VELO_LIMITER_CLOSED' });
  assert.equal(l.tryAcquire(), undefined);
  held.release();
  assert.deepEqual([l.stats().inUse, l.stats().waiting], [0, 0]);
});

test('setLimits: raising the limit grants waiters at once; lowering it keeps permits held and grants nothing above it', async () => {
  const l = limiter({ concurrency: 1 });
  const p = [await l.acquire()];
  const waiting = Array.from({ length: 3 }, () => l.acquire().then((x) => p.push(x)));
  l.setLimits({ concurrency: 3 });
  await settle(1);
  assert.equal(p.length, 3);
  assert.equal(l.stats().waiting, 1);
  l.setLimits({ concurrency: 1 });
  p[0].release();
  p[1].release();
  await settle(1);
  assert.equal(l.stats().waiting, 1, 'two held of a new limit of one: nothing is granted');
  p[2].release();
  await Promise.all(waiting);
  assert.throws(() => l.setLimits({ concurrency: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => l.setLimits({}), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('setLimits: permits granted while the limiter had no concurrency limit count when one comes back (held from grant to release)', async () => {
  const rate = { limit: 1000, period: 1000 };
  const l = limiter({ concurrency: 2 });
  l.setLimits({ rate });
  const held = [await l.acquire(1), await l.acquire(2), await l.acquire(3)];
  assert.equal(l.stats().inUse, 3, 'rate-only permits are held until released');
  l.setLimits({ concurrency: 2, rate });
  let fourth;
  const waiting = l.acquire(4).then((permit) => (fourth = permit));
  assert.equal(l.tryAcquire(5), undefined, 'three held, limit two: none free');
  await settle(1);
  assert.equal(fourth, undefined, 'the 4th waits');
  assert.deepEqual([l.stats().inUse, l.stats().waiting], [3, 1]);
  held[0].release();
  await settle(1);
  assert.equal(fourth, undefined, 'two still held of a limit of two');
  held[1].release();
  await waiting;
  assert.equal(l.stats().inUse, 2);
  held[2].release();
  fourth.release();
  held[2].release(); // idempotent
  assert.equal(l.stats().inUse, 0);
  await l.close();
});

test("'reject' mode refuses the excess at once (counted); a full line refuses with ERR_VELO_LIMIT_QUEUE_FULL (counted)", async () => {
  const r = limiter({ concurrency: 1, mode: 'reject', name: 'r' });
  const held = await r.acquire();
  await assert.rejects(r.acquire(), { code: 'ERR_VELO_RATE_LIMITED', limiter: 'r' });
  assert.equal(r.stats().rejected, 1);
  assert.equal(r.tryAcquire(), undefined); // counted too: the caller goes without
  assert.equal(r.stats().rejected, 2);
  held.release();
  const q = limiter({ concurrency: 1, maxWaiting: 2 });
  const h = await q.acquire();
  const line = [q.acquire(), q.acquire()];
  await assert.rejects(q.acquire(), { code: 'ERR_VELO_LIMIT_QUEUE_FULL' });
  assert.equal(q.stats().rejected, 1);
  h.release();
  for (const w of line) (await w).release();
});

test('hostile and invalid options are refused at the call with a clear code', async () => {
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const throwing = Object.defineProperty({}, 'concurrency', {
    enumerable: true,
    get: () => {
      throw new Error('getter');
    },
  });
  const cases = [
    [undefined, 'ERR_INVALID_ARG_TYPE'],
    [revoked.proxy, 'ERR_INVALID_ARG_TYPE'],
    [throwing, 'ERR_INVALID_ARG_TYPE'],
    [{}, 'ERR_INVALID_ARG_VALUE'],
    [{ concurrency: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: NaN }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: Infinity }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: 2 ** 40 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: 1.5 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: '4' }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 0, period: 1000 } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 10, period: 0 } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 10, period: NaN } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 10, period: Infinity } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 10.5, period: 1000 } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 10, period: 1000, burst: 0 } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 10, period: 1000, extra: 1 } }, 'ERR_INVALID_ARG_VALUE'],
    [{ rate: 10 }, 'ERR_INVALID_ARG_TYPE'],
    [{ rate: revoked.proxy }, 'ERR_INVALID_ARG_TYPE'],
    [{ concurrency: 1, key: 'tenant' }, 'ERR_INVALID_ARG_TYPE'],
    [{ concurrency: 1, cost: 3 }, 'ERR_INVALID_ARG_TYPE'],
    [{ concurrency: 1, mode: 'drop' }, 'ERR_INVALID_ARG_VALUE'],
    [{ concurrency: 1, maxWaiting: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: 1, name: '' }, 'ERR_INVALID_ARG_VALUE'],
    [{ concurrency: 1, name: 'n'.repeat(201) }, 'ERR_INVALID_ARG_VALUE'],
    [{ concurrency: 1, name: 7 }, 'ERR_INVALID_ARG_TYPE'],
    [{ concurrency: 1, colour: 'red' }, 'ERR_INVALID_ARG_VALUE'],
  ];
  cases.forEach(([options, code], i) => assert.throws(() => limiter(options), { code }, `case ${i}`));
  // setLimits() the same, its errors naming it; an unreadable object is a type error there too.
  const l = limiter({ concurrency: 1 });
  for (const [settings, code, message] of [
    [undefined, 'ERR_INVALID_ARG_TYPE', /"settings" argument must be an options object.*Received type undefined/],
    [revoked.proxy, 'ERR_INVALID_ARG_TYPE', /"settings" argument must be an options object/],
    [throwing, 'ERR_INVALID_ARG_TYPE', /^setLimits\(\): the "concurrency" option could not be read/],
    [{ concurrency: 2, extra: 1 }, 'ERR_INVALID_ARG_VALUE', /^setLimits\(\): unknown option "extra"/],
    [{ rate: { limit: 1, period: 1, burst: 1, x: 1 } }, 'ERR_INVALID_ARG_VALUE', /^setLimits\(\): unknown option "rate.x"/],
  ]) {
    assert.throws(() => l.setLimits(settings), { code, message });
  }
  await l.close();
});

test('key and cost functions that throw or return unusable values refuse the acquire with a code', async () => {
  const keyed = (key) => limiter({ concurrency: 1, key });
  await assert.rejects(
    keyed(() => {
      throw new Error('boom');
    }).acquire(1),
    (e) => e.code === 'ERR_VELO_LIMIT_KEY' && e.cause.message === 'boom',
  );
  for (const bad of ['', 5, undefined, null, {}]) {
    await assert.rejects(keyed(() => bad).acquire(1), { code: 'ERR_VELO_LIMIT_KEY' });
    assert.throws(() => keyed(() => bad).tryAcquire(1), { code: 'ERR_VELO_LIMIT_KEY' });
  }
  const costed = (cost) => limiter({ rate: { limit: 10, period: 1000 }, cost });
  for (const bad of [NaN, -1, 1.5, Infinity, '3', 2 ** 33]) {
    await assert.rejects(costed(() => bad).acquire(1), { code: 'ERR_VELO_LIMIT_COST' });
  }
  await assert.rejects(
    costed(() => {
      throw new Error('c');
    }).acquire(1),
    { code: 'ERR_VELO_LIMIT_COST' },
  );
  // Above the burst (10): refused, counted, never waits.
  const l = costed(() => 11);
  await assert.rejects(l.acquire(1), { code: 'ERR_VELO_LIMIT_COST' });
  assert.deepEqual([l.stats().rejected, l.stats().waiting], [1, 0]);
  await assert.rejects(l.acquire(1, 'signal'), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('an idle limiter keeps nothing alive; a waiter on the rate keeps the process alive until its grant', async () => {
  const script = `
    import { limiter } from 'velo-stream';
    const l = limiter({ rate: { limit: 1, period: 300 }, concurrency: 2 });
    (await l.acquire()).release();
    const t0 = performance.now();
    await l.acquire(); // waits ~300 ms on the rate: the pending acquire must keep the process alive
    console.log('granted', performance.now() - t0 > 100);
    // Now idle: nothing holds the process (no timer left armed), so it exits.
  `;
  const { stdout } = await run(['--input-type=module', '-e', script], { timeout: 30_000 });
  assert.equal(stdout.trim(), 'granted true');
});

test("acquire()'s options, a clock that misbehaves, and setLimits() after close() get coded errors", async () => {
  const l = limiter({ concurrency: 1, name: 'opts' });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  for (const [options, code] of [
    ['x', 'ERR_INVALID_ARG_TYPE'],
    [null, 'ERR_INVALID_ARG_TYPE'],
    [revoked.proxy, 'ERR_INVALID_ARG_TYPE'],
    [{ signal: null }, 'ERR_INVALID_ARG_TYPE'],
    [{ signal: 'x' }, 'ERR_INVALID_ARG_TYPE'],
    [{ signal: revoked.proxy }, 'ERR_INVALID_ARG_TYPE'],
    [
      {
        get signal() {
          throw new Error('getter');
        },
      },
      'ERR_INVALID_ARG_TYPE',
    ],
    [{ sigal: new AbortController().signal }, 'ERR_INVALID_ARG_VALUE'],
  ]) {
    await assert.rejects(l.acquire(undefined, options), { code }, String(code));
  }
  assert.equal(l.stats().inUse, 0);
  await l.close();
  assert.throws(() => l.setLimits({ concurrency: 2 }), { code: 'ERR_VELO_LIMITER_CLOSED' });
  for (const clock of [
    () => {
      throw new Error('clock broke');
    },
    () => 1n,
    () => 'now',
    () => NaN,
  ]) {
    const timed = limiter({ rate: { limit: 1, period: 1000 }, clock });
    await assert.rejects(timed.acquire(undefined), { code: 'ERR_INVALID_RETURN_VALUE' });
    assert.throws(() => timed.stats(), { code: 'ERR_INVALID_RETURN_VALUE' });
  }
});
