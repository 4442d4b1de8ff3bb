// The client a Postgres worker's `effects` get, on a private postgres: the commit's own transaction behind a guard.
// A transaction-control statement on it (ROLLBACK, COMMIT, BEGIN, ...) would end velo-stream's transaction under the
// commit, and a call after the callback settled would run inside another of its transactions: both are refused with
// ERR_VELO_EFFECTS_CLIENT (the commit fails and is retried, nothing lost), while savepoints work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { sessionProducer, sessionWorker } from 'velo-stream/durable';
import { eventually, totals } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const require = createRequire(import.meta.url);
const { controlStatement, effectsClient } = require('../dist/postgres/log/effects-client.js');
const SCHEMA = 'velo_effects';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const until = (check, what, ms = 60_000) => eventually(check, what, ms);

/** Runs a worker of `totals` whose effects are `effects`, sends 3 events to each of 2 keys; its errors, after `done`. */
async function run(name, effects, done) {
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: 2 };
  await pool().query(`CREATE TABLE IF NOT EXISTS fx_ledger (fn text, key text, n int, total int)`);
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 0 }), {
    ...shared,
    leaseTtl: 4000,
    onError: (e) => errors.push(e),
    effects,
  });
  try {
    const events = [];
    for (let n = 1; n <= 3; n++) for (const key of ['a', 'b']) events.push([key, { n }]);
    await postgresProducer(shared).sendMany(events);
    await until(done, 'the outputs');
  } finally {
    await worker.close();
  }
  return errors;
}

async function ledger(fn) {
  const { rows } = await pool().query(`SELECT key, total FROM fx_ledger WHERE fn = $1 ORDER BY key, n`, [fn]);
  return rows.map((r) => `${r.key}${r.total}`);
}

async function outputs(name) {
  const { rows } = await pool().query(`SELECT key, data FROM ${SCHEMA}.outputs WHERE fn = $1`, [name]);
  return rows.map((r) => `${r.key}${JSON.parse(r.data.toString()).total}`).sort();
}

test('which statements the effects client refuses: transaction control, not savepoints or writes', () => {
  for (const text of [
    'ROLLBACK',
    ' rollback;',
    '/* x */ COMMIT',
    '-- c\nBEGIN',
    'START TRANSACTION',
    'END',
    'abort',
    "PREPARE TRANSACTION 'x'",
    'SELECT 1; ROLLBACK',
    'ROLLBACK AND CHAIN',
    'ROLLBACK /* to */ AND CHAIN',
    'START /* c */ TRANSACTION',
    'rollback -- to\n',
    '/* a /* nested */ comment */ begin',
    "SELECT 'it''s'; commit",
    'SELECT $f$ ; end $f$; END',
    "SELECT e'a\\\\'; commit",
    // Comments nest; `--` ends at a carriage return too; an E that ends an identifier starts no E'...' string.
    'ROLLBACK /* /* */ TO a */',
    'ROLLBACK --x\r; SELECT 1 AS\nTO',
    'SELECT 1 --x\r; COMMIT; SELECT 1 AS\nx',
    "SELECT a$E'\\'; ROLLBACK; SELECT 1 AS x --'",
    "SELECT éE'\\'; ROLLBACK; SELECT 1 AS x --'",
    // An E'...' string's continuation after a line break (comments too) keeps its escapes; a dollar quote's tag may be long.
    "SELECT E'a'\n'\\' -- ';ROLLBACK AND CHAIN;SELECT 1 AS x --",
    "SELECT E'a' -- c\n-- d\n'\\' -- ';ROLLBACK;SELECT 1 AS x --",
    `SELECT $${'a'.repeat(80)}$ ' $${'a'.repeat(80)}$; ROLLBACK AND CHAIN`,
    // A routine's BEGIN ATOMIC body ends at its END (CASE ... END inside it counted); outside one, BEGIN is a statement.
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; ROLLBACK',
    'create or replace function f() returns int language sql begin atomic select case when true then 1 end; end; commit',
    "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1'; ROLLBACK",
    "CREATE FUNCTION f(begin atomic) RETURNS int LANGUAGE sql AS 'SELECT 1'; ROLLBACK AND CHAIN; SELECT 1",
    "CREATE FUNCTION f() RETURNS TABLE (begin atomic) LANGUAGE sql AS 'SELECT 1'; COMMIT",
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; BEGIN ATOMIC; END',
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS case; END; ROLLBACK',
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT t.case FROM t; END; COMMIT',
    'CREATE TABLE t (begin int); BEGIN',
    'SELECT 1 AS begin, 2 AS atomic; COMMIT',
  ]) {
    assert.notEqual(controlStatement(text), undefined, text);
  }
  for (const text of [
    'SAVEPOINT a',
    'RELEASE SAVEPOINT a',
    'ROLLBACK TO SAVEPOINT a',
    'rollback to a',
    'ROLLBACK /*c*/ TO a',
    'ROLLBACK WORK -- c\n TO SAVEPOINT a',
    'rollback/* x */transaction/* y */to a',
    'ROLLBACK /* /* */ */ TO a',
    'ROLLBACK -- c\r TO a',
    'INSERT INTO t VALUES (1)',
    'SELECT begin_at FROM t',
    'UPDATE ending SET x = 1',
    // Transaction words inside quoted text, identifiers, dollar-quoted bodies and comments are not statements.
    "INSERT INTO t VALUES ('step 1; begin step 2')",
    'DO $$ BEGIN INSERT INTO t VALUES (1); END $$',
    'DO $body$ BEGIN PERFORM 1; END $body$',
    'SELECT \'x\' AS "a;end"',
    "SELECT E'it\\'s; commit'",
    'SELECT 1 -- ; commit',
    'SELECT 1 /* ; rollback */',
    'SELECT $1::text',
    'CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN a > 0 THEN a ELSE 0 END; END',
    'CREATE FUNCTION f(a int DEFAULT (1)) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (a); SELECT f((1)); END',
    // A key word as a label: `AS end`, `t.end`.
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS end; SELECT t.end FROM t; SELECT t. case FROM t; END',
    'create or replace procedure p() language sql begin /* c */ atomic insert into t values (1); end; select 1',
    'CREATE OR REPLACE FUNCTION "f;end"() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT \'; commit\'::int; END',
  ]) {
    assert.equal(controlStatement(text), undefined, text);
  }
  assert.equal(controlStatement('START /* c */ TRANSACTION'), 'START TRANSACTION');
  // Long runs of comments or space between the words, closed or not, are read in one pass (no backtracking at length).
  assert.equal(controlStatement(`start ${'/**/'.repeat(50_000)}`), undefined);
  assert.equal(controlStatement(`start ${'/**/'.repeat(50_000)} transaction`), 'START TRANSACTION');
  assert.equal(controlStatement(`rollback ${'/* '.repeat(50_000)}`), 'ROLLBACK');
  assert.equal(controlStatement(`rollback${' '.repeat(200_000)}x`), 'ROLLBACK');
  assert.equal(controlStatement(`rollback ${'/* x */ -- y\n'.repeat(20_000)}to a`), undefined);
  // The same for what follows an E'...' string (a continuation or not), dashes and line breaks at length.
  assert.equal(controlStatement(`SELECT E'a' ${'-'.repeat(200_000)}x; commit`), undefined);
  assert.equal(controlStatement(`SELECT E'a'${' \n -- c'.repeat(50_000)}`), undefined);
  assert.equal(controlStatement(`${"E'a'\n".repeat(50_000)}; commit`), 'COMMIT');
});

test('the effects client sends the text it checked; a prepared name alone or a Submittable is refused', async () => {
  const sent = [];
  const { client: tx } = effectsClient({ query: async (config, values) => (sent.push([config, values]), { rows: [] }) });
  // A text read again by node-postgres would be another: the config goes on as a copy with the text checked.
  let reads = 0;
  await tx.query({
    get text() {
      return reads++ === 0 ? 'SELECT 1' : 'ROLLBACK';
    },
    rowMode: 'array',
  });
  // (By the simple protocol: with the transaction's mark checked after it.)
  assert.equal(sent[0][0].rowMode, 'array');
  assert.ok(sent[0][0].text.startsWith('SELECT 1\n;SELECT CASE'), sent[0][0].text);
  assert.equal(sent[0][1], undefined);
  for (const config of [{ name: 'prepared' }, { text: 'SELECT 1', submit() {} }, null, 7]) {
    await assert.rejects(tx.query(config), { code: 'ERR_VELO_EFFECTS_CLIENT' }, String(config));
  }
  // A callback (node-postgres would answer through it alone, the text sent unchecked), or values not in an array.
  const callback = () => {};
  for (const args of [
    ['ROLLBACK; SELECT 1', callback],
    ['SELECT 1', [], callback],
    [{ text: 'SELECT 1', callback }],
    ['SELECT 1', { length: 0 }],
  ]) {
    await assert.rejects(tx.query(...args), { code: 'ERR_VELO_EFFECTS_CLIENT', message: /no callback/ });
  }
  assert.equal(sent.length, 1);
  // What node-postgres reads of a config (through its prototype, a getter, a field not enumerable) is read once and
  // sent as a plain object: the protocol is chosen from what is sent (values: the extended one, as one statement).
  const hostile = [
    Object.assign(Object.create({ values: [1], rowMode: 'array' }), { text: 'SELECT $1' }),
    Object.defineProperty({ text: 'SELECT $1' }, 'values', { value: [1], enumerable: false }),
    new (class {
      text = 'SELECT $1';
      get values() {
        return (this.reads = (this.reads ?? 0) + 1) === 1 ? [1] : undefined;
      }
    })(),
  ];
  for (const config of hostile) await tx.query(config);
  const flipping = new Proxy([1], { get: (t, k) => (k === 'length' ? (flips++ === 0 ? 1 : 0) : t[k]) });
  let flips = 0;
  await tx.query('SELECT $1', flipping);
  for (const [config, values] of sent.slice(1)) {
    assert.equal(values, undefined);
    assert.equal(Object.getPrototypeOf(config), null, 'an object of its own fields alone');
    assert.equal(config.text, 'SELECT $1');
    assert.ok(Array.isArray(config.values) && config.values !== flipping && config.values.length === 1);
  }
  assert.equal(sent[1][0].rowMode, 'array');
  // A prototype's name, queryMode or rows: sent as its own, so that the protocol is the one checked.
  for (const field of [{ name: 'q1' }, { queryMode: 'extended' }, { rows: 10 }]) {
    await tx.query(Object.assign(Object.create(field), { text: 'SELECT 1' }));
    const [config] = sent.at(-1);
    assert.equal(config.text, 'SELECT 1', JSON.stringify(field));
    assert.deepEqual(Object.entries(config).slice(1), Object.entries(field));
  }
  // Falsy values are none, as node-postgres takes them: the text by the simple protocol, checked.
  await tx.query('SELECT 1', 0);
  assert.ok(sent.at(-1)[0].text.startsWith('SELECT 1\n;SELECT CASE'));
  // A field Object.prototype was given is none of the statement's: the text is still checked.
  for (const field of ['queryMode', 'rows', 'values', 'name']) {
    Object.defineProperty(Object.prototype, field, { get: () => (field === 'values' ? [1] : 'extended'), configurable: true });
    try {
      await tx.query('SELECT 2');
      assert.ok(sent.at(-1)[0].text.startsWith('SELECT 2\n;SELECT CASE'), field);
      assert.equal(sent.at(-1)[0][field], undefined, field);
    } finally {
      delete Object.prototype[field];
    }
  }
});

/** Effects that write a ledger row per output of function `name`, a statement each. */
async function writeLedger(tx, name, written) {
  for (const o of written) {
    await tx.query('INSERT INTO fx_ledger (fn, key, n, total) VALUES ($1, $2, $3, $4)', [name, o.key, o.value.n, o.value.total]);
  }
}

/**
 * A worker whose effects write the ledger and, the first time only, run `first(tx)` (a statement that would end the
 * transaction): the commit fails once (ERR_VELO_EFFECTS_CLIENT, its message matching `said`), is retried, and every
 * row and output is there once. Returns the error.
 */
async function failsOnceThenCommits(name, first, said) {
  let calls = 0;
  const errors = await run(
    name,
    async (tx, written) => {
      await writeLedger(tx, name, written);
      if (++calls === 1) await first(tx);
    },
    async () => (await ledger(name)).length >= 6,
  );
  await sleep(300);
  assert.deepEqual(await ledger(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6']);
  assert.deepEqual(await outputs(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6']);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'ERR_VELO_EFFECTS_CLIENT');
  assert.match(errors[0].message, said);
}

test('a ROLLBACK in effects is refused (ERR_VELO_EFFECTS_CLIENT): the commit is retried, no output lost', async () => {
  await failsOnceThenCommits('fx_rollback', (tx) => tx.query('ROLLBACK'), /refuses ROLLBACK/);
});

for (const [end, kind] of [
  ['ROLLBACK AND CHAIN', 'ended and another begun'],
  ['ROLLBACK', 'ended'],
  ['COMMIT AND CHAIN', 'committed and another begun'],
]) {
  const name = `fx_hidden_${end.replaceAll(' ', '_').toLowerCase()}`;
  test(`a ${end} the effects client does not see fails its text, and the statements after it roll back (its transaction ${kind}): retried, no output lost`, async () => {
    await failsOnceThenCommits(
      name,
      async (tx) => {
        // With standard_conforming_strings off, a backslash escapes a quote in '...': the client reads a string and
        // a comment, the server a string, the statements and a comment. The row after the end must not be kept.
        await tx.query('SET LOCAL standard_conforming_strings = off');
        await tx.query(
          `SELECT '\\' -- ';${end};INSERT INTO fx_ledger (fn, key, n, total) VALUES ('${name}', 'after', 0, 0);SELECT 1 AS x --'`,
        );
      },
      /text ended the commit's transaction/,
    );
  });
  test(`a ${end} the effects client does not see, its failure caught: later calls are refused, and so is the commit (its transaction ${kind})`, async () => {
    const refused = [];
    await failsOnceThenCommits(
      `${name}_caught`,
      async (tx) => {
        await tx.query('SET LOCAL standard_conforming_strings = off');
        await tx.query(`SELECT '\\' -- ';${end};SELECT 1 AS x --'`).catch(() => {});
        await tx
          .query('INSERT INTO fx_ledger (fn, key, n, total) VALUES ($1, $2, 0, 0)', [`${name}_caught`, 'after'])
          .catch((error) => refused.push(error.code));
      },
      /text ended the commit's transaction/,
    );
    assert.deepEqual(refused, ['ERR_VELO_EFFECTS_CLIENT']);
  });
  test(`a ${end} the effects client does not see, not awaited: the COMMIT after it is not run (its transaction ${kind})`, async () => {
    await failsOnceThenCommits(
      `${name}_unawaited`,
      async (tx) => {
        await tx.query('SET LOCAL standard_conforming_strings = off');
        void tx.query(`SELECT '\\' -- ';${end};SELECT 1 AS x --'`).catch(() => {});
      },
      // (Ended: the COMMIT's check finds no mark; ended and another begun: the check after the text failed in it.)
      end === 'ROLLBACK' ? /was ended before its COMMIT/ : /the commit was rolled back/,
    );
  });
}

test('effects that throw what is no error (null, undefined, a string) are reported as an Error quoting it: retried, no output lost', async () => {
  for (const [i, value] of [null, undefined, 'a string'].entries()) {
    const name = `fx_thrown_${i}`;
    let calls = 0;
    const errors = await run(
      name,
      async (tx, written) => {
        await writeLedger(tx, name, written);
        if (++calls === 1) throw value;
      },
      async () => (await ledger(name)).length >= 6,
    );
    assert.deepEqual(await ledger(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6']);
    assert.equal(errors.length, 1, String(value));
    assert.ok(errors[0] instanceof Error);
    assert.match(errors[0].message, /A value that is not an error was thrown: /);
    assert.equal(errors[0].cause, value);
  }
});

test('a text of several statements gives each its result, as node-postgres does; one alone, its own', async () => {
  const sent = [];
  const fake = {
    query: async (config) => {
      const text = typeof config === 'string' ? config : config.text;
      sent.push(text);
      const n = text.split(';').length;
      return n === 1 ? { command: 'SELECT', rows: [0] } : Array.from({ length: n }, (_, i) => ({ command: 'SELECT', rows: [i] }));
    },
  };
  const { client } = effectsClient(fake);
  assert.deepEqual((await client.query('SELECT 0')).rows, [0]);
  assert.deepEqual(
    (await client.query('SELECT 0; SELECT 1')).map((r) => r.rows),
    [[0], [1]],
  );
  // By the extended protocol (values, a name): one statement, sent as it is.
  assert.deepEqual((await client.query('SELECT $1', [1])).rows, [0]);
  assert.deepEqual((await client.query({ text: 'SELECT 0', name: 'q' })).rows, [0]);
  // Comments alone: no statement to check.
  await client.query('-- nothing');
  assert.deepEqual(
    sent.map((t) => t.includes('velo.transaction')),
    [true, true, false, false, false],
  );
  assert.ok(sent[0].startsWith('SELECT 0\n;'), sent[0]);
});

test('a call on the effects client after the callback returned is refused; savepoints work, a config object with its values too', async () => {
  const name = 'fx_leak';
  const late = [];
  const errors = await run(
    name,
    async (tx, written) => {
      for (const o of written) {
        await tx.query('SAVEPOINT one');
        await tx.query('INSERT INTO fx_ledger (fn, key, n, total) VALUES ($1, $2, -1, -1)', [name, o.key]);
        await tx.query('ROLLBACK /* the -1 row */ TO SAVEPOINT one');
        // (A config object and its values apart, as node-postgres takes them.)
        await tx.query({ text: 'INSERT INTO fx_ledger (fn, key, n, total) VALUES ($1, $2, $3, $4)' }, [
          name,
          o.key,
          o.value.n,
          o.value.total,
        ]);
        await tx.query('RELEASE SAVEPOINT one');
      }
      // Not awaited: runs after the callback settled.
      setImmediate(() => {
        tx.query('INSERT INTO fx_ledger (fn, key, n, total) VALUES ($1, $2, 0, 0)', [name, 'late']).then(
          () => late.push('ran'),
          (error) => late.push(error.code),
        );
      });
    },
    async () => (await ledger(name)).length >= 6 && late.length > 0,
  );
  assert.deepEqual(await ledger(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6']);
  assert.ok(late.length > 0 && late.every((x) => x === 'ERR_VELO_EFFECTS_CLIENT'), String(late));
  assert.deepEqual(errors, []);
});

test("effects may create a routine with a BEGIN ATOMIC body (its `;` and END are the body's) and call it", async () => {
  const name = 'fx_atomic';
  const errors = await run(
    name,
    async (tx, written) => {
      // (In the connection's own schema: each connection makes its own, so commits at once do not race on it.)
      await tx.query(
        `CREATE OR REPLACE FUNCTION pg_temp.fx_add(f text, k text, n int, t int) RETURNS void LANGUAGE sql
         BEGIN ATOMIC
           INSERT INTO fx_ledger (fn, key, n, total) VALUES (f, k, n, CASE WHEN t > 0 THEN t ELSE 0 END);
         END`,
      );
      for (const o of written) await tx.query('SELECT pg_temp.fx_add($1, $2, $3, $4)', [name, o.key, o.value.n, o.value.total]);
    },
    async () => (await ledger(name)).length >= 6,
  );
  assert.deepEqual(await ledger(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6']);
  assert.deepEqual(errors, []);
});

test("a call may carry a few partitions' outputs: each names its own partition, as the stored output does, in order per key", async () => {
  const name = 'fx_partitions';
  const shared = { client: pool(), schema: SCHEMA, name, partitions: 8 };
  const producer = sessionProducer(shared);
  const calls = [];
  const errors = [];
  const worker = sessionWorker(totals({ idleTimeout: 60_000 }), {
    ...shared,
    leaseTtl: 4000,
    onError: (e) => errors.push(e),
    effects: async (tx, written) => {
      calls.push(written.map((o) => ({ partition: o.partition, key: o.key, id: o.id, sid: o.sid, seq: o.seq, n: o.value.n })));
      await tx.query('SELECT 1');
    },
  });
  const keys = Array.from({ length: 32 }, (_, i) => `k${i}`);
  let bursts = 0;
  const carried = () => calls.some((c) => new Set(c.map((o) => o.partition)).size > 1);
  try {
    await until(() => worker.stats().owned.length === 8, 'the worker owning every partition');
    // Bursts over every partition until a call carried more than one (a turn's commits share a transaction).
    while (!carried() && bursts < 5) {
      bursts++;
      await producer.sendMany(keys.map((key) => [key, { n: bursts }]));
      await until(() => calls.flat().length >= bursts * keys.length, 'the outputs');
    }
  } finally {
    await worker.close();
  }
  assert.deepEqual(errors, []);
  assert.ok(carried(), `a call with several partitions in ${bursts} bursts`);
  const all = calls.flat();
  assert.equal(all.length, bursts * keys.length, 'each output once');
  // (An id is its partition's own: the stored output is found by its session and seq.)
  const { rows } = await pool().query(`SELECT p, ms, seq, sid, oseq FROM ${SCHEMA}.outputs WHERE fn = $1`, [name]);
  const stored = new Map(rows.map((r) => [`${r.sid} ${r.oseq}`, { p: r.p, id: `${r.ms}-${r.seq}` }]));
  for (const o of all) {
    assert.equal(o.partition, producer.partitionOf(o.key), `${o.key}: its own partition`);
    assert.deepEqual(stored.get(`${o.sid} ${o.seq}`), { p: o.partition, id: o.id }, `${o.key}: as stored`);
  }
  for (const key of keys) {
    assert.deepEqual(
      all.filter((o) => o.key === key).map((o) => o.n),
      Array.from({ length: bursts }, (_, i) => i + 1),
      `${key}: in order`,
    );
  }
});

test('a failed statement the effects callback caught, or did not await, fails the commit: retried, no output lost', async () => {
  for (const how of ['caught', 'unawaited']) {
    const name = `fx_${how}`;
    let calls = 0;
    const errors = await run(
      name,
      async (tx, written) => {
        await tx.query(
          'INSERT INTO fx_ledger (fn, key, n, total) SELECT $1, unnest($2::text[]), unnest($3::int[]), unnest($4::int[])',
          [name, written.map((o) => o.key), written.map((o) => o.value.n), written.map((o) => o.value.total)],
        );
        if (++calls > 1) return;
        // The transaction is aborted by the failure: Postgres then answers the COMMIT with ROLLBACK, no error.
        if (how === 'caught') await tx.query('SELECT 1/0').catch(() => {});
        else tx.query('SELECT 1/0').catch(() => {});
      },
      async () => (await ledger(name)).length >= 6,
    );
    await sleep(300);
    assert.deepEqual(await ledger(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6'], how);
    assert.deepEqual(await outputs(name), ['a1', 'a3', 'a6', 'b1', 'b3', 'b6'], how);
    assert.equal(errors.length, 1, how);
    assert.equal(errors[0].code, 'ERR_VELO_EFFECTS_CLIENT', how);
    assert.match(errors[0].message, /rolled back/, how);
  }
});
