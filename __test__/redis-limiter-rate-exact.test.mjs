// redisLimiter's rate is exact when the emission interval (period / limit) is not a whole number of ms: the
// permits granted, by their grant times on Redis' own clock (`grantedAt`, the scripts' TIME in ms), never
// exceed the GCRA bound in any window, checked in integers: units in [a, b] * period <= burst * period + (b - a) *
// limit. (The scripts kept the rate state through Lua's 14-digit tostring, 0.1 ms at today's clock: each grant
// could move it back by up to 0.05 ms, so a saturated limiter ran over its rate, 3 per ms by 10%.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisLimiter } from 'velo-stream/redis';
import { prng } from '../bench/prng.mjs';
import { client, useRedis } from './helpers/redis-suite.mjs';

useRedis();

/**
 * The tightest window of `grants` ({ at, cost }) against the bound: the largest (units - bound) * period over
 * every window from one grant time to another (above 0: over the bound), and that window.
 */
export function tightest(grants, { limit, period, burst }) {
  const times = [...new Set(grants.map((g) => g.at))].sort((a, b) => a - b);
  const units = new Map(times.map((t) => [t, 0]));
  for (const g of grants) units.set(g.at, units.get(g.at) + g.cost);
  // prefix[i]: units granted before times[i].
  const prefix = [0];
  for (const t of times) prefix.push(prefix[prefix.length - 1] + units.get(t));
  let worst = { excess: -Infinity };
  for (let i = 0; i < times.length; i++) {
    for (let j = i; j < times.length; j++) {
      const u = prefix[j + 1] - prefix[i];
      const excess = u * period - (burst * period + (times[j] - times[i]) * limit);
      if (excess > worst.excess) worst = { excess, units: u, from: times[i], to: times[j] };
    }
  }
  worst.bound = burst + ((worst.to - worst.from) * limit) / period;
  return worst;
}

/**
 * `parallel` loops acquire (cost drawn from `costs`) for `ms` (after the first grant); the grants.
 * Throttle mode: the loops wait in the line, so the rate is saturated and served from the line.
 */
async function saturate(name, rate, { parallel, ms, costs = [1], seed = 1 }) {
  const random = prng(seed);
  const l = redisLimiter({ client, name, rate, cost: (c) => c, maxWaiting: 100_000, leaseTtl: 60_000 });
  const grants = [];
  let until = Infinity;
  let longest = 0;
  const loop = async () => {
    while (Date.now() < until) {
      const cost = costs[Math.floor(random() * costs.length)];
      const asked = Date.now();
      const permit = await l.acquire(cost);
      longest = Math.max(longest, Date.now() - asked);
      if (until === Infinity) until = Date.now() + ms;
      grants.push({ at: permit.grantedAt, cost });
      // (Rate-only permits are held until released or their lease ends: left to the lease here, a minute, so
      // every call to Redis is an acquire.)
    }
  };
  try {
    await Promise.all(Array.from({ length: parallel }, loop));
  } finally {
    await l.close();
  }
  return { grants, longest };
}

const cases = [
  { what: '3 per ms, burst 30', rate: { limit: 3, period: 1, burst: 30 }, parallel: 64, ms: 400 },
  {
    what: '3 per ms, costs 1 and 4, burst 30',
    rate: { limit: 3, period: 1, burst: 30 },
    parallel: 64,
    ms: 600,
    costs: [1, 4, 4],
  },
  { what: '7 per 10 ms, burst 7', rate: { limit: 7, period: 10, burst: 7 }, parallel: 32, ms: 1500 },
  { what: '60/s, costs 2, burst 9', rate: { limit: 60, period: 1000, burst: 9 }, parallel: 8, ms: 8000, costs: [2] },
  { what: '60/s, costs 1-3, burst 10', rate: { limit: 60, period: 1000, burst: 10 }, parallel: 8, ms: 8000, costs: [1, 2, 3] },
];

for (const [i, c] of cases.entries()) {
  test(`${c.what}: no window of grants (Redis clock) over the GCRA bound, and the rate reached`, async () => {
    const { grants, longest } = await saturate(`exact${i}`, c.rate, c);
    const units = grants.reduce((sum, g) => sum + g.cost, 0);
    const worst = tightest(grants, c.rate);
    const span = Math.max(...grants.map((g) => g.at)) - Math.min(...grants.map((g) => g.at));
    console.log(
      `${c.what}: ${grants.length} grants, ${units} units in ${span} ms; tightest window ${worst.units} units in ` +
        `[${worst.from}, ${worst.to}] (${worst.to - worst.from} ms), bound ${worst.bound.toFixed(2)}; longest acquire ${longest} ms`,
    );
    assert.ok(
      worst.excess <= 0,
      `${worst.units} units in [${worst.from}, ${worst.to}] (${worst.to - worst.from} ms): the bound is ${worst.bound}`,
    );
    // The loops asked for more than the rate: some window came within one cost of its bound (else this run did
    // not test the bound at all).
    const most = Math.max(...(c.costs ?? [1]));
    assert.ok(worst.units > worst.bound - most, `the rate was reached: the tightest window was ${worst.units} of ${worst.bound}`);
  });
}

test('the stored rate state: readable by the scripts of the version before (tonumber), and a state they wrote (a float) read back without a burst', async () => {
  const name = 'exact-format';
  const key = `velo:lim:{${name}}:r:`;
  const rate = { limit: 3, period: 1000, burst: 3 };
  const l = redisLimiter({ client, name, mode: 'reject', rate, leaseTtl: 60_000 });
  try {
    // Written now: W.F, F the 17 first decimals of the remainder (here a third of a ms).
    const first = await l.acquire(0);
    const stored = await client.get(key);
    assert.match(stored, /^\d+\.\d{17}$/, stored);
    assert.ok(Math.abs(Number(stored) - (first.grantedAt + 1000 / 3)) < 1e-3, `${stored} after a grant at ${first.grantedAt}`);
    // As the earlier scripts read it: Lua's tonumber, a number 1/3 ms past the whole ms.
    const old = await client.sendCommand(['EVAL', "return tostring(tonumber(redis.call('GET', KEYS[1])))", '1', key]);
    assert.ok(Math.abs(Number(old) - Number(stored)) <= 0.05, `tonumber gave ${old} for ${stored}`);

    // A state the earlier scripts wrote (tostring: 14 digits), 2 s ahead: the next unit conforms once the state
    // is within the burst less its cost (666.7 ms) of the clock, in 1333.7 ms: refused with that retry, not granted.
    const [s, us] = await client.sendCommand(['TIME']);
    const now = Number(s) * 1000 + Math.floor(Number(us) / 1000);
    await client.set(key, `${now + 2000}.3`, { PX: 5000 });
    const error = await l.acquire(0).catch((e) => e);
    assert.equal(error.code, 'ERR_VELO_RATE_LIMITED', String(error));
    assert.ok(error.retryAfter >= 1320 && error.retryAfter <= 1334, `retryAfter ${error.retryAfter}`);
    assert.equal(await client.get(key), `${now + 2000}.3`, 'a refusal writes nothing');
    // One 100.3 ms ahead: granted, and its fraction taken as the next third of a ms up (never back): 0.3 -> 1/3, so
    // the state moves to 100 + 1/3 + 333 + 1/3 ms.
    await client.set(key, `${now + 100}.3`, { PX: 5000 });
    await l.acquire(0);
    const after = await client.get(key);
    assert.match(after, new RegExp(`^${now + 433}\\.6666666666666666\\d$`), after);
  } finally {
    await l.close();
  }
});

test("setLimits to another limit: the stored state is read in the new limit's units, rounded up (never a burst)", async () => {
  const name = 'exact-relimit';
  const key = `velo:lim:{${name}}:r:`;
  const l = redisLimiter({ client, name, mode: 'reject', rate: { limit: 3, period: 1000, burst: 1 }, leaseTtl: 60_000 });
  try {
    const first = await l.acquire(0);
    // The state is a third of a second ahead; at 7 per second (burst 1) the next grant waits for it.
    await l.setLimits({ rate: { limit: 7, period: 1000, burst: 1 } });
    const redisNow = async () => {
      const [s, us] = await client.sendCommand(['TIME']);
      return Number(s) * 1000 + Math.floor(Number(us) / 1000);
    };
    // (Redis' clock read just before and just after the refusal: its wait is reckoned at a time between them.)
    const before = await redisNow();
    const error = await l.acquire(0).catch((e) => e);
    const after = await redisNow();
    assert.equal(error.code, 'ERR_VELO_RATE_LIMITED', String(error));
    // ceil(1000/3 - elapsed) at 1/7 ms units, then ceil to ms: at most 334 - elapsed, at least 333 - elapsed - 1.
    const most = first.grantedAt + 1000 / 3 - before;
    const least = first.grantedAt + 1000 / 3 - after;
    assert.ok(
      error.retryAfter >= Math.floor(least) && error.retryAfter <= Math.ceil(most) + 1,
      `retryAfter ${error.retryAfter}, between ${least} and ${most} left`,
    );
  } finally {
    await l.close();
  }
});

test("the scripts' exact product: a * b = q * L + r for costs and bursts to 10^9, periods to 31 days, limits to 10^9 (against BigInt)", async () => {
  const { readFileSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const dir = createRequire(import.meta.url)
    .resolve('velo-stream/redis')
    .replace(/index\.js$/, 'log/lua/');
  const common = readFileSync(`${dir}limiter-common.lua`, 'utf8');
  const random = prng(7);
  const draw = (max) => 1 + Math.floor(random() * max);
  const cases = [
    [1_000_000_000, 31 * 86_400_000, 1],
    [1_000_000_000, 31 * 86_400_000, 1_000_000_000],
    [999_999_999, 31 * 86_400_000 - 1, 999_999_937],
    [1, 1, 1],
    [3, 1, 3],
  ];
  for (let i = 0; i < 200; i++) cases.push([draw(1e9), draw(31 * 86_400_000), draw(i % 2 ? 1e9 : 1000)]);
  const lua = `${common}\nL = tonumber(ARGV[3])\nlocal q, r = muldiv(tonumber(ARGV[1]), tonumber(ARGV[2]))\nreturn { string.format('%d', q), string.format('%d', r) }`;
  for (const [a, b, limit] of cases) {
    const [q, r] = await client.sendCommand(['EVAL', lua, '1', 'velo:lim:{muldiv}', String(a), String(b), String(limit)]);
    const product = BigInt(a) * BigInt(b);
    // (The quotient is exact while below 2^53: every quotient of a real limiter, whose arrival times are ms.)
    const exact = product / BigInt(limit);
    if (exact < 2n ** 53n) assert.equal(q, String(exact), `${a} * ${b} / ${limit}`);
    assert.equal(r, String(product % BigInt(limit)), `${a} * ${b} % ${limit}`);
  }
});
