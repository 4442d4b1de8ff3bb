// postgresWorker's close(): once it resolves, nothing of the worker runs on the user's pool, with Postgres healthy
// and with Postgres frozen (every server process SIGSTOPped) past the worker's leases, where close() stops
// waiting and reports a CloseTimeoutError naming Postgres. The pool given to the worker records each call it
// starts; the server is a private one of the test's, thawed and stopped by PID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { streamFn } from 'velo-stream';
import pg from 'pg';
import { restartablePostgres } from './helpers/postgres-suite.mjs';
import { startProxy } from './helpers/tcp-proxy.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const totals = streamFn(
  async function* (events) {
    let total = 0;
    for await (const e of events) yield (total += e);
  },
  { idleTimeout: 60_000 },
);

/** A pool over `real` that notes each call the worker starts on it (and on the clients it checks out) after `since()`. */
function recordingPool(real, since) {
  const late = [];
  const note = (what, config) => {
    if (since() !== 0) late.push(`${what}: ${String(config?.text ?? config).slice(0, 60)}`);
  };
  return {
    late,
    pool: {
      query: (...args) => {
        note('pool.query', args[0]);
        return real.query(...args);
      },
      connect: async () => {
        note('pool.connect', '');
        const client = await real.connect();
        const query = client.query.bind(client);
        client.query = (...args) => {
          note('client.query', args[0]);
          return query(...args);
        };
        return client;
      },
    },
  };
}

/**
 * What a close() past its deadline is watched by: the worker's pool over a real one (`late`: the calls after
 * `closed()`), the reports before and after, and unhandled rejections (`dispose()` stops listening for them).
 */
function closeWatch(server) {
  let closedAt = 0;
  const real = server.pool();
  const { late, pool } = recordingPool(real, () => closedAt);
  const errors = [];
  const lateErrors = [];
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  return {
    real,
    pool,
    late,
    errors,
    lateErrors,
    unhandled,
    onError: (error) => (closedAt === 0 ? errors : lateErrors).push(error),
    closed: () => (closedAt = Date.now()),
    dispose: () => process.off('unhandledRejection', onUnhandled),
  };
}

/** The server's processes: the postmaster and its children. */
function serverPids(pid) {
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((n) => n > 0);
  return [pid, ...children];
}

async function started(server, schema, pool, onError) {
  const worker = postgresWorker(totals, { pool, schema, name: 'totals', partitions: 4, leaseTtl: 1500, onError });
  const producer = postgresProducer({ pool: server.pool({ max: 2 }), schema, name: 'totals', partitions: 4 });
  for (let i = 0; i < 8; i++) await producer.send(`k${i}`, 1);
  const deadline = Date.now() + 60_000;
  while (worker.stats().outputs < 8) {
    if (Date.now() > deadline) assert.fail('the worker never made its outputs');
    await sleep(20);
  }
  return worker;
}

test('close() with Postgres healthy: once it resolves, the worker starts nothing on the pool', async () => {
  const server = await restartablePostgres();
  try {
    let closedAt = 0;
    const { late, pool } = recordingPool(server.pool(), () => closedAt);
    const errors = [];
    const worker = await started(server, 'close_calm', pool, (error) => errors.push(error));
    await worker.close();
    closedAt = Date.now();
    await sleep(3000);
    assert.deepEqual(late, []);
    assert.deepEqual(errors, []);
  } finally {
    await server.stop();
  }
});

test('close() with Postgres frozen past the leases: a CloseTimeoutError naming Postgres, and nothing started on the pool after close() resolved, also once Postgres answers again', async () => {
  const server = await restartablePostgres();
  let frozen = [];
  try {
    let closedAt = 0;
    const { late, pool } = recordingPool(server.pool(), () => closedAt);
    const errors = [];
    const worker = await started(server, 'close_frozen', pool, (error) => errors.push(error));
    frozen = serverPids(server.pid);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    await worker.close();
    closedAt = Date.now();
    const timeouts = errors.filter((e) => e?.code === 'ERR_VELO_CLOSE_TIMEOUT');
    assert.equal(timeouts.length, 1, `errors: ${errors.map((e) => e?.code ?? e)}`);
    assert.match(timeouts[0].message, /Postgres did not answer/);
    assert.doesNotMatch(timeouts[0].message, /Redis/);
    await sleep(500);
    for (const pid of frozen.splice(0)) process.kill(pid, 'SIGCONT');
    // What was in flight when it froze gets its answers now: nothing new may follow them.
    await sleep(4000);
    assert.deepEqual(late, []);
  } finally {
    for (const pid of frozen) process.kill(pid, 'SIGCONT');
    await server.stop();
  }
});

test('close() past its deadline (a handler that does not finish), then pool.end(): no call on the ended pool, no error, no unhandled rejection', async () => {
  const server = await restartablePostgres();
  const { real, pool, late, errors, lateErrors, unhandled, onError, closed, dispose } = closeWatch(server);
  try {
    let slowStarted = false;
    const slow = streamFn(
      async function* (events) {
        for await (const e of events) {
          if (e === 'slow') {
            slowStarted = true;
            // Longer than the lease: close() stops waiting for it at its deadline.
            await sleep(4000);
          }
          yield e;
        }
      },
      { idleTimeout: 60_000 },
    );
    const worker = postgresWorker(slow, { pool, schema: 'close_slow', name: 'slow', partitions: 2, leaseTtl: 1500, onError });
    const producer = postgresProducer({ pool: server.pool({ max: 2 }), schema: 'close_slow', name: 'slow', partitions: 2 });
    await producer.sendMany([
      ['a', 'fast'],
      ['b', 'fast'],
      ['c', 'slow'],
    ]);
    const deadline = Date.now() + 60_000;
    while (!slowStarted || worker.stats().outputs < 2) {
      if (Date.now() > deadline) assert.fail('the worker never started its handlers');
      await sleep(20);
    }
    await worker.close();
    closed();
    // As the docs say: the pool is the user's to end once close() resolved.
    await real.end();
    assert.deepEqual(
      errors.map((e) => e?.code),
      ['ERR_VELO_CLOSE_TIMEOUT'],
    );
    // The slow handler finishes meanwhile: its partition's graceful hand-back, dropped at the deadline, sends nothing.
    await sleep(5000);
    assert.deepEqual(late, []);
    assert.deepEqual(
      lateErrors.map((e) => e?.message ?? e),
      [],
    );
    assert.deepEqual(unhandled, []);
  } finally {
    dispose();
    await server.stop();
  }
});

test('close() past its deadline while an effects statement runs: its connection destroyed, the commit rolled back and made once by the next worker; nothing on the pool after close()', async () => {
  const server = await restartablePostgres();
  const { real, pool, late, errors, lateErrors, unhandled, onError, closed, dispose } = closeWatch(server);
  const direct = server.pool({ max: 2 });
  try {
    await direct.query('CREATE TABLE close_ledger (key text, n int)');
    let sleeping = false;
    const options = { schema: 'close_effects', name: 'totals', partitions: 2 };
    const worker = postgresWorker(totals, {
      ...options,
      leaseTtl: 1500,
      pool,
      onError,
      effects: async (tx, outputs) => {
        sleeping = true;
        // Longer than the lease: close() stops waiting for it at its deadline.
        await tx.query('SELECT pg_sleep(8)');
        for (const o of outputs) await tx.query('INSERT INTO close_ledger VALUES ($1, $2)', [o.key, o.value]);
      },
    });
    const producer = postgresProducer({ ...options, pool: direct });
    await producer.send('k', 5);
    const deadline = Date.now() + 60_000;
    while (!sleeping) {
      if (Date.now() > deadline) assert.fail('the effects never started');
      await sleep(20);
    }
    await worker.close();
    closed();
    assert.deepEqual(
      errors.map((e) => e?.code),
      ['ERR_VELO_CLOSE_TIMEOUT'],
      errors.map((e) => e?.message).join('\n'),
    );
    assert.equal(real.totalCount - real.idleCount, 0, 'no connection of the worker still out');
    // As the docs say: the pool is the user's to end once close() resolved.
    await real.end();
    await sleep(2000);
    assert.deepEqual(late, []);
    assert.deepEqual(
      lateErrors.map((e) => e?.message ?? e),
      [],
    );
    assert.deepEqual((await direct.query('SELECT key, n FROM close_ledger')).rows, [], 'the cut commit rolled back');
    // The next worker commits the output and its effects once.
    const next = postgresWorker(totals, {
      ...options,
      pool: server.pool(),
      effects: async (tx, outputs) => {
        for (const o of outputs) await tx.query('INSERT INTO close_ledger VALUES ($1, $2)', [o.key, o.value]);
      },
    });
    try {
      const until = Date.now() + 60_000;
      while ((await direct.query('SELECT count(*)::int AS n FROM close_ledger')).rows[0].n < 1) {
        if (Date.now() > until) assert.fail('the next worker never committed');
        await sleep(50);
      }
    } finally {
      await next.close();
    }
    assert.deepEqual((await direct.query('SELECT key, n FROM close_ledger')).rows, [{ key: 'k', n: 5 }]);
    assert.deepEqual(unhandled, []);
  } finally {
    dispose();
    await direct.end();
    await server.stop();
  }
});

/** A worker on a pool through a proxy (`pool`), serving `totals` on 2 partitions of `schema`, its first output made. */
async function behindProxy(server, schema, workerOptions, poolOptions = {}) {
  const proxy = await startProxy(server.port);
  const pool = new pg.Pool({ ...server.config, port: proxy.port, max: 6, ...poolOptions });
  pool.on('error', () => {});
  const errors = [];
  const worker = postgresWorker(totals, {
    pool,
    schema,
    name: 'totals',
    partitions: 2,
    leaseTtl: 1500,
    onError: (e) => errors.push(e),
    ...workerOptions,
  });
  const direct = server.pool({ max: 2 });
  await postgresProducer({ pool: direct, schema, name: 'totals', partitions: 2 }).send('k', 1);
  const deadline = Date.now() + 60_000;
  while (worker.stats().outputs < 1) {
    if (Date.now() > deadline) assert.fail('the worker never made its output');
    await sleep(20);
  }
  return { proxy, pool, worker, direct, errors };
}

test('close() with callTimeout Infinity on connections gone silent: past its deadline they are destroyed, none left out of the pool', async () => {
  const server = await restartablePostgres();
  const { proxy, pool, worker, direct } = await behindProxy(server, 'close_infinity', { callTimeout: Infinity });
  try {
    proxy.strand();
    // Its renewals, waits and heartbeats meet the silent connections, with no bound.
    await sleep(1000);
    await worker.close();
    assert.equal(pool.totalCount - pool.idleCount, 0, 'no connection of the worker still out');
    await pool.end();
  } finally {
    await direct.end();
    await proxy.stop();
    await server.stop();
  }
});

test('close() while the pool opens connections it cannot finish (no connectionTimeoutMillis): it resolves, and what was queued for them starts nothing once they open', async () => {
  const server = await restartablePostgres();
  const { proxy, pool, worker, direct } = await behindProxy(server, 'close_opening', { callTimeout: 500 });
  try {
    // Its connections go silent (cut at callTimeout) and new ones open no further than the proxy.
    proxy.hold();
    proxy.strand();
    await sleep(1500);
    await worker.close();
    const registered = async () =>
      (await direct.query('SELECT count(*)::int AS n FROM close_opening.workers WHERE until_ms > 0')).rows[0].n;
    const before = await registered();
    // The connections open now: a statement queued for one before close() would run (a heartbeat registering the
    // closed worker again, a renewal, a poll).
    proxy.heal();
    // (Each opening connection is handed over, then destroyed or given back: none stays out.)
    const until = Date.now() + 30_000;
    while (pool.totalCount - pool.idleCount > 0) {
      if (Date.now() > until) assert.fail(`${pool.totalCount - pool.idleCount} connection(s) of the worker still out`);
      await sleep(50);
    }
    await sleep(500);
    assert.ok((await registered()) <= before, 'the closed worker did not register again');
    await pool.end();
  } finally {
    await direct.end();
    await proxy.stop();
    await server.stop();
  }
});
