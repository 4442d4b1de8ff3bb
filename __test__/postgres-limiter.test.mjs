// postgresLimiter on a private postgres: several limiter objects of one name stand for processes (the fleet across
// real processes is in postgres-limiter-fleet). Keys, FIFO line, reject mode, the line's bound, abort, close,
// setLimits, cost, fencing of a late release, undo, the failure policy, and what every option refuses. Checked by
// counting rows and the server's clock, never by timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { postgresLimiter } from 'velo-stream/postgres';
import { dashboard } from 'velo-stream/dashboard';
import { pool, restartablePostgres, usePostgres } from './helpers/postgres-suite.mjs';
import { listen, openFeed } from './helpers/dashboard-feed.mjs';

usePostgres();

const S = 'velo_stream';
let n = 0;
const fresh = () => `lim${++n}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function eventually(check, what, ms = 20_000) {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never: ${what}`);
    await sleep(10);
  }
}
const count = async (table, name, where = 'true', values = []) =>
  Number(
    (await pool().query(`SELECT count(*) AS n FROM ${S}.${table} WHERE name = $1 AND ${where}`, [name, ...values])).rows[0].n,
  );
const waiting = (name, key = '') => count('lim_line', name, `key = $2 AND state = 'w'`, [key]);
const held = (name, key = '') => count('lim_held', name, `key = $2`, [key]);
const make = (options) => postgresLimiter({ pool: pool(), ...options });

test('keyed: a key at its concurrency waits while other keys proceed; its release serves the line first come first served', async () => {
  const name = fresh();
  const options = { name, concurrency: 1, key: (item) => item.tenant, leaseTtl: 3000 };
  const a = make(options);
  const b = make(options);
  try {
    const first = await a.acquire({ tenant: 'x' });
    assert.equal(first.source, 'postgres');
    assert.ok(Number.isInteger(first.grantedAt) && first.grantedAt > 0);
    const order = [];
    const p1 = b.acquire({ tenant: 'x' }).then((p) => (order.push('first'), p));
    await eventually(async () => (await waiting(name, 'x')) === 1, 'first in line');
    const p2 = a.acquire({ tenant: 'x' }).then((p) => (order.push('second'), p));
    await eventually(async () => (await waiting(name, 'x')) === 2, 'second in line');
    const y = await b.acquire({ tenant: 'y' });
    const z = await a.acquire({ tenant: 'z' });
    assert.equal(a.stats().waiting, 1);
    assert.equal(b.stats().keys, 2);
    const [ax] = a.waitingKeys();
    assert.deepEqual([ax.key, ax.waiting, ax.held], ['x', 1, 1]);
    assert.equal(await held(name, 'x'), 1);
    first.release();
    assert.equal(await first.released(), true);
    const g1 = await p1;
    assert.deepEqual(order, ['first']);
    assert.equal(await held(name, 'x'), 1);
    g1.release();
    (await p2).release();
    assert.deepEqual(order, ['first', 'second']);
    y.release();
    z.release();
    await Promise.all([g1.released(), y.released(), z.released()]);
    await eventually(async () => (await count('lim_held', name)) === 0, 'every permit given back');
    assert.equal(await count('lim_line', name), 0, 'the line is empty');
  } finally {
    await a.close();
    await b.close();
  }
});

test('FIFO across processes: 12 waiters of 3 limiter objects are granted in the order they entered the line', async () => {
  const name = fresh();
  const objects = [0, 1, 2].map(() => make({ name, concurrency: 1, pollInterval: 50, listen: false }));
  try {
    let permit = await objects[0].acquire(0);
    const order = [];
    const all = [];
    for (let i = 0; i < 12; i++) {
      all.push(objects[i % 3].acquire(i).then((p) => (order.push(i), p)));
      await eventually(async () => (await waiting(name)) === i + 1, `waiter ${i} in line`);
    }
    for (let i = 0; i < 12; i++) {
      permit.release();
      permit = await all[i];
    }
    permit.release();
    assert.deepEqual(order, [...Array(12).keys()]);
  } finally {
    await Promise.all(objects.map((o) => o.close()));
  }
});

test('reject mode answers from one call: refused with ERR_VELO_RATE_LIMITED (retryAfter from the rate), counted by the fleet', async () => {
  const name = fresh();
  const l = make({ name, mode: 'reject', rate: { limit: 2, period: 60_000 }, leaseTtl: 900 });
  const c = make({ name, mode: 'reject', concurrency: 1 });
  try {
    const a = await l.acquire(0);
    const b = await l.acquire(0);
    const error = await l.acquire(0).catch((e) => e);
    assert.equal(error.code, 'ERR_VELO_RATE_LIMITED');
    assert.ok(error.retryAfter > 20_000 && error.retryAfter <= 30_000, `retryAfter ${error.retryAfter}`);
    assert.equal(l.stats().rejected, 1);
    a.release();
    b.release();
    // Concurrency in reject mode.
    const name2 = fresh();
    const c1 = make({ name: name2, mode: 'reject', concurrency: 1 });
    try {
      const h = await c1.acquire(0);
      await assert.rejects(c1.acquire(0), { code: 'ERR_VELO_RATE_LIMITED' });
      h.release();
      await h.released();
      (await c1.acquire(0)).release();
    } finally {
      await c1.close();
    }
    const { rows } = await pool().query(`SELECT admitted, rejected FROM ${S}.lim_limiters WHERE name = $1`, [name]);
    assert.deepEqual(rows[0], { admitted: '2', rejected: '1' });
  } finally {
    await l.close();
    await c.close();
  }
});

test('throttle: the line is bounded by maxWaiting (ERR_VELO_LIMIT_QUEUE_FULL); an aborted waiter leaves it; close rejects waiters', async () => {
  const name = fresh();
  const l = make({ name, concurrency: 1, maxWaiting: 2 });
  const other = make({ name, concurrency: 1, maxWaiting: 2 });
  try {
    const h = await l.acquire(0);
    const controller = new AbortController();
    const aborted = other.acquire(0, { signal: controller.signal });
    const queued = l.acquire(0);
    await eventually(async () => (await waiting(name)) === 2, 'two in line');
    await assert.rejects(other.acquire(0), { code: 'ERR_VELO_LIMIT_QUEUE_FULL', limiter: name });
    controller.abort(new Error('stop'));
    await assert.rejects(aborted, /stop/);
    await eventually(async () => (await waiting(name)) === 1, 'the aborted ticket left the line');
    h.release();
    (await queued).release();
    const again = await l.acquire(0);
    const parked = other.acquire(0).catch((error) => error);
    await eventually(async () => (await waiting(name)) === 1, 'one in line');
    await other.close();
    assert.equal((await parked).code, 'ERR_VELO_LIMITER_CLOSED');
    await assert.rejects(other.acquire(0), { code: 'ERR_VELO_LIMITER_CLOSED' });
    assert.equal(await count('lim_line', name), 0);
    again.release();
    assert.equal(await again.released(), true);
  } finally {
    await l.close();
    await other.close();
  }
});

test('setLimits: stored in Postgres, decided by at every process from its next call, waiters re-decided at once', async () => {
  const name = fresh();
  const a = make({ name, concurrency: 1, pollInterval: 5000 });
  const b = make({ name, concurrency: 1, pollInterval: 5000 });
  try {
    const h = await a.acquire(0);
    const w1 = b.acquire(0);
    const w2 = b.acquire(0);
    await eventually(async () => (await waiting(name)) === 2, 'two in line');
    await a.setLimits({ concurrency: 3 });
    // Granted by setLimits' own call (their polls, 50 ms and more apart, find them granted, or LISTEN wakes them).
    const [g1, g2] = await Promise.all([w1, w2]);
    assert.equal(await held(name), 3);
    // b was made with concurrency 1: the stored 3 decides.
    const g3 = b.acquire(0);
    await eventually(async () => (await waiting(name)) === 1, 'a fourth waits');
    h.release();
    (await g3).release();
    g1.release();
    g2.release();
    await assert.rejects(a.setLimits({ concurrency: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(a.setLimits({ concurrency: 1, key: () => 'x' }), { code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(a.setLimits({}), { code: 'ERR_INVALID_ARG_VALUE' });
  } finally {
    await a.close();
    await b.close();
  }
});

test('cost: units of the rate per permit; a cost above the burst is refused (ERR_VELO_LIMIT_COST), and so is one that setLimits puts above it while it waits', async () => {
  const name = fresh();
  const l = make({ name, rate: { limit: 10, period: 60_000 }, cost: (item) => item, mode: 'throttle' });
  try {
    (await l.acquire(7)).release();
    (await l.acquire(3)).release();
    await assert.rejects(l.acquire(11), { code: 'ERR_VELO_LIMIT_COST' });
    const w = l.acquire(5).catch((e) => e);
    await eventually(async () => (await waiting(name)) === 1, 'waits for the rate');
    await l.setLimits({ rate: { limit: 4, period: 60_000 } });
    assert.equal((await w).code, 'ERR_VELO_LIMIT_COST');
    assert.equal(await count('lim_line', name), 0);
  } finally {
    await l.close();
  }
});

test('hostile values: names, keys and costs refused with coded errors; a __proto__ key is a key like any other', async () => {
  const bad = [
    [{ name: '' }, 'ERR_INVALID_ARG_VALUE'],
    [{ name: 'x'.repeat(201) }, 'ERR_INVALID_ARG_VALUE'],
    [{ name: 'a b' }, 'ERR_INVALID_ARG_VALUE'],
    [{ name: 'a\0b' }, 'ERR_INVALID_ARG_VALUE'],
    [{ name: 5 }, 'ERR_INVALID_ARG_TYPE'],
    [{ name: undefined }, 'ERR_INVALID_ARG_TYPE'],
    [{ concurrency: NaN }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: 2 ** 53 }, 'ERR_OUT_OF_RANGE'],
    [{ concurrency: undefined, rate: undefined }, 'ERR_INVALID_ARG_VALUE'],
    [{ rate: { limit: 1, period: Infinity } }, 'ERR_OUT_OF_RANGE'],
    [{ rate: { limit: 1, period: 1, extra: 1 } }, 'ERR_INVALID_ARG_VALUE'],
    [{ leaseTtl: 299 }, 'ERR_OUT_OF_RANGE'],
    [{ maxWaiting: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ callTimeout: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ pollInterval: 1 }, 'ERR_OUT_OF_RANGE'],
    [{ listen: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
    [{ whenPostgresFails: 'maybe' }, 'ERR_INVALID_ARG_VALUE'],
    [{ whenRedisFails: 'fail-open' }, 'ERR_INVALID_ARG_VALUE'],
    [{ client: {} }, 'ERR_INVALID_ARG_VALUE'],
    [{ fairness: { by: () => 't' } }, 'ERR_INVALID_ARG_VALUE'],
    [{ priority: () => 1 }, 'ERR_INVALID_ARG_VALUE'],
    [{ schema: 'Bad-Schema' }, 'ERR_INVALID_ARG_VALUE'],
    [{ pool: {} }, 'ERR_INVALID_ARG_TYPE'],
    [{ key: 'tenant' }, 'ERR_INVALID_ARG_TYPE'],
    [{ mode: 'drop' }, 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [options, code] of bad) {
    assert.throws(() => make({ name: 'ok', concurrency: 1, ...options }), { code }, JSON.stringify(Object.keys(options)));
  }
  assert.throws(() => postgresLimiter(null), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => postgresLimiter([]), { code: 'ERR_INVALID_ARG_TYPE' });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  assert.throws(() => postgresLimiter(revoked.proxy), /./);

  const name = fresh();
  const l = make({ name, concurrency: 1, key: (item) => item.key, cost: (item) => item.cost, rate: { limit: 5, period: 1000 } });
  try {
    for (const [item, code] of [
      [{ key: '' }, 'ERR_VELO_LIMIT_KEY'],
      [{ key: 7 }, 'ERR_VELO_LIMIT_KEY'],
      [{ key: 'a\0b' }, 'ERR_VELO_LIMIT_KEY'],
      [{ key: '\ud800' }, 'ERR_VELO_LIMIT_KEY'],
      [{ key: 'k'.repeat(1025) }, 'ERR_VELO_LIMIT_KEY'],
      [{ key: 'k', cost: NaN }, 'ERR_VELO_LIMIT_COST'],
      [{ key: 'k', cost: -1 }, 'ERR_VELO_LIMIT_COST'],
      [{ key: 'k', cost: 1.5 }, 'ERR_VELO_LIMIT_COST'],
      [{ key: 'k', cost: 2 ** 64 }, 'ERR_VELO_LIMIT_COST'],
      [{ key: 'k', cost: 6 }, 'ERR_VELO_LIMIT_COST'],
      [{ key: 'k', cost: '1' }, 'ERR_VELO_LIMIT_COST'],
    ]) {
      await assert.rejects(l.acquire(item), { code }, JSON.stringify(item));
      assert.throws(() => l.tryAcquire(item), { code });
    }
    await assert.rejects(l.acquire({ key: 'k', cost: 1 }, { signal: 'no' }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.equal(l.tryAcquire({ key: 'k', cost: 1 }), undefined);
    // '__proto__', 'constructor' and a key of 1024 bytes are keys like any other, each with its own limit.
    const p = await l.acquire({ key: '__proto__', cost: 1 });
    const c = await l.acquire({ key: 'constructor', cost: 1 });
    const long = await l.acquire({ key: 'é'.repeat(512), cost: 1 });
    assert.equal(await held(name, '__proto__'), 1);
    assert.equal(l.stats().keys, 3);
    for (const permit of [p, c, long]) permit.release();
    assert.deepEqual(await Promise.all([p.released(), c.released(), long.released()]), [true, true, true]);
    assert.equal(await count('lim_held', name), 0);
  } finally {
    await l.close();
  }
});

test('fencing: a lease that ran out is never revived, and its late release frees nothing of the next holder (server clock)', async () => {
  const name = fresh();
  // Holders that stop renewing (processes paused or killed): permits of keys a and b taken straight through the
  // function, lease 300 ms; no limiter object of this name runs meanwhile, so nothing cleans them before the
  // stale calls below (each of them must see the row and still refuse it).
  const migrating = make({ name: fresh(), concurrency: 1 }); // (migrates the schema)
  (await migrating.acquire(0)).release();
  await migrating.close();
  const take = (key, token) =>
    pool().query(`SELECT * FROM ${S}.lim_acquire_5($1, $2, NULL, 1, false, 300, 10, 1, NULL, NULL, NULL, $3, 'c')`, [
      name,
      key,
      token,
    ]);
  assert.equal((await take('a', 'stale-a')).rows[0].o_kind, 'g');
  assert.equal((await take('b', 'stale-b')).rows[0].o_kind, 'g');
  const until = Number((await pool().query(`SELECT max(until_ms) AS u FROM ${S}.lim_held WHERE name = $1`, [name])).rows[0].u);
  while (
    Number((await pool().query(`SELECT ${'floor(extract(epoch from clock_timestamp()) * 1000)::bigint'} AS t`)).rows[0].t) <=
    until
  )
    await sleep(20);
  assert.equal(await count('lim_held', name), 2, 'the expired rows are still there');
  // A's late release: nothing freed (false), though its row was there.
  const release = await pool().query(`SELECT ${S}.lim_release_5($1, 'a', 'stale-a', 300, 1, NULL, NULL, NULL, 'c') AS freed`, [
    name,
  ]);
  assert.equal(release.rows[0].freed, false);
  // B's late renewal: lost, never revived.
  const renew = await pool().query(
    `SELECT * FROM ${S}.lim_renew_5($1, 'stale', 300, 1, NULL, NULL, NULL, ARRAY['b']::text[], ARRAY['stale-b']::text[], ARRAY[]::text[], ARRAY[]::bigint[], 'c')`,
    [name],
  );
  assert.deepEqual(renew.rows[0].o_lost, ['stale-b']);
  assert.equal(await count('lim_held', name), 0);
  // The next holder of b, then b's stale release again: it keeps its permit.
  const l = make({ name, concurrency: 1, key: (k) => k, leaseTtl: 3000 });
  try {
    const next = await l.acquire('b');
    assert.ok(next.grantedAt > until, `granted at ${next.grantedAt}, not after the dead lease's end ${until}`);
    const again = await pool().query(`SELECT ${S}.lim_release_5($1, 'b', 'stale-b', 300, 1, NULL, NULL, NULL, 'c') AS freed`, [
      name,
    ]);
    assert.equal(again.rows[0].freed, false);
    assert.equal(await held(name, 'b'), 1, 'the new holder keeps its permit');
    next.release();
    assert.equal(await next.released(), true);
  } finally {
    await l.close();
  }
});

test('an undo that reaches Postgres before its acquire makes the acquire take nothing; after it, gives back what it took', async () => {
  const name = fresh();
  const l = make({ name, concurrency: 1 });
  try {
    const first = await l.acquire(0);
    first.release();
    assert.equal(await first.released(), true);
    const acquire = (token) =>
      pool().query(`SELECT * FROM ${S}.lim_acquire_5($1, '', NULL, 1, false, 10000, 10, 1, NULL, NULL, NULL, $2, 'c')`, [
        name,
        token,
      ]);
    const undo = (token) =>
      pool().query(`SELECT ${S}.lim_cancel_5($1, '', NULL, $2, 10000, true, 1, NULL, NULL, NULL, 'c')`, [name, token]);
    await undo('u-1');
    assert.equal((await acquire('u-1')).rows[0].o_kind, 'c');
    assert.equal(await held(name), 0);
    assert.equal((await acquire('u-2')).rows[0].o_kind, 'g');
    await undo('u-2');
    assert.equal(await held(name), 0);
    // A ticket in line whose acquire is undone is never granted: the next one is.
    assert.equal((await acquire('u-3')).rows[0].o_kind, 'g');
    const w = await acquire('u-4');
    const w5 = await acquire('u-5');
    assert.equal(w.rows[0].o_kind, 'w');
    await pool().query(`SELECT ${S}.lim_cancel_5($1, '', NULL, 'u-4', 10000, true, 1, NULL, NULL, NULL, 'c')`, [name]);
    await pool().query(`SELECT ${S}.lim_release_5($1, '', 'u-3', 10000, 1, NULL, NULL, NULL, 'c')`, [name]);
    const { rows } = await pool().query(`SELECT token FROM ${S}.lim_held WHERE name = $1`, [name]);
    assert.deepEqual(rows, [{ token: 'u-5' }]);
    assert.equal(w5.rows[0].o_kind, 'w');
  } finally {
    await l.close();
  }
});

test('whenPostgresFails: fail-closed rejects with the connection error, fail-open grants uncounted, local limits in-process', async () => {
  // A pool on a port nothing listens on.
  const dead = new pg.Pool({ host: '127.0.0.1', port: 1, user: 'velo', database: 'postgres', connectionTimeoutMillis: 2000 });
  dead.on('error', () => {});
  const closed = postgresLimiter({ pool: dead, name: 'down', concurrency: 1 });
  const open = postgresLimiter({ pool: dead, name: 'down', concurrency: 1, whenPostgresFails: 'fail-open' });
  const local = postgresLimiter({ pool: dead, name: 'down', concurrency: 1, whenPostgresFails: 'local' });
  try {
    const error = await closed.acquire(0).catch((e) => e);
    assert.equal(error.code, 'ECONNREFUSED');
    await eventually(() => closed.stats().postgresDown, 'marked down');
    const o1 = await open.acquire(0);
    const o2 = await open.acquire(0);
    assert.deepEqual([o1.source, o2.source, o1.token], ['open', 'open', '']);
    const l1 = await local.acquire(0);
    assert.equal(l1.source, 'local');
    let second = false;
    const l2 = local.acquire(0).then((p) => ((second = true), p));
    await sleep(50);
    assert.equal(second, false, 'the local share (concurrency 1) holds the second');
    l1.release();
    (await l2).release();
    assert.equal(local.stats().postgresDown, true);
  } finally {
    await Promise.all([closed.close(), open.close(), local.close()]);
    await dead.end();
  }
});

test('a waiter is granted without LISTEN (polls only), and a waiter whose process stops renewing leaves the line after its lease', async () => {
  const name = fresh();
  const l = make({ name, concurrency: 1, listen: false, pollInterval: 100 });
  try {
    const h = await l.acquire(0);
    const w = l.acquire(0);
    await eventually(async () => (await waiting(name)) === 1, 'in line');
    h.release();
    (await w).release();
    // A ticket no one renews (taken straight through the function, lease 300 ms) is gone after it.
    const h2 = await l.acquire(0);
    await pool().query(`SELECT * FROM ${S}.lim_acquire_5($1, '', NULL, 1, false, 300, 10, 1, NULL, NULL, NULL, 'gone-1', 'c')`, [
      name,
    ]);
    assert.equal(await waiting(name), 1);
    const w2 = l.acquire(0);
    await sleep(400);
    h2.release();
    const g = await w2;
    assert.equal(await count('lim_line', name), 0);
    g.release();
  } finally {
    await l.close();
  }
});

test('acquires that got no answer within callTimeout (the limiter row locked) take nothing once Postgres answers: undone by their tokens', async () => {
  const name = fresh();
  const l = make({ name, concurrency: 5, callTimeout: 300, whenPostgresFails: 'fail-open', leaseTtl: 3000 });
  try {
    (await l.acquire(0)).release();
    await eventually(async () => (await count('lim_held', name)) === 0, 'the first permit given back');
    // Another session holds the limiter's row: every decision waits for it.
    const blocker = await pool().connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM ${S}.lim_limiters WHERE name = $1 FOR UPDATE`, [name]);
      const permit = await l.acquire(0);
      assert.equal(permit.source, 'open', 'no answer within callTimeout: fail-open');
      assert.equal(l.stats().postgresDown, true);
      // Fail-closed: the acquire rejects with the timeout's code.
      const closed = make({ name, concurrency: 5, callTimeout: 300, leaseTtl: 3000 });
      await assert.rejects(closed.acquire(0), { code: 'ERR_VELO_POSTGRES_TIMEOUT', timeout: 300 });
      void closed.close();
      await blocker.query('COMMIT');
    } finally {
      blocker.release();
    }
    // The late acquire ran once the row was free, and its undo after it: nothing held, nothing in line.
    await eventually(async () => (await count('lim_held', name)) === 0 && (await count('lim_undone', name)) >= 1, 'undone');
    assert.equal(await count('lim_line', name), 0);
    // Back on Postgres after the next renewal.
    await eventually(() => !l.stats().postgresDown, 'Postgres answers again');
    const again = await l.acquire(0);
    assert.equal(again.source, 'postgres');
    again.release();
  } finally {
    await l.close();
  }
});

test("setLimits to another rate: the stored arrival time carries over (no budget reset), read in the new limit's units", async () => {
  const name = fresh();
  const l = make({ name, mode: 'reject', rate: { limit: 3, period: 60_000, burst: 3 } });
  try {
    for (let i = 0; i < 3; i++) (await l.acquire(0)).release();
    await assert.rejects(l.acquire(0), { code: 'ERR_VELO_RATE_LIMITED' });
    // 7 a minute, burst 3: the 3 units spent a moment ago still count (a reset would admit 3 more at once).
    await l.setLimits({ rate: { limit: 7, period: 60_000, burst: 3 } });
    const error = await l.acquire(0).catch((e) => e);
    assert.equal(error.code, 'ERR_VELO_RATE_LIMITED');
    // The arrival time stays where the old limit put it (3 units of 20,000 ms after the grants): the next unit
    // conforms 60,000 + 60,000/7 - 3 * 60,000/7 ms after them, about 42,857 (less the time since, in whole ms).
    assert.ok(error.retryAfter > 40_000 && error.retryAfter <= 42_858, `retryAfter ${error.retryAfter}`);
    const { rows } = await pool().query(`SELECT rl FROM ${S}.lim_rate WHERE name = $1`, [name]);
    assert.deepEqual(rows, [{ rl: '3' }], 'the state as the old limit wrote it, read in the new units');
  } finally {
    await l.close();
  }
});

test("Postgres restarted mid-run: fail-closed refuses, fail-open allows, 'local' limits in-process by its share; all go back to Postgres", async () => {
  const server = await restartablePostgres();
  const p = server.pool({ max: 6, connectionTimeoutMillis: 2000 });
  const name = 'restarted';
  const options = { pool: p, name, concurrency: 2, leaseTtl: 900, callTimeout: 2000 };
  const closed = postgresLimiter(options);
  const open = postgresLimiter({ ...options, whenPostgresFails: 'fail-open' });
  const local = postgresLimiter({ ...options, whenPostgresFails: 'local' });
  try {
    for (const l of [closed, open, local]) (await l.acquire(0)).release();
    await eventually(() => [closed, open, local].every((l) => l.stats().fleet.processes === 3), 'three processes known');
    // Down until the checks below are done (a fixed time raced them on a fast machine).
    let reopen;
    const restarted = server.restart({ until: new Promise((resolve) => (reopen = resolve)) });
    // While it is down: each policy answers (no acquire hangs).
    await eventually(async () => {
      const error = await closed.acquire(0).then(
        (permit) => (permit.release(), null),
        (e) => e,
      );
      return error !== null;
    }, 'fail-closed refuses');
    const o = await open.acquire(0);
    assert.equal(o.source, 'open');
    const l1 = await local.acquire(0);
    assert.equal(l1.source, 'local');
    // The local share of concurrency 2 among 3 processes is 1: a second waits for the first.
    let second = false;
    const l2 = local.acquire(0).then((permit) => ((second = true), permit));
    await sleep(100);
    assert.equal(second, false);
    l1.release();
    (await l2).release();
    o.release();
    reopen();
    await restarted;
    // Back on Postgres once a renewal gets through.
    for (const l of [closed, open, local]) {
      await eventually(() => !l.stats().postgresDown, 'up again');
      const permit = await l.acquire(0);
      assert.equal(permit.source, 'postgres');
      permit.release();
      assert.equal(await permit.released(), true);
    }
  } finally {
    await Promise.all([closed.close(), open.close(), local.close()]);
    await server.stop();
  }
});

test("the dashboard's Limiters row: kind 'postgres', its limits, and the fleet's figures from stats()", async () => {
  const name = fresh();
  const shared = make({ name, concurrency: 2, mode: 'reject', key: (k) => k, leaseTtl: 3000 });
  const { url, close } = await listen(dashboard({ limiters: [shared], interval: 100 }));
  const feed = await openFeed(url);
  try {
    const permit = await shared.acquire('a');
    let row;
    for (let i = 0; i < 100; i++) {
      row = (await feed.next()).limiters.find((r) => r.name === name);
      if (row?.inUse === 1) break;
    }
    const s = shared.stats();
    assert.equal(row.kind, 'postgres');
    assert.deepEqual(row.limits, { concurrency: 2, mode: 'reject', keyed: true });
    assert.equal(row.inUse, 1);
    assert.deepEqual(row.postgres, {
      down: false,
      processes: s.fleet.processes,
      fleetAdmitted: s.fleet.admitted,
      fleetRejected: s.fleet.rejected,
      lost: 0,
    });
    assert.equal(row.redis, undefined);
    permit.release();
  } finally {
    feed.close();
    await close();
    await shared.close();
  }
});

test('a grant whose reply is read a lease after the call (the process paused) is never handed over dead: given back, asked for again', async () => {
  const name = fresh();
  const real = pool();
  let delays = 0;
  // The first decision's reply comes 900 ms late, past the 600 ms lease its permit was granted with.
  const slow = {
    options: { max: 10 },
    connect: () => real.connect(),
    query: async (config, values) => {
      const result = await real.query(config, values);
      const text = typeof config === 'string' ? config : config.text;
      if (text.includes('lim_acquire_5') && delays++ === 0) await sleep(900);
      return result;
    },
  };
  const l = postgresLimiter({ pool: slow, name, concurrency: 1, leaseTtl: 600, callTimeout: 5000 });
  try {
    const permit = await l.acquire(0);
    // Live now, on the server's clock: the permit handed over is the one asked for again.
    const { rows } = await real.query(
      `SELECT count(*)::int AS n FROM ${S}.lim_held WHERE name = $1 AND token = $2 AND until_ms > floor(extract(epoch from clock_timestamp()) * 1000)`,
      [name, permit.token],
    );
    assert.equal(rows[0].n, 1, 'the permit handed over is live');
    assert.ok(delays >= 2, 'asked again');
    permit.release();
    assert.equal(await permit.released(), true);
  } finally {
    await l.close();
  }
});
