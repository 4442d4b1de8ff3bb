// What a Postgres worker says when things go wrong around it, on a private postgres: a transaction the server ended
// for waiting past its idle-in-transaction timeout (an `effects` callback paused longer than half the lease) is
// reported as that, not as a bare "not queryable" connection error; schemas that are not velo-stream's own (public,
// information_schema, pg_*) are refused at the call; an onError that throws is a warning, and the worker goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { eventually, totals } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';
import { warningsOf } from './helpers/util.mjs';

usePostgres();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const until = (check, what, ms = 60_000) => eventually(check, what, ms);

test("an effects callback paused past the server's idle timeout: reported as that, and the commit retried", async () => {
  const shared = { pool: pool(), schema: 'velo_reports', name: 'idle', partitions: 1 };
  const errors = [];
  let calls = 0;
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    ...shared,
    // Half of it (500 ms) is the transactions' idle_in_transaction_session_timeout.
    leaseTtl: 1000,
    onError: (e) => errors.push(e),
    effects: async (tx) => {
      await tx.query('SELECT 1');
      if (++calls === 1) await sleep(2000);
    },
  });
  try {
    await postgresProducer(shared).send('a', { n: 1 });
    await until(async () => {
      const { rows } = await pool().query(`SELECT count(*)::int AS n FROM velo_reports.outputs WHERE fn = 'idle'`);
      return rows[0].n === 1;
    }, 'the output');
  } finally {
    await worker.close();
  }
  const idle = errors.filter((e) => e.code === 'ERR_VELO_TRANSACTION_IDLE');
  assert.ok(idle.length >= 1, errors.map((e) => `${e.code} ${e.message}`).join('\n'));
  assert.match(idle[0].message, /idle_in_transaction_session_timeout/);
  assert.doesNotMatch(idle[0].message, /not queryable/);
  assert.equal(idle[0].cause.code, '25P03');
});

test('an onError that throws is a warning (ERR_VELO_ON_ERROR): the worker goes on and commits', async () => {
  const shared = { pool: pool(), schema: 'velo_reports', name: 'onerror', partitions: 1 };
  const given = [];
  let calls = 0;
  const warnings = await warningsOf('ERR_VELO_ON_ERROR', async (seen) => {
    const worker = postgresWorker(totals({ idleTimeout: 0 }), {
      ...shared,
      onError: (e) => {
        given.push(e);
        throw new Error('the logger failed');
      },
      // Its first commit fails (reported, and retried).
      effects: async () => {
        if (++calls === 1) throw Object.assign(new Error('effects failed once'), { code: 'E_ONCE' });
      },
    });
    try {
      await postgresProducer(shared).send('a', { n: 1 });
      await until(async () => {
        const { rows } = await pool().query(`SELECT count(*)::int AS n FROM velo_reports.outputs WHERE fn = 'onerror'`);
        return rows[0].n === 1 && seen.length >= 1;
      }, 'the output, and the warning');
    } finally {
      await worker.close();
    }
  });
  assert.ok(given.length >= 1);
  assert.equal(warnings[0].reported, given[0]);
  assert.equal(warnings[0].cause.message, 'the logger failed');
});

test('schemas that are not velo-stream own are refused with ERR_INVALID_ARG_VALUE', () => {
  for (const schema of ['public', 'information_schema', 'pg_catalog', 'pg_velo']) {
    assert.throws(() => postgresWorker(totals(), { pool: pool(), schema, name: 'x' }), { code: 'ERR_INVALID_ARG_VALUE' }, schema);
    assert.throws(() => postgresProducer({ pool: pool(), schema, name: 'x' }), { code: 'ERR_INVALID_ARG_VALUE' }, schema);
  }
});
