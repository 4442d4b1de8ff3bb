// `callTimeout` on Postgres: a connection that goes silent for good (a server host gone without a word, behind a
// proxy that keeps it open) holds a statement of velo-stream's for `callTimeout` at most. Then the connection is
// destroyed and the call fails with ERR_VELO_POSTGRES_TIMEOUT: a worker serves again on new connections, a send
// rejects with its ids unknown and the next send goes through. The statements of the user's `effects` are not
// bounded by it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { postgresKeyOutputs, postgresLimiter, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { streamFn } from 'velo-stream';
import { isConnectionError } from '#testing';
import { startPostgres } from './helpers/postgres-server.mjs';
import { fresh } from './helpers/redis-suite.mjs';
import { startProxy } from './helpers/tcp-proxy.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 4;

const echo = streamFn(async function* echo(events) {
  for await (const e of events) yield e;
});

/** The function's outputs in the table, by key: how many each. */
async function outputCounts(pool, name) {
  const { rows } = await pool.query('SELECT key, count(*)::int AS n FROM velo_stream.outputs WHERE fn = $1 GROUP BY key', [name]);
  return Object.fromEntries(rows.map((r) => [r.key, r.n]));
}

/**
 * A private postgres, a proxy to it that can go silent (`proxy.strand()`), a pool of `max` through the proxy (with
 * `options`), and a pool of `direct` straight to the server (none for 0); `stop()` ends them all.
 */
async function behindProxy({ max, direct = 0, ...options }) {
  const server = await startPostgres();
  const proxy = await startProxy(server.port);
  const pool = new pg.Pool({ ...server.config, port: proxy.port, max, ...options });
  // (A destroyed connection's error, also while idle in the pool.)
  pool.on('error', () => {});
  const straight = direct > 0 ? server.pool({ max: direct }) : null;
  return {
    server,
    proxy,
    pool,
    direct: straight,
    async stop() {
      await pool.end();
      await straight?.end();
      await proxy.stop();
      await server.stop();
    },
  };
}

/** That `errors` (a worker's reports) hold an ERR_VELO_POSTGRES_TIMEOUT. */
function assertTimedOut(errors) {
  assert.ok(
    errors.some((e) => e.code === 'ERR_VELO_POSTGRES_TIMEOUT'),
    errors.map((e) => `${e.code} ${e.message}`).join('\n'),
  );
}

test('a worker whose connections go silent for good serves again within callTimeout, on new connections', async () => {
  const { proxy, pool, direct, stop } = await behindProxy({ max: 6, direct: 2 });
  const name = fresh('silent');
  const errors = [];
  const worker = postgresWorker(echo, {
    pool,
    name,
    partitions: PARTITIONS,
    leaseTtl: 3000,
    callTimeout: 1000,
    onError: (error) => errors.push(error),
  });
  const producer = postgresProducer({ pool: direct, name, partitions: PARTITIONS });
  try {
    await eventually(() => worker.stats().owned.length === PARTITIONS, 'the worker owns every partition', 30_000);
    await producer.send('before', { n: 1 });
    await eventually(() => worker.stats().outputs >= 1, 'the first output', 30_000);
    assert.ok(proxy.strand() > 0, "the worker's connections");
    await producer.send('after', { n: 2 });
    await eventually(async () => (await outputCounts(direct, name)).after === 1, 'an output after the silence', 60_000);
    const timeouts = errors.filter((e) => e.code === 'ERR_VELO_POSTGRES_TIMEOUT');
    assert.ok(timeouts.length >= 1, errors.map((e) => `${e.code} ${e.message}`).join('\n'));
    assert.equal(timeouts[0].timeout, 1000);
    assert.match(timeouts[0].message, /velo-stream's statement .*its connection was destroyed.*callTimeout \(1000 ms\)/);
  } finally {
    await worker.close();
  }
  try {
    assert.deepEqual(await outputCounts(direct, name), { before: 1, after: 1 });
    assert.deepEqual(
      errors.filter((e) => e.code === 'ERR_VELO_CLOSE_TIMEOUT'),
      [],
      'close() did not wait for a silent connection',
    );
  } finally {
    await stop();
  }
});

test("a worker's LISTEN connection gone silent for good is found out and replaced", async () => {
  const { proxy, pool, direct, stop } = await behindProxy({ max: 6, direct: 2 });
  const name = fresh('silent-listen');
  // The server's sessions that LISTEN (their last statement a LISTEN of velo-stream's), idle.
  const listening = async () =>
    (await direct.query("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN velo_%' AND state = 'idle'")).rows.map(
      (r) => r.pid,
    );
  const errors = [];
  const worker = postgresWorker(echo, { pool, name, partitions: PARTITIONS, callTimeout: 1000, onError: (e) => errors.push(e) });
  const producer = postgresProducer({ pool: direct, name, partitions: PARTITIONS });
  try {
    await producer.send('before', { n: 1 });
    await eventually(() => worker.stats().outputs >= 1, 'the first output', 30_000);
    const before = await listening();
    assert.equal(before.length, 1, 'one LISTEN connection');
    proxy.strand();
    // Nothing closes the stranded session: the server still has it, LISTENing.
    await eventually(async () => (await listening()).some((pid) => !before.includes(pid)), 'a new LISTEN connection', 60_000);
    await producer.send('after', { n: 2 });
    await eventually(async () => (await outputCounts(direct, name)).after === 1, 'an output after the silence', 60_000);
  } finally {
    await worker.close();
    await stop();
  }
});

test('a send on a connection gone silent rejects within callTimeout, its ids unknown; the next send goes through', async () => {
  const { proxy, pool, stop } = await behindProxy({ max: 1 });
  const name = fresh('silent-send');
  try {
    for (const producer of [
      postgresProducer({ pool, name, partitions: PARTITIONS, callTimeout: 500 }),
      sessionProducer({ client: pool, name, partitions: PARTITIONS, callTimeout: 500 }),
    ]) {
      await producer.send('k', { n: 1 });
      assert.equal(proxy.strand(), 1, "the pool's one connection, idle");
      const error = await producer.send('k', { n: 2 }).then(
        () => assert.fail('the send resolved'),
        (e) => e,
      );
      assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
      assert.deepEqual(error.ids, [undefined], 'unknown: the statement may have committed');
      assert.equal(error.cause.code, 'ERR_VELO_POSTGRES_TIMEOUT');
      assert.equal(error.cause.timeout, 500);
      assert.match(await producer.send('k', { n: 3 }), /^\d+-\d+$/);
    }
  } finally {
    await stop();
  }
});

test('a reader whose connection goes silent for good reads on, each output once, in order', async () => {
  const { proxy, pool, direct, stop } = await behindProxy({ max: 1, direct: 4 });
  const name = fresh('silent-read');
  const worker = postgresWorker(echo, { pool: direct, name, partitions: PARTITIONS });
  const producer = postgresProducer({ pool: direct, name, partitions: PARTITIONS });
  const readers = [
    ['sessionOutputs', sessionOutputs({ client: pool, name, partitions: PARTITIONS })],
    ['postgresKeyOutputs', postgresKeyOutputs({ pool, name, partitions: PARTITIONS, key: 'postgresKeyOutputs' })],
  ];
  try {
    for (const [what, reader] of readers) {
      const iterator = reader[Symbol.asyncIterator]();
      const n = what.length;
      await producer.send(what, { n });
      assert.deepEqual((await iterator.next()).value.value, { n }, what);
      assert.equal(proxy.strand(), 1, `${what}: the pool's one connection`);
      await producer.send(what, { n: n + 1 });
      // The read in flight (or the next) meets the silent connection: past the default callTimeout, it is read again.
      assert.deepEqual((await iterator.next()).value.value, { n: n + 1 }, what);
      await iterator.return();
    }
  } finally {
    await worker.close();
    await stop();
  }
});

test("callTimeout does not bound the statements of the user's effects", async () => {
  const server = await startPostgres();
  const name = fresh('slow-effects');
  const pool = server.pool({ max: 6 });
  const errors = [];
  const slept = [];
  const worker = postgresWorker(echo, {
    pool,
    name,
    partitions: PARTITIONS,
    callTimeout: 200,
    onError: (error) => errors.push(error),
    effects: async (tx, outputs) => {
      await tx.query('SELECT pg_sleep(0.6)');
      slept.push(...outputs.map((o) => o.key));
    },
  });
  const producer = postgresProducer({ pool, name, partitions: PARTITIONS });
  try {
    await producer.send('slow', { n: 1 });
    await eventually(async () => (await outputCounts(pool, name)).slow === 1, 'the output, committed with its effects', 30_000);
    assert.deepEqual(slept, ['slow']);
    assert.deepEqual(
      errors.map((e) => e.code),
      [],
      errors.map((e) => e.message),
    );
  } finally {
    await worker.close();
    await pool.end();
    await server.stop();
  }
});

test("a connection gone silent under a statement of the user's effects is found out: destroyed, the commit retried, its effects once", async () => {
  const { proxy, pool, direct, stop } = await behindProxy({ max: 6, direct: 2 });
  const name = fresh('silent-effects');
  await direct.query('CREATE TABLE IF NOT EXISTS silent_ledger (key text, n int)');
  const errors = [];
  let stranded = false;
  let calls = 0;
  const worker = postgresWorker(echo, {
    pool,
    name,
    partitions: 1,
    leaseTtl: 60_000,
    callTimeout: 1000,
    onError: (error) => errors.push(error),
    effects: async (tx, outputs) => {
      calls++;
      // The first commit's connection goes silent as its effects send their statement.
      if (!stranded) stranded = proxy.strand() > 0;
      for (const o of outputs) await tx.query('INSERT INTO silent_ledger VALUES ($1, $2)', [o.key, o.value.n]);
    },
  });
  const producer = postgresProducer({ pool: direct, name, partitions: 1 });
  try {
    await producer.send('k', { n: 1 });
    await eventually(async () => (await outputCounts(direct, name)).k === 1, 'the output, committed with its effects', 60_000);
    assert.ok(stranded);
    const { rows } = await direct.query('SELECT key, n FROM silent_ledger');
    assert.deepEqual(rows, [{ key: 'k', n: 1 }], 'the effects once');
    // The first commit, cut, rolled back; the second committed. (Reports go out one a second: the LISTEN connection's
    // timeout, on the same proxy, may be the one reported.)
    assert.equal(calls, 2);
    assertTimedOut(errors);
  } finally {
    await worker.close();
    await stop();
  }
});

test('a send whose connection the pool could not open within its connectionTimeoutMillis: its ids null (nothing sent)', async () => {
  const { proxy, pool, stop } = await behindProxy({ max: 1, connectionTimeoutMillis: 300 });
  const name = fresh('not-opened');
  const producer = postgresProducer({ pool, name, partitions: PARTITIONS, callTimeout: 500 });
  try {
    await producer.send('k', { n: 1 });
    // The pool's one connection goes silent, so that it is destroyed (callTimeout); the next opens no further than
    // the proxy, which holds its bytes.
    proxy.strand();
    await producer.send('k', { n: 2 }).catch(() => {});
    proxy.hold();
    const error = await producer.send('k', { n: 3 }).then(
      () => assert.fail('the send resolved'),
      (e) => e,
    );
    assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
    assert.deepEqual(error.ids, [null], String(error.cause));
    assert.match(error.cause.message, /connection timeout/);
  } finally {
    await stop();
  }
});

/** A permit of `limiter`, its acquire tried again while it fails (`what`: the wait, in a timeout's message). */
async function acquiredAtLast(limiter, what) {
  let permit = null;
  await eventually(
    async () =>
      (permit = await limiter.acquire(1).then(
        (p) => p,
        () => null,
      )) !== null,
    what,
    60_000,
  );
  return permit;
}

test('a fleet limiter whose connections go silent: its calls fail within callTimeout, their connections destroyed; acquires work again', async () => {
  // Two connections for calls, one for LISTEN: calls left hanging on silent connections would hold them for good.
  const { proxy, pool, stop } = await behindProxy({ max: 3 });
  const limiter = postgresLimiter({ pool, name: fresh('silent-limiter'), concurrency: 5, leaseTtl: 3000, callTimeout: 500 });
  try {
    // (Its first acquire makes the tables: on a loaded machine that may take past callTimeout, and is tried again.)
    const first = await acquiredAtLast(limiter, 'a first acquire');
    first.release();
    assert.equal(await first.released(), true);
    proxy.strand();
    const failures = [];
    for (let i = 0; i < 4; i++) {
      await limiter.acquire(1).then(
        (permit) => permit.release(),
        (error) => failures.push(error.code),
      );
    }
    assert.ok(failures.includes('ERR_VELO_POSTGRES_TIMEOUT'), failures.join());
    const granted = await acquiredAtLast(limiter, 'an acquire on new connections');
    assert.equal(granted.source, 'postgres');
    granted.release();
    assert.equal(await granted.released(), true);
  } finally {
    await limiter.close();
    await stop();
  }
});

test('a first send whose connection goes silent as it makes the tables rejects within callTimeout, nothing written; the next goes through', async () => {
  const { proxy, pool, stop } = await behindProxy({ max: 1 });
  const name = fresh('silent-prepare');
  try {
    // The pool's one connection opened, then silent: the tables are made on it at the first send.
    await pool.query('SELECT 1');
    assert.equal(proxy.strand(), 1);
    const producer = postgresProducer({ pool, name, partitions: PARTITIONS, callTimeout: 500 });
    const error = await producer.send('k', { n: 1 }).then(
      () => assert.fail('the send resolved'),
      (e) => e,
    );
    assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
    assert.deepEqual(error.ids, [null], 'nothing written');
    assert.equal(error.cause.code, 'ERR_VELO_POSTGRES_TIMEOUT');
    assert.match(await producer.send('k', { n: 2 }), /^\d+-\d+$/);
  } finally {
    await stop();
  }
});

test('a worker whose connection goes silent as it makes the tables serves on new connections', async () => {
  const { proxy, pool, direct, stop } = await behindProxy({ max: 6, direct: 2 });
  const name = fresh('silent-start');
  const errors = [];
  await pool.query('SELECT 1');
  assert.equal(proxy.strand(), 1);
  const worker = postgresWorker(echo, { pool, name, partitions: PARTITIONS, callTimeout: 500, onError: (e) => errors.push(e) });
  try {
    const producer = postgresProducer({ pool: direct, name, partitions: PARTITIONS });
    await producer.send('k', { n: 1 });
    await eventually(async () => (await outputCounts(direct, name)).k === 1, 'the output', 60_000);
    assertTimedOut(errors);
  } finally {
    await worker.close();
    await stop();
  }
});

test('a worker closed while it makes the tables on a silent connection: close() waits for that statement, nothing after', async () => {
  const { proxy, pool, stop } = await behindProxy({ max: 6 });
  const errors = [];
  await pool.query('SELECT 1');
  assert.equal(proxy.strand(), 1);
  const worker = postgresWorker(echo, {
    pool,
    name: fresh('silent-close'),
    partitions: PARTITIONS,
    callTimeout: 500,
    onError: (e) => errors.push(e),
  });
  // Its first calls wait for the tables, whose first statement is on the silent connection.
  await eventually(() => pool.totalCount === 1 && pool.idleCount === 0, 'the statement on the silent connection', 10_000);
  await worker.close();
  assert.equal(pool.totalCount - pool.idleCount, 0, 'no statement of the worker still out on a connection');
  await stop();
  const seen = errors.length;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.deepEqual(
    errors.slice(seen).map((e) => e.message),
    [],
    'no call of the worker after close() resolved',
  );
  assert.equal(
    errors.some((e) => /after calling end/.test(e.message)),
    false,
    errors.map((e) => e.message).join('\n'),
  );
});

test("making the tables waits for another process's migration past callTimeout: not cut while the server works", async () => {
  const server = await startPostgres();
  const pool = server.pool({ max: 4 });
  const holder = server.pool({ max: 1 });
  const schema = 'migrating_elsewhere';
  try {
    // Another process migrating the same schema: its advisory lock held past the producer's callTimeout.
    const other = await holder.connect();
    await other.query('SELECT pg_advisory_lock(hashtext($1))', [`velo-stream:${schema}`]);
    const producer = postgresProducer({ pool, schema, name: fresh('waits'), partitions: PARTITIONS, callTimeout: 300 });
    let settled = false;
    const sent = producer.send('k', { n: 1 }).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(settled, false, 'the send waits for the lock');
    await other.query('SELECT pg_advisory_unlock(hashtext($1))', [`velo-stream:${schema}`]);
    other.release();
    assert.match(await sent, /^\d+-\d+$/);
  } finally {
    await holder.end();
    await pool.end();
    await server.stop();
  }
});

test("node-postgres' failures to open a connection in time count as Postgres away", () => {
  for (const message of ['timeout exceeded when trying to connect', 'Connection terminated due to connection timeout']) {
    assert.equal(isConnectionError(new Error(message)), true, message);
  }
  assert.equal(isConnectionError(Object.assign(new Error('x'), { code: 'ERR_VELO_POSTGRES_TIMEOUT' })), true);
  assert.equal(isConnectionError(Object.assign(new Error('duplicate key'), { code: '23505' })), false);
});

test('callTimeout: an integer from 1 to 2^31-1 ms, or Infinity, on the worker and the producer', async () => {
  const server = await startPostgres();
  const pool = server.pool({ max: 4 });
  const name = fresh('call-timeout-options');
  try {
    for (const callTimeout of [0, -1, 1.5, 2 ** 31, NaN, '1000', null]) {
      for (const start of [
        () => postgresWorker(echo, { pool, name, callTimeout }),
        () => sessionWorker(echo, { client: pool, name, callTimeout }),
        () => postgresProducer({ pool, name, callTimeout }),
        () => sessionProducer({ client: pool, name, callTimeout }),
      ]) {
        assert.throws(start, (e) => e.code === 'ERR_OUT_OF_RANGE' && /callTimeout/.test(e.message), String(callTimeout));
      }
    }
    const worker = postgresWorker(echo, { pool, name, partitions: PARTITIONS, callTimeout: Infinity });
    const producer = postgresProducer({ pool, name, partitions: PARTITIONS, callTimeout: Infinity });
    await producer.send('k', 1);
    await eventually(() => worker.stats().outputs === 1, 'an output without a bound', 30_000);
    await worker.close();
  } finally {
    await pool.end();
    await server.stop();
  }
});
