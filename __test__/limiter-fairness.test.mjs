// The limiter's fairness across tenants (`limiter({ fairness: { by, weight } })`), by counting grants, never by
// timing: one concurrency slot, released one grant at a time, and the order of grants recorded. The rule (and its
// bound) is the core's (crates/velo-core/src/limiter/line.rs); these check that the JavaScript side feeds it the
// tenant and weight of each acquire and refuses bad ones with ERR_VELO_LIMIT_TENANT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limiter } from 'velo-stream';
import { redisLimiter } from 'velo-stream/redis';
import { settle } from './helpers/util.mjs';
import { grantOrder } from './helpers/limiter-grants.mjs';
import { fairnessRun } from '../bench/limiter-fairness.mjs';

/** The tenants granted, in order, when `plan` (tenant names, in arrival order) all wait for one slot. */
const tenantOrder = (l, plan) =>
  grantOrder(
    l,
    plan.map((tenant) => ({ tenant })),
    { tenant: 'first' },
    (item) => item.tenant,
  );

/** The hot tenant queues 100 waiters per waiter of each of 4 others, three times over. */
function hotPlan() {
  const plan = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 100; i++) plan.push('hot');
    for (const t of ['a', 'b', 'c', 'd']) plan.push(t);
  }
  return plan;
}

/** For each other tenant's waiter: its position in its tenant's line, and how many grants came before its own. */
function othersGrants(order) {
  const seen = new Map();
  const out = [];
  order.forEach((tenant, i) => {
    if (tenant === 'hot') return;
    const p = (seen.get(tenant) ?? 0) + 1;
    seen.set(tenant, p);
    out.push({ tenant, p, grant: i + 1 });
  });
  return out;
}

test('fairness: behind a hot tenant with 100x the waiters, the others are granted within T * p grants', async () => {
  const fair = limiter({ concurrency: 1, maxWaiting: 100_000, fairness: { by: (item) => item.tenant } });
  const others = othersGrants(await tenantOrder(fair, hotPlan()));
  assert.equal(others.length, 12);
  // T = 5 tenants of weight 1 wait: the waiter at position p of its tenant's line is granted within 5 * p grants.
  for (const { tenant, p, grant } of others) assert.ok(grant <= 5 * p, `${tenant} #${p} granted at grant ${grant}`);
  assert.equal(Math.max(...others.map((o) => o.grant)), 15);
  await fair.close();

  // The same scenario first come, first served: the others' first waiters come after the hot tenant's 100, their
  // last after its 300.
  const fifo = limiter({ concurrency: 1, maxWaiting: 100_000 });
  const starved = othersGrants(await tenantOrder(fifo, hotPlan()));
  assert.ok(
    starved.every((o) => o.grant > 100),
    JSON.stringify(starved),
  );
  assert.equal(Math.max(...starved.map((o) => o.grant)), 312);
  await fifo.close();
});

test("fairness: one hot tenant sending 100x the others: their p99 wait stays within 2x of their wait without it (the benchmark's scenario, in virtual time)", async () => {
  // bench/limiter-fairness.mjs: 4 permits held 10 ms each, four ordinary tenants at 60 % of the capacity together,
  // a hot one at 15x the capacity, 20 s of virtual time; exact and the same on every run.
  const alone = await fairnessRun({ withHot: false, fair: false });
  const hot = await fairnessRun({ withHot: true, fair: true });
  assert.equal(alone.n, hot.n);
  assert.ok(hot.p99 <= 2 * alone.p99, `p99 ${hot.p99} ms with the hot tenant, ${alone.p99} ms without`);
});

test('fairness: weights give a tenant that share of the grants (and that many grants per turn); first come, first served within a tenant', async () => {
  const asked = [];
  let bigWeight = 3;
  const l = limiter({
    concurrency: 1,
    fairness: {
      by: (item) => item.tenant,
      weight: (tenant) => {
        asked.push(tenant);
        return tenant === 'big' ? bigWeight : 1;
      },
    },
  });
  const order = await tenantOrder(l, ['big', 'big', 'big', 'big', 'big', 'small', 'small', 'other']);
  // Turns: big (weight 3) three grants, then small and other one each; then big again. (No tenant is under its
  // share so early: one more grant would put each past its part of the few recent ones.)
  assert.deepEqual(order, ['big', 'big', 'big', 'small', 'other', 'big', 'big', 'small']);
  // A weight is asked once while its tenant waits, and again when it waits anew (it may have changed).
  assert.deepEqual(asked.sort(), ['big', 'other', 'small']);
  bigWeight = 1;
  const again = await tenantOrder(l, ['big', 'big', 'small', 'small']);
  assert.deepEqual(again, ['big', 'small', 'big', 'small']);
  // Backlogged, 30 of each: big takes 3 of every 5 grants (its share), small and other one each.
  bigWeight = 3;
  const plan = ['big', 'small', 'other'].flatMap((t) => Array.from({ length: 30 }, () => t));
  const first25 = (await tenantOrder(l, plan)).slice(0, 25);
  assert.deepEqual(
    ['big', 'small', 'other'].map((t) => first25.filter((x) => x === t).length),
    [15, 5, 5],
  );
  assert.deepEqual(asked.sort(), ['big', 'big', 'big', 'other', 'other', 'small', 'small', 'small']);
  await l.close();
});

test('fairness: per key, each key its own round robin; an aborted waiter leaves its tenant turn', async () => {
  const l = limiter({ concurrency: 1, key: (item) => item.key, fairness: { by: (item) => item.tenant } });
  const a = await l.acquire({ key: 'k1', tenant: 'x' });
  const b = await l.acquire({ key: 'k2', tenant: 'x' });
  const order = [];
  const ac = new AbortController();
  const waits = [
    l.acquire({ key: 'k1', tenant: 'x' }).then((p) => order.push(['k1', 'x', p])),
    l.acquire({ key: 'k1', tenant: 'x' }).then((p) => order.push(['k1', 'x2', p])),
    l.acquire({ key: 'k1', tenant: 'y' }, { signal: ac.signal }).catch((e) => order.push(['k1', 'y-aborted', e])),
    l.acquire({ key: 'k1', tenant: 'z' }).then((p) => order.push(['k1', 'z', p])),
    l.acquire({ key: 'k2', tenant: 'y' }).then((p) => order.push(['k2', 'y', p])),
  ];
  ac.abort(new Error('gave up'));
  await settle();
  b.release();
  await settle();
  a.release();
  await settle();
  order.at(-1)[2].release();
  await settle();
  order.at(-1)[2].release();
  await Promise.all(waits);
  assert.deepEqual(
    order.map(([k, t]) => `${k}:${t}`),
    ['k1:y-aborted', 'k2:y', 'k1:x', 'k1:z', 'k1:x2'],
  );
  await l.close();
});

test('fairness: a bad tenant or weight refuses the acquire with ERR_VELO_LIMIT_TENANT, and nothing waits', async () => {
  const make = (by, weight) => limiter({ concurrency: 1, fairness: weight ? { by, weight } : { by } });
  const boom = new Error('boom');
  for (const [by, why] of [
    [
      () => {
        throw boom;
      },
      'throws',
    ],
    [() => 7, 'a number'],
    [() => '', 'empty'],
    [() => undefined, 'undefined'],
  ]) {
    const l = make(by);
    // Asked at every acquire, so a bad `by` is refused whether or not the acquire would wait.
    await assert.rejects(l.acquire({}), (e) => e.code === 'ERR_VELO_LIMIT_TENANT' && e instanceof TypeError, why);
    assert.equal(l.stats().waiting, 0);
  }
  const l = make(() => {
    throw boom;
  });
  await assert.rejects(l.acquire({}), (e) => e.cause === boom);
  for (const w of [0, -1, NaN, 1.5, 10_001, 1e300, Infinity, '2', undefined]) {
    const lw = make(
      (item) => item.t,
      () => w,
    );
    const held = await lw.acquire({ t: 'a' }); // no wait: the weight is not asked
    await assert.rejects(lw.acquire({ t: 'b' }), { code: 'ERR_VELO_LIMIT_TENANT' }, `weight ${String(w)}`);
    assert.equal(lw.stats().waiting, 0);
    held.release();
    await lw.close();
  }
  const throwing = make(
    (item) => item.t,
    () => {
      throw boom;
    },
  );
  const held = await throwing.acquire({ t: 'a' });
  await assert.rejects(throwing.acquire({ t: 'b' }), (e) => e.code === 'ERR_VELO_LIMIT_TENANT' && e.cause === boom);
  // The limiter still works after a refusal: a good tenant waits and is granted.
  held.release();
  assert.ok(await throwing.acquire({ t: 'c' }).catch(() => 'refused'));
  // A weight of 10000 is the largest allowed.
  const heavy = make(
    (item) => item.t,
    () => 10_000,
  );
  const h = await heavy.acquire({ t: 'a' });
  const w = heavy.acquire({ t: 'b' });
  await settle();
  assert.equal(heavy.stats().waiting, 1);
  h.release();
  (await w).release();
});

test('fairness: bad options are refused at creation', () => {
  const base = { concurrency: 1 };
  assert.throws(() => limiter({ ...base, fairness: 'tenant' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => limiter({ ...base, fairness: {} }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => limiter({ ...base, fairness: { by: 'tenant' } }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => limiter({ ...base, fairness: { by: () => 'a', weight: 2 } }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => limiter({ ...base, fairness: { by: () => 'a', weigth: () => 2 } }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "fairness.weigth"/,
  });
  assert.throws(() => limiter({ ...base, mode: 'reject', fairness: { by: () => 'a' } }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /nothing waits/,
  });
});

test('the Redis limiter refuses fairness plainly (not implemented there yet)', () => {
  assert.throws(() => redisLimiter({ client: {}, name: 'r', concurrency: 1, fairness: { by: () => 'a' } }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /"fairness" option is not supported on Redis yet/,
  });
});
