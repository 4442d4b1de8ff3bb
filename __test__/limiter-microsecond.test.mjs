// The in-process limiter's rate bound holds to the microsecond, not below: the core takes each clock reading (ms)
// to the nearest whole µs (crates/velo-node/src/limiter.rs, `us`), and the period too, then decides exactly in
// integers. So over any window of w ms on the limiter's clock at most burst + (w + 0.001) / T units are granted
// (T = period / limit, the period to the µs), and a window a fraction of a µs short of the exact bound can hold
// one unit more. Checked on a virtual clock (`clock`) in steps of 0.1 µs, with tryAcquire (no timers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limiter } from 'velo-stream';
import { prng } from '../bench/prng.mjs';

/** Time in ticks of 0.1 µs; the clock reads it in ms. */
const TICKS_PER_MS = 10_000;

/**
 * The largest excess of units granted over the bound in any window, as (units - bound) * period * TICKS_PER_MS
 * (an integer): above 0, a window over burst + (w + slack) * limit / period, w and slack in ticks.
 */
function worstExcess(grants, { limit, period, burst }, slack) {
  let worst = { excess: -Infinity };
  for (let i = 0; i < grants.length; i++) {
    let units = 0;
    for (let j = i; j < grants.length; j++) {
      units += grants[j].cost;
      const w = grants[j].at - grants[i].at;
      const excess = units * period * TICKS_PER_MS - (burst * period * TICKS_PER_MS + (w + slack) * limit);
      if (excess > worst.excess) worst = { excess, units, from: grants[i].at, to: grants[j].at };
    }
  }
  return worst;
}

test('two grants 0.9996 ms apart at 1 per ms (burst 1): over the exact bound by a unit, within it to 1 µs', () => {
  let tick = 0;
  const l = limiter({ rate: { limit: 1, period: 1, burst: 1 }, mode: 'reject', clock: () => tick / TICKS_PER_MS });
  assert.ok(l.tryAcquire(0));
  tick = 9_994; // 0.9994 ms: 999.4 µs, taken as 999: refused
  assert.equal(l.tryAcquire(0), undefined);
  tick = 9_996; // 0.9996 ms: 999.6 µs, taken as 1000: granted, 0.4 µs before the exact bound allows
  assert.ok(l.tryAcquire(0));
  const grants = [
    { at: 0, cost: 1 },
    { at: 9_996, cost: 1 },
  ];
  const rate = { limit: 1, period: 1, burst: 1 };
  assert.ok(worstExcess(grants, rate, 0).excess > 0, 'over the exact bound');
  assert.ok(worstExcess(grants, rate, 10).excess <= 0, 'within it to 1 µs');
});

for (const rate of [
  { limit: 3, period: 1, burst: 5 },
  { limit: 7, period: 10, burst: 1 },
  { limit: 60, period: 1000, burst: 4 },
]) {
  test(`${rate.limit} per ${rate.period} ms, burst ${rate.burst}, costs 1-3, readings at any 0.1 µs: every window within the bound plus 1 µs`, () => {
    const random = prng(rate.limit * 1000 + rate.period);
    let tick = 0;
    const l = limiter({ rate, mode: 'reject', cost: (c) => c, clock: () => tick / TICKS_PER_MS });
    const grants = [];
    const interval = (rate.period * TICKS_PER_MS) / rate.limit;
    // About 600 grants, asked for far more often than the rate allows (steps of up to a fifth of an interval).
    while (grants.length < 600) {
      tick += 1 + Math.floor(random() * (interval / 5));
      const cost = 1 + Math.floor(random() * Math.min(3, rate.burst));
      if (l.tryAcquire(cost)) grants.push({ at: tick, cost });
    }
    const exact = worstExcess(grants, rate, 0);
    const toTheMicrosecond = worstExcess(grants, rate, 10);
    console.log(
      `exact bound: worst excess ${exact.excess / (rate.period * TICKS_PER_MS)} units; with 1 µs: ${toTheMicrosecond.excess / (rate.period * TICKS_PER_MS)}`,
    );
    assert.ok(
      toTheMicrosecond.excess <= 0,
      `${toTheMicrosecond.units} units in [${toTheMicrosecond.from}, ${toTheMicrosecond.to}] (0.1 µs): over the bound plus 1 µs`,
    );
    // Saturated: some window reached the exact bound within one cost.
    assert.ok(exact.excess > -3 * rate.period * TICKS_PER_MS, `the rate was reached (${exact.units} units)`);
  });
}

test('the period is taken to the µs: 1.0004 ms is 1 ms, one unit more than the exact bound every 2,500 periods', () => {
  let tick = 0;
  const rate = { limit: 1, period: 1.0004, burst: 1 };
  const l = limiter({ rate, mode: 'reject', clock: () => tick / TICKS_PER_MS });
  let granted = 0;
  // 3,000 ms in steps of 1 µs.
  for (; tick <= 3_000 * TICKS_PER_MS; tick += 10) if (l.tryAcquire(0)) granted++;
  // Exactly: 1 + floor(3000 / 1.0004) = 2999. To the µs (1 ms): 1 + 3000.
  assert.equal(granted, 3001);
});

test('burst 1: a waiter granted late is not made up for: the next grant is an interval after it, not after its due time', async () => {
  let now = 0;
  const l = limiter({ rate: { limit: 200, period: 1000, burst: 1 }, clock: () => now });
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const until = async (check) => {
    for (let i = 0; i < 2000 && !check(); i++) await sleep(1);
  };
  (await l.acquire()).release();
  const granted = [];
  const waiting = [1, 2].map((i) => l.acquire().then((permit) => (granted.push([i, now]), permit.release())));
  // Due at 5 ms; its timer finds the clock 0.8 ms later (a late timer).
  now = 5.8;
  await until(() => granted.length === 1);
  // The second is due 5 ms after that grant (10.8), not after the first's due time (10): at 10.5 it still waits.
  now = 10.5;
  await sleep(20);
  assert.equal(granted.length, 1);
  now = 10.8;
  await Promise.all(waiting);
  assert.deepEqual(granted, [
    [1, 5.8],
    [2, 10.8],
  ]);
});
