// Upgrading the Postgres schema under running workers (docs/postgres.md#upgrading), on a private postgres. A release
// that migrates the schema past what the workers registered on it stay correct beside (version 3, the read position
// in a row of its own) refuses while they run, with ERR_VELO_SCHEMA_VERSION: its worker reports it and takes no
// partition, its producer rejects, the schema stays as it was; once the older workers are gone it migrates, and the
// read position carries over. A schema a newer release migrated is run on only if that release keeps this one's
// workers (`migrations.keeps`), and a worker whose schema was migrated past it under its feet takes no partition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { PgLog, appendEventsPg, preparePg } from '#testing';
import { eventually, totals } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const require = createRequire(import.meta.url);
const { migrate, SCHEMA_VERSION } = require('../dist/postgres/log/schema.js');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const schemaError = (found, live) => ({ code: 'ERR_VELO_SCHEMA_VERSION', found, expected: SCHEMA_VERSION, ...live });

const until = (check, what, ms = 20_000) => eventually(check, what, ms);

async function versionOf(schema) {
  const { rows } = await pool().query(`SELECT max(version)::int AS v FROM ${schema}.migrations`);
  return rows[0].v;
}

test('a worker of this release on a version 2 schema with older workers registered: refused loudly, nothing migrated; it migrates once they are gone, the read position carried over', async () => {
  const schema = 'velo_upgrade';
  const name = 'totals';
  // The schema as the release of version 2 left it, with one of its workers running: the function's rows, an entry
  // its worker read (the position in groups.delivered_*), one it did not, and the worker's registration.
  await migrate(pool(), schema, 2);
  for (const table of ['leases', 'heads', 'groups']) {
    await pool().query(`INSERT INTO ${schema}.${table} (fn, p) VALUES ($1, 0)`, [name]);
  }
  const e = (n) => Buffer.from(JSON.stringify({ n }));
  await pool().query(
    `INSERT INTO ${schema}.entries (fn, p, ms, seq, key, payload) VALUES ($1, 0, 1000, 0, 'k', $2), ($1, 0, 2000, 0, 'k', $3)`,
    [name, e(1), e(2)],
  );
  await pool().query(`UPDATE ${schema}.heads SET last_ms = 2000 WHERE fn = $1`, [name]);
  await pool().query(`UPDATE ${schema}.groups SET delivered_ms = 1000 WHERE fn = $1`, [name]);
  await pool().query(`INSERT INTO ${schema}.workers (fn, worker, until_ms, advert) VALUES ($1, 'old-1', $2, '')`, [
    name,
    Date.now() + 60_000,
  ]);

  const shared = { pool: pool(), schema, name, partitions: 1 };
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    ...shared,
    leaseTtl: 1000,
    onError: (error) => errors.push(error),
  });
  const producer = postgresProducer(shared);
  try {
    await until(() => errors.length > 0, 'the refusal');
    assert.equal(errors[0].code, 'ERR_VELO_SCHEMA_VERSION');
    assert.deepEqual(
      { found: errors[0].found, expected: errors[0].expected, live: errors[0].live },
      {
        found: 2,
        expected: SCHEMA_VERSION,
        live: [`old-1 (${name})`],
      },
    );
    assert.match(errors[0].message, /workers of an older release run on it: old-1 \(totals\).*stop them first.*#upgrading/s);
    // (A producer's SendError, nothing written, with the refusal as its cause.)
    await assert.rejects(producer.send('k', { n: 3 }), (error) => {
      assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
      assert.deepEqual(error.ids, [null]);
      assert.deepEqual(error.cause.live, [`old-1 (${name})`]);
      assert.equal(error.cause.code, 'ERR_VELO_SCHEMA_VERSION');
      return true;
    });
    await sleep(500);
    assert.deepEqual(worker.stats().owned, [], 'no partition taken');
    assert.equal(await versionOf(schema), 2, 'nothing migrated');
    const { rows } = await pool().query(`SELECT to_regclass('${schema}.cursors') AS t`);
    assert.equal(rows[0].t, null);

    // The older worker stops (a close removes its registration): the worker migrates at its next call, and takes
    // the partition from the old position: the entry the older worker read is not delivered again.
    await pool().query(`DELETE FROM ${schema}.workers WHERE worker = 'old-1'`);
    await until(() => worker.stats().owned.length === 1, 'the partition taken');
    assert.equal(await versionOf(schema), SCHEMA_VERSION);
    await until(() => worker.stats().outputs === 1, 'the undelivered entry handled');
    await sleep(300);
    assert.equal(worker.stats().outputs, 1, 'the entry delivered before the upgrade is not delivered again');
    await producer.send('k', { n: 3 });
    await until(() => worker.stats().outputs === 2, 'a new event handled');
  } finally {
    await worker.close();
  }
});

test('from version 3 a migration that keeps version 3 goes on under its workers; a newer schema is run on only if it keeps this release, and a worker whose schema went past it takes no partition', async () => {
  const schema = 'velo_keeps';
  await migrate(pool(), schema, 3);
  await pool().query(`INSERT INTO ${schema}.workers (fn, worker, until_ms, advert) VALUES ('f', 'v3-1', $1, '')`, [
    Date.now() + 60_000,
  ]);
  // Version 4 keeps version 3's workers: applied although one is registered.
  const space = await preparePg(pool(), schema, 'f', 2);
  assert.equal(await versionOf(schema), SCHEMA_VERSION);
  const { rows } = await pool().query(`SELECT version, keeps FROM ${schema}.migrations WHERE version = 4`);
  assert.deepEqual(rows, [{ version: 4, keeps: 3 }]);

  const log = new PgLog(pool(), space, 2);
  await appendEventsPg(pool(), space, 0, [['k', Buffer.from('{}')]]);
  assert.equal((await log.acquire(0, 'w', 1000)).token, 'w:1');
  // A newer release's version that keeps this one's workers: this release runs on it.
  await pool().query(`INSERT INTO ${schema}.migrations (version, keeps) VALUES ($1, $2)`, [SCHEMA_VERSION + 1, SCHEMA_VERSION]);
  assert.equal(await migrate(pool(), schema), SCHEMA_VERSION + 1);
  assert.equal((await log.acquire(1, 'w', 1000)).token, 'w:1');
  // One that does not: refused at the start, and a worker already running takes no partition.
  await pool().query(`INSERT INTO ${schema}.migrations (version, keeps) VALUES ($1, $1)`, [SCHEMA_VERSION + 2]);
  await assert.rejects(preparePg(pool(), schema, 'f', 2), {
    ...schemaError(SCHEMA_VERSION + 2),
    message: new RegExp(`version ${SCHEMA_VERSION + 2}, which keeps workers from version ${SCHEMA_VERSION + 2} on`),
  });
  await pool().query(`UPDATE ${schema}.leases SET token = NULL, until_ms = 0 WHERE fn = 'f'`);
  await assert.rejects(log.acquire(0, 'w', 1000), schemaError(SCHEMA_VERSION + 2));
  const { rows: leases } = await pool().query(`SELECT count(*)::int AS n FROM ${schema}.leases WHERE token IS NOT NULL`);
  assert.equal(leases[0].n, 0, 'no lease granted');
  await log.close();
});

test('version 5 (the fleet limiter tables) keeps the workers version 4 kept: applied while a version 4 worker is registered, which goes on being granted partitions', async () => {
  const schema = 'velo_v4';
  await migrate(pool(), schema, 4);
  await pool().query(`INSERT INTO ${schema}.leases (fn, p) VALUES ('f', 0), ('f', 1)`);
  await pool().query(`INSERT INTO ${schema}.workers (fn, worker, until_ms, advert) VALUES ('f', 'v4-1', $1, '')`, [
    Date.now() + 60_000,
  ]);
  assert.equal(await migrate(pool(), schema, 5), 5);
  const { rows } = await pool().query(`SELECT version, keeps FROM ${schema}.migrations WHERE version = 5`);
  assert.deepEqual(rows, [{ version: 5, keeps: 3 }]);
  // A version 4 worker's grant (acquire_4 with its version), and a version 3 one's rule: both still granted.
  for (const [p, version] of [
    [0, 4],
    [1, 3],
  ]) {
    const grant = await pool().query(`SELECT o_kind FROM ${schema}.acquire_4('f', $1, 'old', 1000, ARRAY['*'], false, $2)`, [
      p,
      version,
    ]);
    assert.equal(grant.rows[0].o_kind, 'granted', `a version ${version} worker`);
  }
  const tables = await pool().query(
    `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'lim\\_%'`,
    [schema],
  );
  assert.equal(tables.rows[0].n, 6);
});

test('version 7 (the journal table) keeps the workers version 6 kept: applied while a version 6 worker is registered, which goes on being granted partitions; its key is (fn, p, sid, at)', async () => {
  const schema = 'velo_v6';
  await migrate(pool(), schema, 6);
  await pool().query(`INSERT INTO ${schema}.leases (fn, p) VALUES ('f', 0), ('f', 1)`);
  await pool().query(`INSERT INTO ${schema}.workers (fn, worker, until_ms, advert) VALUES ('f', 'v6-1', $1, '')`, [
    Date.now() + 60_000,
  ]);
  const { rows: before } = await pool().query(`SELECT to_regclass('${schema}.journal') AS t`);
  assert.equal(before[0].t, null, 'no journal at version 6');
  assert.equal(await migrate(pool(), schema, 7), 7);
  const { rows } = await pool().query(`SELECT version, keeps FROM ${schema}.migrations WHERE version = 7`);
  assert.deepEqual(rows, [{ version: 7, keeps: 3 }]);
  for (const [p, version] of [
    [0, 6],
    [1, 3],
  ]) {
    const grant = await pool().query(`SELECT o_kind FROM ${schema}.acquire_4('f', $1, 'old', 1000, ARRAY['*'], false, $2)`, [
      p,
      version,
    ]);
    assert.equal(grant.rows[0].o_kind, 'granted', `a version ${version} worker`);
  }
  const key = await pool().query(
    `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [`${schema}.journal`],
  );
  assert.deepEqual(
    key.rows.map((r) => r.attname),
    ['fn', 'p', 'sid', 'at'],
  );
});

test('version 9 (a commit that journals in one statement: commit_9) keeps the workers version 8 kept: applied while a version 8 worker is registered, which goes on being granted partitions and committing with commit_8', async () => {
  const schema = 'velo_v8';
  await migrate(pool(), schema, 8);
  await pool().query(`INSERT INTO ${schema}.leases (fn, p) VALUES ('f', 0), ('f', 1)`);
  await pool().query(`INSERT INTO ${schema}.groups (fn, p) VALUES ('f', 0), ('f', 1)`);
  await pool().query(`INSERT INTO ${schema}.workers (fn, worker, until_ms, advert) VALUES ('f', 'v8-1', $1, '')`, [
    Date.now() + 60_000,
  ]);
  const functions = async () =>
    (
      await pool().query(
        `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 AND p.proname LIKE 'commit\\_%' ORDER BY p.proname`,
        [schema],
      )
    ).rows.map((r) => r.proname);
  assert.deepEqual(await functions(), ['commit_4', 'commit_8'], 'no commit_9 at version 8');
  assert.equal(await migrate(pool(), schema, 9), 9);
  const { rows } = await pool().query(`SELECT version, keeps FROM ${schema}.migrations WHERE version = 9`);
  assert.deepEqual(rows, [{ version: 9, keeps: 3 }]);
  assert.deepEqual(await functions(), ['commit_4', 'commit_8', 'commit_9']);
  for (const [p, version] of [
    [0, 8],
    [1, 3],
  ]) {
    const grant = await pool().query(
      `SELECT o_kind, o_token FROM ${schema}.acquire_4('f', $1, 'old', 60000, ARRAY['*'], false, $2)`,
      [p, version],
    );
    assert.equal(grant.rows[0].o_kind, 'granted', `a version ${version} worker`);
    if (version !== 8) continue;
    // A version 8 worker's commit (an empty one, with a serial) still applies through commit_8.
    const e = Array(12).fill(`'{}'`).join(', ');
    const done = await pool().query(
      `SELECT r_ok, r_wrote FROM ${schema}.commit_8('f', 0, $1, '1', false, 0, ${e}, 1, '{}', '{}', '{}', '{}')`,
      [grant.rows[0].o_token],
    );
    assert.deepEqual(done.rows, [{ r_ok: true, r_wrote: true }]);
  }
});
