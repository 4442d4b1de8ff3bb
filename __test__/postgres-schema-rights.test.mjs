// What `migrate()` asks of the role it runs as, and a schema renamed under its workers, on a private postgres. Once
// an admin has migrated the schema, a role with only DML and EXECUTE rights on its tables and functions runs workers
// and producers (no DDL: CREATE ... IF NOT EXISTS needs CREATE rights even as a no-op). A schema renamed after it
// was made is refused (ERR_VELO_SCHEMA_VERSION): its functions' bodies name the old schema, and a worker on the new
// name would write the old one's rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { eventually, totals } from './helpers/redis-fixtures.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const until = (check, what, ms = 30_000) => eventually(check, what, ms);

test('a role with only DML and EXECUTE rights runs a producer and a worker on a schema an admin migrated', async () => {
  const schema = 'velo_rights';
  const shared = { schema, name: 'totals', partitions: 2 };
  await postgresProducer({ pool: pool(), ...shared }).send('x', { n: 0, amount: 0 });
  await pool().query(`DROP ROLE IF EXISTS velo_app; CREATE ROLE velo_app LOGIN;
    GRANT USAGE ON SCHEMA ${schema} TO velo_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO velo_app;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ${schema} TO velo_app;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ${schema} TO velo_app`);
  const app = postgres.pool({ max: 6, user: 'velo_app' });
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    pool: app,
    ...shared,
    leaseTtl: 2000,
    onError: (error) => errors.push(error),
  });
  try {
    await postgresProducer({ pool: app, ...shared }).send('a', { n: 1, amount: 5 });
    await until(async () => {
      const { rows } = await pool().query(`SELECT count(*)::int AS n FROM ${schema}.outputs`);
      return rows[0].n >= 2 || errors.length > 0;
    }, 'the outputs');
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test('a schema renamed after it was made: refused with ERR_VELO_SCHEMA_VERSION, the old name never written', async () => {
  const shared = { pool: pool(), name: 'totals', partitions: 1 };
  await postgresProducer({ ...shared, schema: 'velo_ren_old' }).send('a', { n: 0, amount: 1 });
  await pool().query('ALTER SCHEMA velo_ren_old RENAME TO velo_ren_new');
  // The old name made again by another process of the app.
  await postgresProducer({ ...shared, schema: 'velo_ren_old' }).send('b', { n: 0, amount: 1 });
  await assert.rejects(postgresProducer({ ...shared, schema: 'velo_ren_new' }).send('a', { n: 1, amount: 1 }), (error) => {
    assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
    assert.equal(error.cause?.code, 'ERR_VELO_SCHEMA_VERSION');
    // What was found, in words and in `found`: the schema's version, made under the old name.
    const [, version] = /^Postgres schema "velo_ren_new" was renamed: found a schema at version (\d+) made as "velo_ren_old" \(its function \w+ writes schema "velo_ren_old"\)/.exec(error.cause.message) ?? [];
    assert.ok(version !== undefined, error.cause.message);
    assert.equal(error.cause.found, Number(version));
    assert.ok(error.cause.found >= 4 && error.cause.found <= error.cause.expected, `found ${error.cause.found}`);
    return true;
  });
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    ...shared,
    schema: 'velo_ren_new',
    leaseTtl: 1000,
    onError: (error) => errors.push(error),
  });
  try {
    await until(() => errors.length > 0, 'the refusal');
    assert.equal(errors[0].code, 'ERR_VELO_SCHEMA_VERSION');
    assert.match(errors[0].message, /renamed: found a schema at version \d+ made as "velo_ren_old"/);
    assert.equal(errors[0].found, errors[0].expected);
    assert.deepEqual(worker.stats().owned, []);
  } finally {
    await worker.close();
  }
  const { rows } = await pool().query(`SELECT count(*)::int AS n FROM velo_ren_old.leases WHERE token IS NOT NULL`);
  assert.equal(rows[0].n, 0);
});
