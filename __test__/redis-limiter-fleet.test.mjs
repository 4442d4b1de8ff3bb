// redisLimiter across real processes on a private redis-server: the promises a fleet relies on, checked by
// counting (an auditor key, Redis' own clock and the holders' sorted set), never by timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { redisLimiter } from 'velo-stream/redis';
import { start } from './helpers/child.mjs';
import { client, killChild, redis, useRedis } from './helpers/redis-suite.mjs';

const CHILD = fileURLToPath(new URL('./helpers/limiter-child.mjs', import.meta.url));
useRedis();

const child = (options) => start([CHILD, JSON.stringify({ url: redis.url, ...options })], { timeout: 120_000 });
const result = async (c) => JSON.parse((await c.waitFor(/done (.*)/))[1]);
const redisNow = async () => {
  const [s, us] = await client.sendCommand(['TIME']);
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('5 processes sharing concurrency 3: the auditor never sees more than 3 held, and every acquire is granted', async () => {
  const name = 'audit';
  const children = Array.from({ length: 5 }, () =>
    child({ name, role: 'audit', audit: 'auditor', rounds: 60, parallel: 4, limiter: { concurrency: 3, leaseTtl: 3000 } }),
  );
  const results = await Promise.all(children.map(result));
  await Promise.all(children.map((c) => c.finished()));
  const max = Math.max(...results.map((r) => r.max));
  assert.ok(max <= 3, `the auditor saw ${max} held at once`);
  assert.equal(max, 3, 'the limit was reached (the test is not vacuous)');
  assert.equal(
    results.reduce((n, r) => n + r.admitted, 0),
    300,
  );
  assert.equal(await client.get('auditor'), '0');
  assert.equal(await client.zCard('velo:lim:{audit}:h:'), 0, 'every permit given back');
  assert.equal(await client.exists('velo:lim:{audit}:q:'), 0, 'the line is empty');
});

test('a holder killed -9: its permits come back after its lease (Redis clock) and not before', async () => {
  const name = 'killed';
  const limits = { concurrency: 2, leaseTtl: 1200 };
  const holder = child({ name, role: 'hold', permits: 2, limiter: limits });
  await holder.waitFor(/held \S+ \S+/);
  await killChild(holder);
  // Its leases as Redis holds them now that no renewal can come.
  const leases = (await client.zRangeWithScores(`velo:lim:{${name}}:h:`, 0, -1)).map((e) => e.score).sort((a, b) => a - b);
  assert.equal(leases.length, 2);
  const probe = redisLimiter({ client, name, mode: 'reject', ...limits });
  const granted = [];
  const refused = [];
  try {
    while (granted.length < 2) {
      try {
        granted.push(await probe.acquire(0));
      } catch (error) {
        assert.equal(error.code, 'ERR_VELO_RATE_LIMITED');
        refused.push(error.at);
      }
      await sleep(25);
    }
    assert.ok(granted[0].grantedAt >= leases[0], `first permit back at ${granted[0].grantedAt}, its lease ran to ${leases[0]}`);
    assert.ok(granted[1].grantedAt >= leases[1], `second permit back at ${granted[1].grantedAt}, its lease ran to ${leases[1]}`);
    assert.ok(
      refused.some((at) => at < leases[0]),
      "refused while the dead holder's leases held",
    );
    assert.ok(
      refused.every((at) => at < leases[1]),
      'never refused once both leases had run out',
    );
  } finally {
    for (const p of granted) p.release();
    await probe.close();
  }
});

test('a holder SIGSTOPped past its lease and resumed: its release is fenced, the new holder keeps its permit', async () => {
  const name = 'paused';
  const limits = { concurrency: 1, leaseTtl: 900 };
  const holder = child({ name, role: 'hold', permits: 1, limiter: limits });
  const [, token] = await holder.waitFor(/held (\S+)/);
  holder.child.kill('SIGSTOP');
  const other = redisLimiter({ client, name, ...limits });
  let mine;
  try {
    // Throttle mode: waits in line until the paused holder's lease runs out (Redis' clock), then takes the permit.
    mine = await other.acquire(0);
    const expiry = (await client.zRangeWithScores(`velo:lim:{${name}}:h:`, 0, -1)).map((e) => [e.value, e.score]);
    assert.deepEqual(
      expiry.map(([v]) => v),
      [mine.token],
    );
    assert.notEqual(mine.token, token);
    holder.child.kill('SIGCONT');
    holder.child.stdin.end('release\n');
    const released = JSON.parse((await holder.waitFor(/released (.*)/))[1]);
    assert.deepEqual(released, { freed: [false], lost: [true] });
    await holder.finished();
    assert.deepEqual(await client.zRange(`velo:lim:{${name}}:h:`, 0, -1), [mine.token], 'the stale release freed nothing');
    mine.release();
    assert.equal(await mine.released(), true);
    mine = undefined;
  } finally {
    mine?.release();
    await other.close();
  }
});

test('5 processes sharing 40/s with a burst of 5: every window of grants (Redis clock) within the GCRA bound', async () => {
  const name = 'rate';
  const rate = { limit: 40, period: 1000, burst: 5 };
  const children = Array.from({ length: 5 }, () => child({ name, role: 'rate', rounds: 12, parallel: 3, limiter: { rate } }));
  const results = await Promise.all(children.map(result));
  await Promise.all(children.map((c) => c.finished()));
  const at = results.flatMap((r) => r.at).sort((a, b) => a - b);
  assert.ok(at.length >= 60);
  const T = rate.period / rate.limit;
  let tightest = -Infinity;
  for (let i = 0; i < at.length; i++) {
    for (let j = i; j < at.length; j++) {
      const bound = rate.burst + (at[j] - at[i]) / T;
      tightest = Math.max(tightest, j - i + 1 - bound);
      assert.ok(j - i + 1 <= bound + 1e-9, `${j - i + 1} grants in [${at[i]}, ${at[j]}]: the bound is ${bound}`);
    }
  }
  // The processes wanted more than the rate: some window reached the bound within one unit.
  assert.ok(tightest > -1, `the rate was reached (tightest window ${tightest} below its bound)`);
});
