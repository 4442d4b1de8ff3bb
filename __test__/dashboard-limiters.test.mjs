// velo-stream/dashboard's `limiters` option: its checks, the feed's limiter rows against each limiter's stats()
// (in-process limiters under load; a redisLimiter on a private redis-server, also once that server is stopped),
// and the page's Limiters table in headless Chromium (fixtures/dashboard-browser-limiters.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { limiter } from 'velo-stream';
import { dashboard } from 'velo-stream/dashboard';
import { listen, openFeed } from './helpers/dashboard-feed.mjs';
import { redisLimiter } from 'velo-stream/redis';
import { startRedis } from './helpers/redis-server.mjs';
import { chromium } from './helpers/chromium.mjs';
import { run } from './helpers/child.mjs';

/** The samples just before and at the first one taken after `mark` (ms since the epoch): the pair rates are computed on. */
async function pairAfter(feed, first, mark) {
  let before = first;
  for (let i = 0; i < 100; i++) {
    const sample = await feed.next();
    if (sample.at > mark) return [before, sample];
    before = sample;
  }
  assert.fail('no sample after the mark in 100');
}

/**
 * The row a sample must carry for a limiter whose stats() is `s`, `previous` being its row in the sample before.
 * The waits under way (`oldestWaitMs`, `waitingKeys`) grow between the sample and `s`: they are taken from `actual`
 * (the row got) and checked on their own by the tests.
 */
function expectedRow(s, { kind, limits, previous, seconds, actual }) {
  const row = {
    name: s.name,
    kind,
    ...(limits !== undefined && { limits }),
    inUse: s.inUse,
    waiting: s.waiting,
    admitted: s.admitted,
    rejected: s.rejected,
    admittedPerSec: previous === undefined ? 0 : Math.max(0, s.admitted - previous.admitted) / seconds,
    rejectedPerSec: previous === undefined ? 0 : Math.max(0, s.rejected - previous.rejected) / seconds,
    rate: s.rate === undefined ? null : s.rate,
    waitP50Ms: s.waitedMs.p50,
    waitP99Ms: s.waitedMs.p99,
    keys: s.keys,
    oldestWaitMs: actual?.oldestWaitMs,
    waitingKeys: actual?.waitingKeys,
  };
  if (kind === 'redis') {
    row.redis = {
      down: s.redisDown,
      processes: s.fleet.processes,
      fleetAdmitted: s.fleet.admitted,
      fleetRejected: s.fleet.rejected,
      lost: s.lost,
    };
  }
  return row;
}

const byName = (sample) => new Map(sample.limiters.map((r) => [r.name, r]));

test('the limiters option: an iterable of limiters, each named; hostile values refused with stable codes', () => {
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const a = limiter({ name: 'a', concurrency: 1 });
  const otherA = limiter({ name: 'a', rate: { limit: 1, period: 1000 } });
  const shaped = { acquire() {}, tryAcquire() {}, stats() {} }; // a limiter but for its name
  const throwingName = {
    ...shaped,
    get name() {
      throw new Error('no name');
    },
  };
  const cases = [
    [{ limiters: a }, 'ERR_INVALID_ARG_TYPE'], // one limiter, not an iterable of them
    [{ limiters: 'a' }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: null }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: () => [a] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: revoked.proxy }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: 10n }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [undefined] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [a, undefined] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [() => {}] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [{ name: 'a' }] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [{ name: 'a', stats: () => a.stats() }] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [revoked.proxy] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [1n] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [shaped] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [{ ...shaped, name: '' }] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [{ ...shaped, name: 7 }] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [throwingName] }, 'ERR_INVALID_ARG_TYPE'],
    [{ limiters: [a, otherA] }, 'ERR_INVALID_ARG_VALUE'], // two different limiters named "a"
    [{ limiters: [a, { ...shaped, name: 'a' }] }, 'ERR_INVALID_ARG_VALUE'],
    [
      {
        limiters: {
          *[Symbol.iterator]() {
            yield a;
            throw new Error('broken iterable');
          },
        },
      },
      'ERR_INVALID_ARG_VALUE',
    ],
    [{ limitters: [a] }, 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [options, code] of cases) {
    assert.throws(
      () => dashboard(options),
      (error) => error instanceof TypeError && error.code === code,
      `${code} for ${String(Object.keys(options))} = ${typeof options.limiters}`,
    );
  }
  // Accepted: nothing, an empty list, the same limiter twice, a Set, any object with the methods and a name.
  for (const limiters of [undefined, [], [a, a], new Set([a]), [{ ...shaped, name: 'custom' }]]) {
    assert.equal(typeof dashboard({ limiters }), 'function');
  }
});

test('in-process limiters under load: each row is exactly its stats(), with limits, mode and per-second rates between samples', async () => {
  // Frozen clock for the rate limiter: its `rate` figure does not move between the sample and the check.
  const frozen = performance.now();
  const pool = limiter({ name: 'pool', concurrency: 2 });
  const strict = limiter({ name: 'strict', concurrency: 1, mode: 'reject', key: (k) => k });
  const budget = limiter({ name: 'budget', rate: { limit: 4, period: 60_000, burst: 4 }, clock: () => frozen });
  const custom = {
    name: 'custom',
    acquire: async () => ({ release() {} }),
    tryAcquire: () => undefined,
    stats: () => ({ name: 'custom', inUse: 7, waiting: 1, admitted: 9, rejected: 2, waitedMs: { p50: 3, p99: 8 }, keys: 4 }),
  };
  const broken = { ...custom, name: 'broken', stats: () => assert.fail('stats() throws') };
  const pending = [];
  // A waiter's permit, once granted, is kept (held: counted in use) until the end.
  const granted = [];
  const settle = (p) =>
    pending.push(
      p.then(
        (permit) => granted.push(permit),
        () => {},
      ),
    );

  // A wait before the feed opens: one pool acquire waits for a held permit, so the wait percentiles are not 0.
  const held = [pool.tryAcquire(1), pool.tryAcquire(2)];
  const waited = pool.acquire(3);
  await new Promise((resolve) => setTimeout(resolve, 30));
  held[0].release();
  const third = await waited;
  assert.ok(pool.stats().waitedMs.p99 > 0);

  const { url, close } = await listen(dashboard({ limiters: [pool, strict, budget, pool, custom, broken], interval: 100 }));
  const feed = await openFeed(url);
  try {
    const first = await feed.next();
    assert.deepEqual(
      first.limiters.map((r) => [r.name, r.kind]),
      [
        ['pool', 'in-process'],
        ['strict', 'in-process'],
        ['budget', 'in-process'],
        ['custom', 'other'],
        ['broken', 'other'],
      ],
      'one row per limiter, in the order given, the same limiter twice once',
    );

    // Load: pool's two permits held and three acquires waiting; strict (reject mode, keyed) holding keys a and b
    // and refusing a three times; budget's burst used, two acquires waiting on its rate.
    settle(pool.acquire(4));
    settle(pool.acquire(5));
    settle(pool.acquire(6));
    const strictA = await strict.acquire('a');
    const refusals = await Promise.allSettled([strict.acquire('a'), strict.acquire('a'), strict.acquire('a')]);
    assert.deepEqual(
      refusals.map((r) => r.reason?.code),
      ['ERR_VELO_RATE_LIMITED', 'ERR_VELO_RATE_LIMITED', 'ERR_VELO_RATE_LIMITED'],
    );
    const strictB = strict.tryAcquire('b');
    for (let i = 0; i < 4; i++) budget.tryAcquire(i);
    settle(budget.acquire(5));
    settle(budget.acquire(6));
    const mark = Date.now();

    const [before, after] = await pairAfter(feed, first, mark);
    const seconds = Math.max(1e-3, (after.at - before.at) / 1000);
    const rows = byName(after);
    const previous = byName(before);
    const checks = [
      [pool, { concurrency: 2, mode: 'throttle', keyed: false }],
      [strict, { concurrency: 1, mode: 'reject', keyed: true }],
      [budget, { rate: { limit: 4, period: 60_000, burst: 4 }, mode: 'throttle', keyed: false }],
    ];
    for (const [l, limits] of checks) {
      const stats = l.stats();
      const row = rows.get(l.name);
      const expected = expectedRow(stats, { kind: 'in-process', limits, previous: previous.get(l.name), seconds, actual: row });
      assert.deepEqual(row, expected, l.name);
      // The waits under way: the longest at the sample, no longer than when read just now.
      assert.ok(row.oldestWaitMs >= 0 && row.oldestWaitMs <= stats.oldestWaitMs, `${l.name}: ${row.oldestWaitMs}`);
    }
    // Per-key waits: the keys waiting, their names hidden (no showKeys).
    assert.deepEqual(
      rows.get('pool').waitingKeys.map(({ key, waiting, held }) => ({ key, waiting, held })),
      [{ key: '…', waiting: 3, held: 2 }],
    );
    assert.ok(rows.get('pool').oldestWaitMs > 0);
    // (Read a moment after the row's figure.)
    assert.ok(rows.get('pool').waitingKeys[0].oldestWaitMs >= rows.get('pool').oldestWaitMs);
    assert.deepEqual(rows.get('strict').waitingKeys, [], "'reject' mode: nothing waits");
    // The figures are the load's, not zeros that would match any stats().
    assert.deepEqual([rows.get('pool').inUse, rows.get('pool').waiting, rows.get('pool').admitted], [2, 3, 3]);
    assert.ok(rows.get('pool').waitP99Ms > 0);
    assert.deepEqual([rows.get('strict').inUse, rows.get('strict').keys, rows.get('strict').rejected], [2, 2, 3]);
    assert.equal(rows.get('budget').waiting, 2);
    assert.equal(rows.get('budget').admitted, 4);
    assert.equal(typeof rows.get('budget').rate, 'number');
    assert.equal(rows.get('pool').rate, null, 'no rate limit: no rate figure');
    // Per-second rates between the two samples (the load came between them unless `before` is already after it).
    if (before.at <= mark && previous.get('strict').rejected === 0) assert.ok(rows.get('strict').rejectedPerSec > 0);
    // A limiter of another make: its stats() as they are, no limits; one whose stats() throws: a row saying so.
    assert.deepEqual(
      rows.get('custom'),
      expectedRow(custom.stats(), { kind: 'other', previous: previous.get('custom'), seconds, actual: rows.get('custom') }),
    );
    assert.deepEqual(rows.get('broken'), { name: 'broken', kind: 'other', error: 'ERR_ASSERTION' });

    // setLimits shows in the next sample: pool at 4 grants two waiters.
    pool.setLimits({ concurrency: 4 });
    const mark2 = Date.now();
    const [, later] = await pairAfter(feed, after, mark2);
    const poolRow = byName(later).get('pool');
    assert.deepEqual(poolRow.limits, { concurrency: 4, mode: 'throttle', keyed: false });
    assert.deepEqual([poolRow.inUse, poolRow.waiting], [4, 1]);
    strictA.release();
    strictB.release();
    third.release();
    held[1].release();
  } finally {
    feed.close();
    await close();
    await Promise.all([pool.close(), strict.close(), budget.close()]);
    await Promise.all(pending);
    for (const permit of granted) permit.release();
  }
});

test('a redisLimiter row: its stats() and the fleet figures; with its redis-server stopped, samples still come and show Redis away', async () => {
  const redis = await startRedis();
  const client = await redis.client();
  const common = { client, leaseTtl: 600, callTimeout: 200 };
  const shared = redisLimiter({ ...common, name: 'fleet-pool', concurrency: 2 });
  const refusing = redisLimiter({ ...common, name: 'fleet-strict', concurrency: 1, mode: 'reject', key: (k) => k });
  const local = limiter({ name: 'local', concurrency: 1 });
  const { url, close } = await listen(dashboard({ limiters: [shared, refusing, local], interval: 100 }));
  let feed;
  let stopped = false;
  let waiter;
  try {
    const p1 = await shared.acquire('w1');
    const p2 = await shared.acquire('w2');
    waiter = shared.acquire('w3').catch((error) => error);
    for (let i = 0; i < 200 && shared.stats().waiting !== 1; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(shared.stats().waiting, 1, 'an acquire waits in the fleet line');
    await refusing.acquire('a');
    for (const result of await Promise.allSettled([refusing.acquire('a'), refusing.acquire('a')])) {
      assert.equal(result.reason?.code, 'ERR_VELO_RATE_LIMITED');
    }

    feed = await openFeed(url);
    // The row is its stats() read as the sample arrives: the fleet counters move at a renewal (every 200 ms),
    // so a sample taken just before one is followed by another (a bounded number).
    const limits = {
      'fleet-pool': { concurrency: 2, mode: 'throttle', keyed: false },
      'fleet-strict': { concurrency: 1, mode: 'reject', keyed: true },
    };
    let previous;
    let matched;
    let lastSeen;
    for (let i = 0; i < 50 && matched === undefined; i++) {
      const sample = await feed.next();
      const seconds = previous === undefined ? 0 : Math.max(1e-3, (sample.at - previous.at) / 1000);
      const expected = [shared, refusing].map((l) =>
        expectedRow(l.stats(), {
          kind: 'redis',
          limits: limits[l.name],
          previous: previous && byName(previous).get(l.name),
          seconds,
          actual: byName(sample).get(l.name),
        }),
      );
      const got = expected.map((e) => byName(sample).get(e.name));
      lastSeen = [got, expected];
      if (JSON.stringify(got) === JSON.stringify(expected)) matched = sample;
      else previous = sample;
    }
    // On failure: the last sample's rows against the stats() read as it arrived.
    assert.deepEqual(...lastSeen);
    const rows = byName(matched);
    assert.deepEqual(
      [
        rows.get('fleet-pool').inUse,
        rows.get('fleet-pool').waiting,
        rows.get('fleet-pool').admitted,
        rows.get('fleet-pool').keys,
      ],
      [2, 1, 2, 1],
    );
    assert.deepEqual([rows.get('fleet-strict').inUse, rows.get('fleet-strict').rejected], [1, 2]);
    assert.equal(rows.get('fleet-pool').redis.down, false);
    assert.equal(rows.get('fleet-pool').rate, null);
    assert.equal(rows.get('local').kind, 'in-process');

    // The server stops: samples still come (stats() never waits for Redis), and show it away once a renewal failed.
    await redis.shutdown();
    stopped = true;
    const away = [];
    for (let i = 0; i < 100; i++) {
      const sample = await feed.next();
      away.push(sample);
      if (byName(sample).get('fleet-pool').redis.down && byName(sample).get('fleet-strict').redis.down) break;
    }
    const last = byName(away.at(-1));
    assert.equal(last.get('fleet-pool').redis.down, true, `Redis away in ${away.length} samples`);
    assert.equal(last.get('fleet-strict').redis.down, true);
    assert.equal(shared.stats().redisDown, true);
    // The waiter followed whenRedisFails ('fail-closed'): refused, no longer waiting.
    assert.equal((await waiter).code, 'ERR_VELO_REDIS_TIMEOUT');
    const next = byName(await feed.next());
    assert.equal(next.get('fleet-pool').waiting, 0);
    assert.equal(next.get('local').kind, 'in-process', 'the other rows go on');
    p1.release();
    p2.release();
  } finally {
    feed?.close();
    await close();
    if (stopped) await redis.start(); // stop() stops a running server, and removes its directory
    await Promise.all([shared.close(), refusing.close(), local.close()]);
    await waiter;
    await redis.stop();
  }
});

const fixture = fileURLToPath(new URL('./fixtures/dashboard-browser-limiters.mjs', import.meta.url));

test('the page in Chromium: a Limiters table row per limiter with its figures and a chart; hidden without limiters', async () => {
  const browser = await chromium();
  const { stdout } = await run([fixture, browser], { timeout: 180_000 });
  const seen = JSON.parse(stdout.trim().split('\n').at(-1));
  assert.equal(seen.hiddenWithout, true, 'no limiter: no Limiters section');
  assert.equal(seen.hidden, false);
  assert.deepEqual(seen.heads, [
    'limiter',
    'kind',
    'limits',
    'in use',
    'waiting',
    'admitted',
    'admitted /s',
    'rejected',
    'rejected /s',
    'rate (units /s)',
    'wait p50',
    'wait p99',
    'longest wait now',
    'keys',
    'keys waiting longest',
    'fleet store',
  ]);
  const [pool, strict, budget, broken] = seen.rows;
  assert.deepEqual(pool.slice(0, 6), ['pool', 'in-process', 'concurrency 2 · throttle', '2', '3', '2']);
  assert.equal(pool[9], '–', 'no rate limit');
  assert.deepEqual([strict[0], strict[2], strict[7], strict[13]], ['strict', 'concurrency 1 · reject · keyed', '2', '1']);
  // The pool's waiters: the longest wait under way, and its one key (hidden without showKeys).
  assert.match(pool[12], /^[\d.,]+ ms$/);
  assert.match(pool[14], /^…: 3 waiting, [\d.,]+ ms$/);
  assert.equal(strict[14], '–', 'nothing waits');
  assert.deepEqual(budget.slice(0, 3), ['budget', 'in-process', '4 per 60 s (burst 4) · throttle']);
  assert.match(budget[9], /^\d/);
  assert.deepEqual(broken, ['broken', 'other', 'stats() failed: E_BROKEN']);
  assert.equal(seen.charts, 1);
  assert.deepEqual(seen.consoleErrors, []);
});
