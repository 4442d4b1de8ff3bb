// Workers sharing one pg.Pool, on a private postgres. Their waits LISTEN on one connection of the pool per process
// (shared, refcounted): as many functions as the pool has connections all run, where a LISTEN connection each
// would take every connection and starve their calls silently. A pool too small for a worker that listens (max 1)
// is refused at once (ERR_VELO_POOL_TOO_SMALL), and the shared connection goes back when the last worker closes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresLimiter, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { totals } from './helpers/redis-fixtures.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check, what, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

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
