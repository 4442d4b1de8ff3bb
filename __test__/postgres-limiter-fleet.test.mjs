// postgresLimiter across real processes on a private postgres: what a fleet relies on, checked by counting (an
// auditor row, the server's clock, the holders' rows), never by timing: concurrency never over the limit, a holder
// killed -9 gives its permits back after its lease and not before, the rate within the GCRA bound in every window,
// and a postgresWorker's sessions taking permits of a postgresLimiter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { streamFn } from 'velo-stream';
import { postgresLimiter, postgresOutputs, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { start } from './helpers/child.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

const CHILD = fileURLToPath(new URL('./helpers/postgres-limiter-child.mjs', import.meta.url));
usePostgres();

const S = 'velo_stream';
const child = (options) => start([CHILD, JSON.stringify({ config: postgres.config, ...options })], { timeout: 180_000 });
const result = async (c) => JSON.parse((await c.waitFor(/done (.*)/))[1]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const serverNow = async () =>
  Number((await pool().query('SELECT floor(extract(epoch from clock_timestamp()) * 1000)::bigint AS t')).rows[0].t);
async function killChild(c) {
  c.child.kill('SIGKILL');
  await c.finished().catch((error) => assert.match(String(error), /killed by SIGKILL|SIGKILL/));
}

/**
 * The tightest window of `grants` ({ at, cost }) against the GCRA bound, in integers: the largest
 * (units - bound) * period over every window from one grant time to another (above 0: over the bound).
 */
function tightest(grants, { limit, period, burst }) {
  const times = [...new Set(grants.map((g) => g.at))].sort((a, b) => a - b);
  const units = new Map(times.map((t) => [t, 0]));
  for (const g of grants) units.set(g.at, units.get(g.at) + g.cost);
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
  return worst;
}

test('4 processes hammering concurrency 3: the auditor never sees more than 3 held, and every acquire is granted', async () => {
  await pool().query('CREATE TABLE IF NOT EXISTS audit (id text PRIMARY KEY, n integer NOT NULL)');
  await pool().query(`INSERT INTO audit VALUES ('a', 0)`);
  const name = 'audit';
  const children = Array.from({ length: 4 }, () =>
    child({
      name,
      role: 'audit',
      audit: 'a',
      rounds: 40,
      parallel: 4,
      limiter: { concurrency: 3, leaseTtl: 10_000, pollInterval: 200 },
    }),
  );
  const results = await Promise.all(children.map(result));
  await Promise.all(children.map((c) => c.finished()));
  const max = Math.max(...results.map((r) => r.max));
  assert.ok(max <= 3, `the auditor saw ${max} held at once`);
  assert.equal(max, 3, 'the limit was reached (the test is not vacuous)');
  assert.equal(
    results.reduce((n, r) => n + r.admitted, 0),
    160,
  );
  assert.equal((await pool().query(`SELECT n FROM audit WHERE id = 'a'`)).rows[0].n, 0);
  assert.equal((await pool().query(`SELECT count(*)::int AS n FROM ${S}.lim_held WHERE name = $1`, [name])).rows[0].n, 0);
  assert.equal((await pool().query(`SELECT count(*)::int AS n FROM ${S}.lim_line WHERE name = $1`, [name])).rows[0].n, 0);
});

test('a holder killed -9: its permits come back after its lease (server clock) and not before, and its line waiters get them', async () => {
  const name = 'killed';
  const limits = { concurrency: 2, leaseTtl: 3000 };
  const holder = child({ name, role: 'hold', permits: 2, limiter: limits });
  await holder.waitFor(/held \S+ \S+/);
  await killChild(holder);
  const leases = (await pool().query(`SELECT until_ms FROM ${S}.lim_held WHERE name = $1 ORDER BY until_ms`, [name])).rows.map(
    (r) => Number(r.until_ms),
  );
  assert.equal(leases.length, 2);
  const killedAt = await serverNow();
  const probe = postgresLimiter({ pool: pool(), name, mode: 'reject', ...limits });
  const waiter = postgresLimiter({ pool: pool(), name, ...limits });
  const granted = [];
  let refused = 0;
  try {
    // One waits in the line; the probe asks in reject mode until both permits came back.
    const inLine = waiter.acquire(0);
    while (granted.length < 1) {
      try {
        granted.push(await probe.acquire(0));
      } catch (error) {
        assert.equal(error.code, 'ERR_VELO_RATE_LIMITED');
        refused++;
      }
      await sleep(25);
    }
    const fromLine = await inLine;
    granted.push(fromLine);
    assert.ok(
      refused > 0 || killedAt >= leases[0],
      'refused while the dead leases held (unless the machine was too slow to ask)',
    );
    for (const permit of granted) {
      assert.ok(permit.grantedAt >= leases[0], `granted at ${permit.grantedAt}, before the dead lease's end ${leases[0]}`);
    }
    // Within a lease of the kill, plus the time the grants took to be asked for (the line's first poll).
    assert.ok(
      fromLine.grantedAt - killedAt <= limits.leaseTtl + 2000,
      `granted ${fromLine.grantedAt - killedAt} ms after the kill`,
    );
    for (const permit of granted) permit.release();
    assert.deepEqual(await Promise.all(granted.map((p) => p.released())), [true, true]);
  } finally {
    await probe.close();
    await waiter.close();
  }
});

test('3 processes hammering concurrency 3 while a holder of 2 permits is killed -9: its permits come back within its lease, never before, and never more than 3 held', async () => {
  await pool().query('CREATE TABLE IF NOT EXISTS audit (id text PRIMARY KEY, n integer NOT NULL)');
  await pool().query(`INSERT INTO audit VALUES ('k', 0)`);
  const name = 'hammer-kill';
  const limits = { concurrency: 3, leaseTtl: 2000, pollInterval: 100 };
  const holder = child({ name, role: 'hold', permits: 2, limiter: limits });
  await holder.waitFor(/held \S+ \S+/);
  const auditors = Array.from({ length: 3 }, () =>
    // (Each permit held 60 ms: with the one permit the dead holder leaves, 90 rounds outlast its leases.)
    child({ name, role: 'audit', audit: 'k', rounds: 30, parallel: 3, holdMs: 60, limiter: limits }),
  );
  await killChild(holder);
  const leases = (await pool().query(`SELECT until_ms FROM ${S}.lim_held WHERE name = $1 ORDER BY until_ms`, [name])).rows.map(
    (r) => Number(r.until_ms),
  );
  const killedAt = await serverNow();
  // Live permits in the limiter's own table, sampled while the auditors run.
  let sampling = true;
  let most = 0;
  const sampler = (async () => {
    while (sampling) {
      const { rows } = await pool().query(
        `SELECT count(*)::int AS n FROM ${S}.lim_held WHERE name = $1 AND until_ms > floor(extract(epoch from clock_timestamp()) * 1000)`,
        [name],
      );
      most = Math.max(most, rows[0].n);
      await sleep(10);
    }
  })();
  const results = await Promise.all(auditors.map(result));
  await Promise.all(auditors.map((c) => c.finished()));
  sampling = false;
  await sampler;
  assert.ok(most <= 3, `${most} live permits at once`);
  const held = results.flatMap((r) => r.held);
  assert.equal(held.length, 90);
  assert.ok(Math.max(...results.map((r) => r.max)) <= 3);
  // When the auditors first held 2, and 3, permits at once (from grant to decrement, server clock; a decrement
  // before a grant of the same ms): the dead holder's 2 permits came back after their leases, never before, and
  // within the lease of the kill plus the time for a waiter to ask again.
  const events = held.flatMap(([from, to]) => [
    [from, 1],
    [to, -1],
  ]);
  events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const first = [];
  let now = 0;
  for (const [at, step] of events) {
    now += step;
    if (step > 0 && first[now] === undefined) first[now] = at;
  }
  assert.ok(first[3] !== undefined, 'the auditors held all 3 permits at once (the dead ones came back)');
  assert.equal(first[4], undefined, 'never 4');
  assert.equal(leases.length, 2);
  assert.ok(first[2] >= leases[0], `2 held from ${first[2]}, before a dead lease ended (${leases[0]})`);
  assert.ok(first[3] >= leases[1], `3 held from ${first[3]}, before the dead leases ended (${leases[1]})`);
  assert.ok(first[3] - killedAt <= limits.leaseTtl + 2000, `all 3 back ${first[3] - killedAt} ms after the kill`);
  assert.equal((await pool().query(`SELECT n FROM audit WHERE id = 'k'`)).rows[0].n, 0);
});

test('3 processes sharing 40/s with a burst of 5: every window of grants (server clock) within the GCRA bound', async () => {
  const name = 'rate';
  const rate = { limit: 40, period: 1000, burst: 5 };
  const children = Array.from({ length: 3 }, () =>
    child({
      name,
      role: 'rate',
      rounds: 40,
      parallel: 4,
      limiter: { rate, maxWaiting: 1000, leaseTtl: 60_000, pollInterval: 100 },
    }),
  );
  const results = await Promise.all(children.map(result));
  await Promise.all(children.map((c) => c.finished()));
  const grants = results.flatMap((r) => r.at.map((at) => ({ at, cost: 1 })));
  assert.equal(grants.length, 120);
  const worst = tightest(grants, rate);
  assert.ok(worst.excess <= 0, `over the bound: ${JSON.stringify(worst)}`);
  // Saturated: some window sits at the bound within a unit (the test is not vacuous).
  assert.ok(worst.excess > -rate.period, `never near the bound: ${JSON.stringify(worst)}`);
});

test('the rate is exact when period / limit is not a whole number of ms (7 per 10 ms, costs 1 and 3), in one process', async () => {
  const rate = { limit: 7, period: 10, burst: 7 };
  const l = postgresLimiter({
    pool: pool(),
    name: 'exact',
    rate,
    cost: (c) => c,
    maxWaiting: 10_000,
    leaseTtl: 60_000,
    pollInterval: 20,
  });
  const grants = [];
  try {
    const loop = async (i) => {
      for (let j = 0; j < 25; j++) {
        const cost = (i + j) % 3 === 0 ? 3 : 1;
        grants.push({ at: (await l.acquire(cost)).grantedAt, cost });
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, i) => loop(i)));
  } finally {
    await l.close();
  }
  const worst = tightest(grants, rate);
  assert.ok(worst.excess <= 0, `over the bound: ${JSON.stringify(worst)}`);
});

test('a postgresWorker with limiter.session = postgresLimiter (concurrency 2, two workers): never more than 2 sessions at once, outputs as without it', async () => {
  const name = 'limited';
  const shared = { pool: pool(), schema: 'velo_wlim', name, partitions: 4 };
  let active = 0;
  let max = 0;
  const fn = () =>
    streamFn(
      async function* audited(events) {
        active++;
        max = Math.max(max, active);
        try {
          let total = 0;
          for await (const e of events) {
            await sleep(5);
            total += e.n;
            yield { total };
          }
        } finally {
          active--;
        }
      },
      { idleTimeout: 150 },
    );
  const lim = { pool: pool(), schema: 'velo_wlim', name: 'sessions', concurrency: 2, leaseTtl: 3000, pollInterval: 100 };
  const limiters = [postgresLimiter(lim), postgresLimiter(lim)];
  const errors = [];
  const workers = limiters.map((session) =>
    postgresWorker(fn(), { ...shared, leaseTtl: 2000, pollInterval: 50, limiter: { session }, onError: (e) => errors.push(e) }),
  );
  try {
    const producer = postgresProducer(shared);
    const events = [];
    for (let round = 1; round <= 2; round++) for (let k = 0; k < 12; k++) events.push([`k${k}`, { n: round }]);
    await producer.sendMany(events);
    const got = [];
    for await (const item of postgresOutputs({ ...shared, signal: AbortSignal.timeout(90_000) })) {
      got.push(item);
      if (got.length === 24) break;
    }
    assert.equal(got.length, 24);
    for (let k = 0; k < 12; k++) {
      assert.deepEqual(
        got.filter((o) => o.key === `k${k}`).map((o) => o.value.total),
        [1, 3],
        `k${k}'s totals`,
      );
    }
    assert.ok(max <= 2, `${max} sessions at once`);
    assert.equal(max, 2, 'the limit was reached (the test is not vacuous)');
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(limiters.map((l) => l.close()));
  }
  assert.deepEqual(errors, []);
  const { rows } = await pool().query(`SELECT count(*)::int AS n FROM velo_wlim.lim_held WHERE name = 'sessions'`);
  assert.equal(rows[0].n, 0, 'every permit given back');
});

test('close() of a postgresWorker while its sessions wait for postgresLimiter permits: it settles, the waits leave the line, nothing is held', async () => {
  const name = 'closing';
  const shared = { pool: pool(), schema: 'velo_wclose', name, partitions: 2 };
  const lim = {
    pool: pool(),
    schema: 'velo_wclose',
    name: 'closing-sessions',
    concurrency: 1,
    leaseTtl: 3000,
    pollInterval: 100,
  };
  const blocker = postgresLimiter(lim);
  const session = postgresLimiter(lim);
  const errors = [];
  const taken = await blocker.acquire(0);
  const worker = postgresWorker(
    streamFn(
      async function* echo(events) {
        for await (const e of events) yield e;
      },
      { idleTimeout: 100 },
    ),
    { ...shared, leaseTtl: 2000, pollInterval: 50, limiter: { session }, onError: (e) => errors.push(e) },
  );
  try {
    const producer = postgresProducer(shared);
    await producer.sendMany(Array.from({ length: 6 }, (_, k) => [`k${k}`, { k }]));
    const waiting = async () =>
      Number(
        (await pool().query(`SELECT count(*) AS n FROM velo_wclose.lim_line WHERE name = $1 AND state = 'w'`, [lim.name])).rows[0]
          .n,
      );
    const until = Date.now() + 60_000;
    while ((await waiting()) === 0) {
      assert.ok(Date.now() < until, 'a session waits in the line');
      await sleep(20);
    }
    await worker.close();
    // (Each abort's cancel is sent at close, not awaited by it, as with redisLimiter.)
    const left = Date.now() + 20_000;
    while ((await waiting()) > 0) {
      assert.ok(Date.now() < left, 'the waits left the line');
      await sleep(20);
    }
    const held = await pool().query(`SELECT token FROM velo_wclose.lim_held WHERE name = $1`, [lim.name]);
    assert.deepEqual(
      held.rows.map((r) => r.token),
      [taken.token],
      "only the blocker's permit is held",
    );
  } finally {
    await worker.close();
    taken.release();
    await blocker.close();
    await session.close();
  }
  assert.deepEqual(errors, []);
});

test('limiter.step = postgresLimiter (concurrency 1, two workers): one handler step at a time, and every session ends where the log says', async () => {
  const name = 'stepped';
  const shared = { pool: pool(), schema: 'velo_wstep', name, partitions: 4 };
  let active = 0;
  let max = 0;
  const fn = () =>
    streamFn(
      async function* steps(events) {
        let total = 0;
        for await (const e of events) {
          active++;
          max = Math.max(max, active);
          await sleep(3);
          active--;
          total += e.n;
          yield { total };
        }
      },
      { idleTimeout: 150 },
    );
  const lim = { pool: pool(), schema: 'velo_wstep', name: 'steps', concurrency: 1, leaseTtl: 3000, pollInterval: 100 };
  const limiters = [postgresLimiter(lim), postgresLimiter(lim)];
  const errors = [];
  const workers = limiters.map((step) =>
    postgresWorker(fn(), { ...shared, leaseTtl: 2000, pollInterval: 50, limiter: { step }, onError: (e) => errors.push(e) }),
  );
  try {
    const producer = postgresProducer(shared);
    const events = [];
    for (let round = 1; round <= 3; round++) for (let k = 0; k < 8; k++) events.push([`k${k}`, { n: round }]);
    await producer.sendMany(events);
    const got = [];
    for await (const item of postgresOutputs({ ...shared, signal: AbortSignal.timeout(90_000) })) {
      got.push(item);
      if (got.length === 24) break;
    }
    for (let k = 0; k < 8; k++) {
      assert.deepEqual(
        got.filter((o) => o.key === `k${k}`).map((o) => o.value.total),
        [1, 3, 6],
        `k${k}'s totals`,
      );
    }
    assert.equal(max, 1, `${max} steps at once`);
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(limiters.map((l) => l.close()));
  }
  assert.deepEqual(errors, []);
  const { rows } = await pool().query(`SELECT count(*)::int AS n FROM velo_wstep.lim_held WHERE name = 'steps'`);
  assert.equal(rows[0].n, 0, 'every permit given back');
});
