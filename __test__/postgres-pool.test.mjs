// Workers sharing one pg.Pool, on a private postgres. Their waits LISTEN on one connection of the pool per process
// (shared, refcounted): as many functions as the pool has connections all run, where a LISTEN connection each
// would take every connection and starve their calls silently. A pool too small for a worker that listens (max 1)
// is refused at once (ERR_VELO_POOL_TOO_SMALL), and the shared connection goes back when the last worker closes.
// Every wait of velo-stream for a connection of an exhausted pool (the app's own calls holding them all) is reported
// once per episode (ERR_VELO_POOL_EXHAUSTED), through the workers' onError or as a process warning, and the calls
// go on once a connection is free. One connection (a pg.Client) given as the pool is refused (ERR_VELO_NOT_A_POOL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { postgresLimiter, postgresOutputs, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { eventually, totals } from './helpers/redis-fixtures.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';
import { keyOutputs } from 'velo-stream/durable';

usePostgres();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const until = (check, what, ms = 60_000) => eventually(check, what, ms);

async function listening(schema) {
  const { rows } = await pool().query(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN %' AND usename = current_user AND pid <> pg_backend_pid()`,
  );
  void schema;
  return rows[0].n;
}

test('as many functions as the pool has connections: every one runs, on one LISTEN connection', async () => {
  const schema = 'velo_shared_pool';
  const F = 4;
  const shared = postgres.pool({ max: F });
  const names = Array.from({ length: F }, (_, i) => `fn${i}`);
  // The schema and the functions' rows made first (so that the workers start together on them).
  for (const name of names) await postgresProducer({ pool: pool(), schema, name, partitions: 2 }).send('warm', { n: 0 });
  const errors = [];
  const workers = names.map((name) =>
    postgresWorker(totals({ idleTimeout: 0 }), {
      pool: shared,
      schema,
      name,
      partitions: 2,
      leaseTtl: 4000,
      onError: (error) => errors.push(error),
    }),
  );
  try {
    for (const name of names) await postgresProducer({ pool: pool(), schema, name, partitions: 2 }).send('a', { n: 1 });
    await until(async () => {
      const { rows } = await pool().query(`SELECT count(DISTINCT fn)::int AS n FROM ${schema}.outputs WHERE key = 'a'`);
      return rows[0].n === F;
    }, `outputs of all ${F} functions`);
    assert.ok((await listening(schema)) <= 1, 'one LISTEN connection for the pool');
    assert.deepEqual(
      errors.map((e) => e.code),
      [],
    );
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
  // The last worker closed: the shared LISTEN connection is given up (destroyed).
  await until(async () => (await listening(schema)) === 0, 'the LISTEN connection to go', 10_000);
});

test('a pool of one connection for a worker that listens: refused at once, ERR_VELO_POOL_TOO_SMALL; without listen it runs', async () => {
  const small = postgres.pool({ max: 1 });
  const options = { pool: small, schema: 'velo_small_pool', name: 'tot', partitions: 1, leaseTtl: 2000 };
  assert.throws(() => postgresWorker(totals(), options), { code: 'ERR_VELO_POOL_TOO_SMALL', message: /max/ });
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), { ...options, listen: false, onError: (e) => errors.push(e) });
  try {
    await postgresProducer({ pool: pool(), schema: options.schema, name: 'tot', partitions: 1 }).send('a', { n: 1 });
    await until(async () => {
      const { rows } = await pool().query(`SELECT count(*)::int AS n FROM velo_small_pool.outputs`);
      return rows[0].n === 1;
    }, 'the output');
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test('a pool of one connection for a limiter that listens: refused at once, ERR_VELO_POOL_TOO_SMALL; without listen it grants and releases', async () => {
  const small = postgres.pool({ max: 1 });
  const options = { pool: small, name: 'small-pool', concurrency: 1, leaseTtl: 2000 };
  assert.throws(() => postgresLimiter(options), { code: 'ERR_VELO_POOL_TOO_SMALL', message: /limiter/ });
  const limiter = postgresLimiter({ ...options, listen: false });
  try {
    const permit = await limiter.acquire('a');
    assert.equal(permit.source, 'postgres');
    const waiting = limiter.acquire('b');
    permit.release();
    assert.equal(await permit.released(), true);
    (await waiting).release();
  } finally {
    await limiter.close();
  }
});

/** The outputs of `schema` for key `key`. */
async function outputsOf(schema, key) {
  const { rows } = await pool().query(`SELECT count(*)::int AS n FROM ${schema}.outputs WHERE key = $1`, [key]);
  return rows[0].n;
}

test("a worker's calls on a pool the app holds every connection of: reported once per episode (ERR_VELO_POOL_EXHAUSTED), and it goes on", async () => {
  const schema = 'velo_exhausted';
  const app = postgres.pool({ max: 2 });
  const shared = { schema, name: 'tot', partitions: 2 };
  await postgresProducer({ pool: pool(), ...shared }).send('warm', { n: 0 });
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    pool: app,
    ...shared,
    leaseTtl: 60_000,
    onError: (error) => errors.push(error),
  });
  const exhausted = () => errors.filter((e) => e.code === 'ERR_VELO_POOL_EXHAUSTED');
  const reader = postgresOutputs({ pool: app, ...shared, from: 'end', pollInterval: 50 })[Symbol.asyncIterator]();
  const held = [];
  try {
    await until(async () => worker.stats().owned.length === 2 && (await listening(schema)) === 1, 'the partitions and LISTEN');
    // (The reader starts at the end once the event sent before the worker has its output: the next one is 'a'.)
    await until(async () => (await outputsOf(schema, 'warm')) === 1, 'the output of the event sent before');
    const read = reader.next();
    // The app takes the pool's other connection: the LISTEN connection holds one, so the worker's renewals, its
    // waits' polls, the reader's polls and a send all wait for it.
    held.push(await app.connect());
    const sent = postgresProducer({ pool: app, ...shared }).send('a', { n: 1 });
    await until(() => exhausted().length > 0, 'the report', 30_000);
    assert.match(exhausted()[0].message, /no connection for 10000 ms \(max 2, 2 open, 0 idle, [1-9]\d* waiting\)/);
    // Once per episode: the calls still waiting (polls every 50 ms and 200 ms) report nothing more.
    await sleep(3000);
    assert.equal(exhausted().length, 1);
    held.pop().release();
    await sent;
    await until(async () => (await outputsOf(schema, 'a')) === 1, 'the output of the send that waited');
    assert.equal((await read).value.key, 'a');
    // A second episode is reported again.
    await sleep(500);
    held.push(await app.connect());
    await until(() => exhausted().length === 2, 'the second report', 30_000);
    held.pop().release();
    await postgresProducer({ pool: app, ...shared }).send('a', { n: 2 });
    await until(async () => (await outputsOf(schema, 'a')) === 2, 'the output after the second episode');
    assert.deepEqual(
      errors.filter((e) => e.code !== 'ERR_VELO_POOL_EXHAUSTED'),
      [],
    );
    assert.deepEqual(worker.stats().owned.length, 2);
  } finally {
    for (const client of held) client.release();
    await reader.return();
    await worker.close();
  }
});

test('a send alone on an exhausted pool: reported as a process warning (ERR_VELO_POOL_EXHAUSTED), then written', async () => {
  const app = postgres.pool({ max: 1 });
  const shared = { pool: app, schema: 'velo_exhausted_send', name: 'tot', partitions: 1 };
  const producer = postgresProducer(shared);
  await producer.send('warm', { n: 0 });
  // (The warning is taken where it is emitted, so that the test's stderr stays clean.)
  const warnings = [];
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning) => warnings.push(warning);
  const held = await app.connect();
  let released = false;
  try {
    const sent = producer.send('a', { n: 1 });
    await until(() => warnings.some((w) => w.code === 'ERR_VELO_POOL_EXHAUSTED'), 'the warning', 30_000);
    held.release();
    released = true;
    assert.match(await sent, /^\d+-\d+$/);
  } finally {
    if (!released) held.release();
    process.emitWarning = emitWarning;
  }
  assert.equal(warnings.filter((w) => w.code === 'ERR_VELO_POOL_EXHAUSTED').length, 1);
});

test('one connection is not a pool: a pg.Client or a checked-out client refused (ERR_VELO_NOT_A_POOL); a plain object ERR_INVALID_ARG_TYPE; a wrapper of a pool runs', async () => {
  const shared = { schema: 'velo_not_a_pool', name: 'tot', partitions: 1 };
  const client = new pg.Client(postgres.config);
  const checkedOut = await pool().connect();
  try {
    for (const [given, code] of [
      [client, 'ERR_VELO_NOT_A_POOL'],
      [checkedOut, 'ERR_VELO_NOT_A_POOL'],
      [{}, 'ERR_INVALID_ARG_TYPE'],
      [{ query: () => {} }, 'ERR_INVALID_ARG_TYPE'],
    ]) {
      const options = { ...shared, pool: given };
      assert.throws(() => postgresWorker(totals(), options), { code }, code);
      assert.throws(() => postgresProducer(options), { code });
      assert.throws(() => postgresOutputs(options), { code });
      assert.throws(() => postgresLimiter({ pool: given, name: 'one', concurrency: 1 }), { code });
    }
    assert.throws(() => postgresProducer({ ...shared, pool: client }), {
      message: /single connection \(a pg\.Client, or a client checked out of a pool\), not a pool/,
    });
  } finally {
    checkedOut.release();
  }
  // A wrapper that hands its one connection out (a Client, with no release()): refused at its first transaction.
  const wrapped = new pg.Client(postgres.config);
  await wrapped.connect();
  const fake = { query: (...a) => wrapped.query(...a), connect: async () => wrapped };
  await assert.rejects(postgresProducer({ ...shared, pool: fake }).send('a', { n: 1 }), (error) => {
    assert.equal(error.cause?.code ?? error.code, 'ERR_VELO_NOT_A_POOL');
    return true;
  });
  await wrapped.end().catch(() => {});
  // A pool-like wrapper (no counts, no options): accepted, and a worker runs on it.
  const p = postgres.pool({ max: 4 });
  const wrapper = { query: (...a) => p.query(...a), connect: () => p.connect() };
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), { ...shared, pool: wrapper, onError: (e) => errors.push(e) });
  try {
    await postgresProducer({ ...shared, pool: wrapper }).send('a', { n: 1 });
    await until(async () => (await outputsOf(shared.schema, 'a')) === 1, 'the output through the wrapper');
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test("a pool of pg.native's clients is refused at its first transaction (ERR_INVALID_ARG_VALUE); nothing is sent on them", async () => {
  const shared = { schema: 'velo_native_pool', name: 'tot', partitions: 1 };
  const p = postgres.pool({ max: 4 });
  // pg.native's client talks through libpq (`client.native`): these stand in for its clients and count what they are
  // sent; the pool's own query() (a statement on a connection it picks) goes to node-postgres' clients.
  let sent = 0;
  let released = 0;
  const native = {
    query: (...a) => p.query(...a),
    connect: async () => ({
      native: { query() {} },
      query: async () => {
        sent++;
        throw new Error('sent on a native client');
      },
      release: () => void released++,
      on() {},
      off() {},
      removeListener() {},
    }),
  };
  const refused = (error) => {
    const e = error.cause ?? error;
    assert.equal(e.code, 'ERR_INVALID_ARG_VALUE');
    assert.match(e.message, /pg\.native's \(libpq\), which velo-stream does not support/);
    return true;
  };
  await assert.rejects(postgresProducer({ ...shared, pool: native }).sendMany([['a', { n: 1 }]]), refused);
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), { ...shared, pool: native, onError: (e) => errors.push(e) });
  try {
    await until(async () => errors.length > 0, 'the worker reports the refusal');
    refused(errors[0]);
  } finally {
    await worker.close().catch(() => {});
  }
  assert.equal(sent, 0, 'no statement sent on a native client');
  assert.ok(released >= 2, `each native client given back (${released})`);
  // node-postgres' own clients run as before.
  await postgresProducer({ ...shared, pool: p }).sendMany([['a', { n: 1 }]]);
});

test('a connection the server ends as the pool hands it over: its error is heard (no crash), the call retried', async () => {
  const shared = { schema: 'velo_handover', name: 'tot', partitions: 1 };
  const p = postgres.pool({ max: 4 });
  await postgresProducer({ ...shared, pool: p }).sendMany([
    ['a', { n: 1 }],
    ['a', { n: 2 }],
  ]);
  // pg.Pool hands a new connection over within the read that made it ready; the server's FATAL may come in the same
  // read, before any promise's continuation runs. This pool does that to its first checkout (the worker's first
  // transaction).
  let ended = 0;
  // (A class of its own, as pg.Pool is: velo-stream takes a connect() of the pool's class as pg.Pool's.)
  class EndingPool {
    query(...a) {
      return p.query(...a);
    }
    connect(callback) {
      // (Both of pg.Pool's forms: a callback, or a promise.)
      if (callback === undefined) return new Promise((resolve, reject) => this.connect((e, c) => (e ? reject(e) : resolve(c))));
      p.connect((error, client, release) => {
        callback(error, client, release);
        if (!error && ended++ === 0) {
          const fatal = new Error('terminating connection due to administrator command');
          Object.assign(fatal, { code: '57P01', severity: 'FATAL' });
          client.emit('error', fatal);
        }
      });
    }
  }
  const ending = new EndingPool();
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), { ...shared, pool: ending, onError: (e) => errors.push(e) });
  try {
    await until(async () => (await outputsOf(shared.schema, 'a')) === 2, 'both outputs, after the first commit failed');
  } finally {
    await worker.close();
  }
  assert.equal(ended, 1);
  for (const e of errors) assert.equal(typeof (e.cause?.code ?? e.code), 'string', String(e));
});

test('a pool ended before its worker and producer were closed: each failure reported ERR_VELO_POOL_ENDED, a send rejected with nothing written', async () => {
  const schema = 'velo_pool_ended';
  const app = postgres.pool({ max: 4 });
  const shared = { pool: app, schema, name: 'tot', partitions: 2 };
  const errors = [];
  const producer = postgresProducer(shared);
  await producer.send('warm', { n: 0 });
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    ...shared,
    leaseTtl: 1000,
    onError: (error) => errors.push(error),
  });
  try {
    await until(async () => (await outputsOf(schema, 'warm')) === 1, 'the output of the first event');
    // The wrong order: the pool first. (Its end() waits for the connections the worker holds.)
    const ended = app.end();
    await until(() => errors.length > 0, 'a report');
    for (const error of errors) {
      assert.equal(error.code, 'ERR_VELO_POOL_ENDED', String(error));
      assert.match(error.cause.message, /Cannot use a pool after calling end on the pool/);
    }
    for (const send of [
      () => producer.send('a', { n: 1 }),
      () =>
        producer.sendMany([
          ['a', { n: 1 }],
          ['b', { n: 2 }],
        ]),
    ]) {
      const error = await send().then(
        () => assert.fail('sent on an ended pool'),
        (e) => e,
      );
      assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
      assert.equal(error.cause.code, 'ERR_VELO_POOL_ENDED');
      assert.match(error.message, /pool was ended/);
      assert.ok(
        error.ids.every((id) => id === null),
        'nothing written',
      );
    }
    await worker.close();
    await ended;
  } finally {
    await worker.close();
  }
});

test('readers whose pool is ended under them reject with ERR_VELO_POOL_ENDED', async () => {
  const schema = 'velo_pool_ended_readers';
  const app = postgres.pool({ max: 4 });
  const shared = { pool: app, schema, name: 'tot', partitions: 2 };
  await postgresProducer(shared).send('k', { n: 1 });
  const loop = async (outputs) => {
    try {
      for await (const output of outputs) void output;
      return 'ended';
    } catch (error) {
      return error;
    }
  };
  const all = loop(postgresOutputs(shared));
  const one = loop(keyOutputs({ client: app, schema, name: 'tot', partitions: 2, key: 'k' }));
  await sleep(300);
  await app.end();
  for (const error of [await all, await one]) {
    assert.equal(error?.code, 'ERR_VELO_POOL_ENDED', String(error));
    assert.match(error.cause.message, /Cannot use a pool after calling end on the pool/);
  }
});

test('with connectionTimeoutMillis, a wait for a connection of a full pool is reported ERR_VELO_POOL_EXHAUSTED, not a connection failure', async () => {
  const schema = 'velo_exhausted_timeout';
  const app = postgres.pool({ max: 2, connectionTimeoutMillis: 500 });
  const shared = { schema, name: 'tot', partitions: 2 };
  await postgresProducer({ pool: pool(), ...shared }).send('warm', { n: 0 });
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    pool: app,
    ...shared,
    leaseTtl: 60_000,
    onError: (error) => errors.push(error),
  });
  const held = [];
  try {
    await until(async () => worker.stats().owned.length === 2 && (await listening(schema)) === 1, 'the partitions and LISTEN');
    await until(async () => (await outputsOf(schema, 'warm')) === 1, 'the output of the event sent before');
    // The app takes the connection the LISTEN one leaves: the worker's calls wait past the pool's timeout.
    held.push(await app.connect());
    await until(() => errors.length > 0, 'a report', 30_000);
    for (const error of errors) {
      assert.equal(error.code, 'ERR_VELO_POOL_EXHAUSTED', String(error));
      assert.equal(error.cause.message, 'timeout exceeded when trying to connect');
    }
    held.pop().release();
    await postgresProducer({ pool: app, ...shared }).send('a', { n: 1 });
    await until(async () => (await outputsOf(schema, 'a')) === 1, 'the output after the pool had room again');
  } finally {
    for (const client of held) client.release();
    await worker.close();
  }
});
