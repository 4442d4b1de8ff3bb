// What a commit sends to Postgres, on a private postgres: without effects one statement (its own transaction), with
// effects one statement that carries its BEGIN (one round trip: `BEGIN+` below), the effects, COMMIT; on a pool whose
// clients are not node-postgres', BEGIN on its own first. Once that statement holds the partition's locks, only the
// effects run before the COMMIT: velo-stream's own statements never sit under the idle limit
// (idle_in_transaction_session_timeout, half a worker's lease), so slow effects under it commit the first time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog, appendEventsPg, outputEntriesPg, preparePg, transaction } from '#testing';
import { fresh } from './helpers/redis-suite.mjs';
import { postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_round_trips';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const limits = { idleTimeout: 500, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10 };

/**
 * A pool that logs every statement sent through it (its own queries and its clients'), as `[where, text]` (a
 * statement sent with its transaction's BEGIN as `BEGIN+<text>`), and holds each client statement `delay(text)` ms
 * before sending it (a loaded event loop between two statements). `wrapped`: its clients are plain objects around
 * node-postgres' (a pool of another library).
 */
function loggingPool(delay = () => 0, wrapped = false, options = {}) {
  const p = postgres.pool({ max: 4, ...options });
  const statements = [];
  const query = p.query.bind(p);
  p.query = (config, values) => {
    statements.push(['pool', typeof config === 'string' ? config : config.text]);
    return query(config, values);
  };
  const connect = p.connect.bind(p);
  // (pg-pool's own query() checks a client out with a callback: that one passes through.)
  p.connect = async (callback) => {
    if (typeof callback === 'function') return connect(callback);
    const client = await connect();
    if (client.velo === undefined) {
      const raw = client.query.bind(client);
      client.velo = true;
      client.query = async (config, values, ...rest) => {
        // (pg-pool's own query() passes a callback: not velo-stream's statement on a client, logged as the pool's.)
        if (typeof values === 'function' || rest.length > 0) return raw(config, values, ...rest);
        const text = typeof config === 'string' ? config : config.text;
        statements.push(['client', config?.beginsTransaction === true ? `BEGIN+${text}` : text, client.processID]);
        const ms = delay(text);
        if (ms > 0) await sleep(ms);
        return raw(config, values);
      };
    }
    if (!wrapped) return client;
    return {
      query: (config, values) => client.query(config, values),
      release: (destroy) => client.release(destroy),
      on: (event, listener) => client.on(event, listener),
      removeListener: (event, listener) => client.removeListener(event, listener),
    };
  };
  p.statements = statements;
  return p;
}

/** The COMMIT velo-stream sends: after the check that the transaction is still its own, in one round trip. */
const COMMIT =
  "SELECT CASE WHEN current_setting('velo.transaction', true) = '1' THEN 1 ELSE ('velo-stream: the transaction was " +
  "ended' || coalesce(current_setting('velo.transaction', true), ''))::int END; COMMIT";
const kindsOf = (statements) =>
  statements.map(([where, text]) =>
    where === 'effects' ? 'effects' : text === COMMIT ? 'COMMIT' : text.split(/\s/)[0].replace(/;$/, ''),
  );

/** A log with `effects` on `p`, a lease on its partition 0, and two events read: a commit of both sessions' outputs. */
async function setUp(p, options) {
  const space = await preparePg(p, SCHEMA, fresh('fn'), 1);
  const log = new PgLog(p, space, 1, options);
  const [e1, e2] = await appendEventsPg(p, space, 0, [
    ['a', '1'],
    ['b', '2'],
  ]);
  const lease = await log.acquire(0, 'w1', 10_000);
  await log.read(lease, '>', 10);
  const a = `a@${e1}`;
  const b = `b@${e2}`;
  // Session a opens (its opening kept), writes an output, a checkpoint and its journal entry (two calls); session b
  // writes its output and a journal entry, and ends (its entry forgotten in the same commit).
  const rec = (at, payload) => ({ at, kind: 'v', name: 'svc', payload });
  const commit = {
    journal: [
      { sid: a, records: [rec('1', 'r1'), rec('2', 'r2')] },
      { sid: b, records: [rec('1', 'b1')] },
    ],
    unjournal: [`${b} 1`],
    outputs: [
      { sid: a, seq: 1, key: 'a', payload: Buffer.from('A1') },
      { sid: b, seq: 1, key: 'b', payload: Buffer.from('B1') },
    ],
    checkpoints: [{ sid: a, seq: 1, lastTime: 0, events: 1, state: Buffer.from('s') }],
    acks: [e2],
    ended: [b],
    endedSeqs: [1],
    opened: [{ sid: a, version: 'v1', limits }],
    serial: 1,
    ids: true,
  };
  return { space, log, lease, commit, a, b };
}

test('a commit without effects is one statement, its journal entries too; with effects one statement with its BEGIN, the effects, COMMIT', async () => {
  const p = loggingPool();
  const plain = await setUp(p, {});
  p.statements.length = 0;
  const done = await plain.log.commit(plain.lease, plain.commit);
  assert.equal(done.ids.length, 2);
  assert.deepEqual(
    p.statements.map(([where]) => where),
    ['pool'],
    `one statement: ${JSON.stringify(p.statements)}`,
  );
  // (Its journal in the same statement: a's entry kept, b's forgotten.)
  const journal = await plain.log.journal(plain.lease);
  assert.deepEqual(
    journal.map((e) => [e.sid, e.records.map((r) => `${r.at}=${r.payload}`).join(' ')]),
    [[plain.a, '1=r1 2=r2']],
  );
  await plain.log.close();

  const seen = [];
  const fx = await setUp(p, {
    effects: async (client, written) => {
      p.statements.push(['effects', written.map((o) => `${o.key}${o.data}`).join(' ')]);
      await client.query('SELECT 1');
      seen.push(written.length);
    },
  });
  p.statements.length = 0;
  const result = await fx.log.commit(fx.lease, fx.commit);
  assert.deepEqual(seen, [2]);
  // velo-stream's statements: the commit's one statement with its BEGIN (and the idle limit: none yet) in its round
  // trip, then only the effects (their SELECT 1), then COMMIT.
  assert.deepEqual(kindsOf(p.statements), ['BEGIN+SELECT', 'effects', 'SELECT', 'COMMIT'], JSON.stringify(p.statements));
  assert.match(p.statements[0][1], /commit_9/);
  // The commit applied as a whole: b forgotten, a's opening kept, the outputs' ids returned.
  assert.equal(result.ids.length, 2);
  assert.ok(result.ids.every((id) => typeof id === 'string'));
  const openings = await fx.log.openings(fx.lease);
  assert.deepEqual([...openings.keys()], [fx.a]);
  const marks = await fx.log.marks(fx.lease, [fx.a, fx.b]);
  assert.deepEqual([...marks.keys()], [fx.a]);
  // Its retry (same serial) writes nothing and runs no effects: the ids of the first.
  const again = await fx.log.commit(fx.lease, fx.commit);
  assert.deepEqual(again.ids, result.ids);
  assert.deepEqual(seen, [2]);
  await fx.log.close();
  await p.end();
});

test("on a pool whose clients are not node-postgres', a commit with effects sends BEGIN on its own first", async () => {
  const p = loggingPool(() => 0, true);
  let calls = 0;
  const fx = await setUp(p, {
    effects: async (client) => {
      calls++;
      await client.query('SELECT 1');
    },
  });
  p.statements.length = 0;
  const result = await fx.log.commit(fx.lease, fx.commit);
  assert.deepEqual(kindsOf(p.statements), ['BEGIN', 'SELECT', 'SELECT', 'COMMIT'], JSON.stringify(p.statements));
  assert.match(p.statements[1][1], /commit_9/);
  assert.equal(calls, 1);
  assert.equal(result.ids.length, 2);
  assert.deepEqual([...(await fx.log.marks(fx.lease, [fx.a, fx.b])).keys()], [fx.a]);
  await fx.log.close();
  await p.end();
});

test('a commit whose statement fails in the round trip of its BEGIN: nothing written, its connection destroyed, the retry applies', async (t) => {
  // Another connection holds the lease row: the commit's statement waits for its lock past lock_timeout and fails.
  // Its connection is destroyed (node-postgres may count its statement prepared though the server dropped it).
  const p = loggingPool(() => 0, false, { options: '-c lock_timeout=200' });
  const blocker = postgres.pool({ max: 2 });
  const held = await blocker.connect();
  t.after(async () => {
    held.release(true);
    await blocker.end();
    await p.end();
  });
  let calls = 0;
  const fx = await setUp(p, {
    effects: async () => {
      calls++;
    },
  });
  t.after(() => fx.log.close());
  await held.query('BEGIN');
  await held.query(`SELECT 1 FROM ${SCHEMA}.leases WHERE fn = $1 AND p = 0 FOR UPDATE`, [fx.space.fn]);
  p.statements.length = 0;
  await assert.rejects(fx.log.commit(fx.lease, fx.commit), { code: '55P03' });
  const [, text, pid] = p.statements[0];
  assert.match(text, /^BEGIN\+SELECT .*commit_9/s);
  assert.equal(calls, 0, 'no effects');
  const alive = async () =>
    (await blocker.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].n;
  for (let i = 0; i < 200 && (await alive()) > 0; i++) await sleep(10);
  assert.equal(await alive(), 0, 'its connection destroyed');
  await held.query('ROLLBACK');
  assert.deepEqual([...(await fx.log.marks(fx.lease, [fx.a, fx.b])).keys()], [], 'nothing written');
  const done = await fx.log.commit(fx.lease, fx.commit);
  assert.equal(done.ids.length, 2);
  assert.equal(calls, 1);
  assert.deepEqual([...(await fx.log.marks(fx.lease, [fx.a, fx.b])).keys()], [fx.a]);
});

test('a transaction whose first statement is not a named one sends its BEGIN on its own first; a failed BEGIN destroys the connection', async (t) => {
  // Every transaction of velo-stream starts with a named statement (BEGIN goes in its round trip); one that starts
  // with a text or with parameters sends BEGIN and its idle limit as one simple query, then the statement. The BEGIN
  // is held 300 ms before it is sent when `hold` is set.
  let hold = false;
  const p = loggingPool((text) => (hold && text.startsWith('BEGIN;') ? 300 : 0));
  t.after(() => p.end());
  const seen = await transaction(
    p,
    async (client) => {
      const one = await client.query('SELECT 1 AS one');
      const two = await client.query({ text: 'SELECT $1::int AS two', values: [2] });
      const limit = await client.query('SHOW idle_in_transaction_session_timeout');
      return [one.rows[0].one, two.rows[0].two, limit.rows[0].idle_in_transaction_session_timeout];
    },
    700,
  );
  assert.deepEqual(seen, [1, 2, '700ms']);
  assert.deepEqual(
    p.statements.map(([, text]) => text),
    [
      'BEGIN; SET LOCAL velo.transaction = 1; SET LOCAL idle_in_transaction_session_timeout = 700',
      'SELECT 1 AS one',
      'SELECT $1::int AS two',
      'SHOW idle_in_transaction_session_timeout',
      COMMIT,
    ],
  );
  // Its BEGIN fails (the connection's server process is ended while the BEGIN is held): the body's first statement,
  // which the BEGIN goes before, fails with it and is never sent; the connection is destroyed, not given back.
  p.statements.length = 0;
  hold = true;
  const killer = postgres.pool({ max: 1 });
  t.after(() => killer.end());
  let failed;
  const ended = transaction(p, async (client) => {
    await client.query('SELECT 1').catch((error) => {
      failed = error;
      throw error;
    });
  });
  // (Checked at once: it may fail before the terminating query below answers.)
  const endedChecked = assert.rejects(ended, { code: '57P01' });
  for (let i = 0; i < 100 && p.statements.length === 0; i++) await sleep(2);
  const [, text, pid] = p.statements[0];
  assert.match(text, /^BEGIN;/);
  await killer.query('SELECT pg_terminate_backend($1)', [pid]);
  // (The transaction fails with the connection's own error, which has the server's code: 57P01, terminated.)
  await endedChecked;
  assert.ok(failed instanceof Error, 'the body saw its statement fail');
  assert.deepEqual(
    p.statements.map(([, sent]) => sent.split(/[\s;]/)[0]),
    ['BEGIN'],
    'no statement after the BEGIN',
  );
  assert.equal(p.totalCount, 0, 'the connection destroyed');
});

test("velo-stream's statements never idle under the limit: slow effects under it commit the first time", async () => {
  // Each statement of velo-stream but the COMMIT is held 300 ms before it is sent (an event loop busy between two
  // statements), past the 200 ms idle limit: only the effects (150 ms, under it) and the COMMIT come after the locks.
  // (The effects' text goes with the transaction's check after it.)
  const p = loggingPool((text) => (/^ROLLBACK\b/.test(text) || text === COMMIT || text.startsWith('SELECT 1\n;') ? 0 : 300));
  let calls = 0;
  const fx = await setUp(p, {
    idleInTransaction: 200,
    effects: async (client) => {
      calls++;
      await sleep(150);
      await client.query('SELECT 1');
      await sleep(150);
    },
  });
  const result = await fx.log.commit(fx.lease, fx.commit);
  assert.equal(calls, 1, 'the effects ran once');
  assert.equal(result.ids.length, 2);
  // Effects idle past the limit: the server ends the transaction, nothing committed (ERR_VELO_TRANSACTION_IDLE).
  const slow = await setUp(p, {
    idleInTransaction: 200,
    effects: async () => {
      await sleep(600);
    },
  });
  p.statements.length = 0;
  await assert.rejects(slow.log.commit(slow.lease, slow.commit), { code: 'ERR_VELO_TRANSACTION_IDLE' });
  // Its connection ended by the server under it gets no statement more: no COMMIT, no ROLLBACK.
  assert.deepEqual(kindsOf(p.statements), ['BEGIN+SELECT'], JSON.stringify(p.statements));
  assert.deepEqual([...(await slow.log.marks(slow.lease, [slow.a, slow.b])).keys()], []);
  await fx.log.close();
  await slow.log.close();
  await p.end();
});

/** A logging pool, and a pool of one connection to terminate its server processes with; both ended after `t`. */
function withKiller(t) {
  const p = loggingPool();
  const killer = postgres.pool({ max: 1 });
  t.after(async () => {
    await killer.end();
    await p.end();
  });
  return { p, killer };
}

test("a commit whose connection the server ends under its effects fails with the server's code, and sends nothing more", async (t) => {
  const { p, killer } = withKiller(t);
  let calls = 0;
  const fx = await setUp(p, {
    effects: async (client) => {
      if (calls++ > 0) return;
      // The first time: its server process is terminated, the client hears of it, and the effects go on.
      const [, , pid] = p.statements.find(([where]) => where === 'client');
      await killer.query('SELECT pg_terminate_backend($1)', [pid]);
      for (let i = 0; i < 200 && !lost; i++) await sleep(5);
      await client.query('SELECT 1');
    },
  });
  let lost = false;
  const connect = p.connect.bind(p);
  p.connect = async (...args) => {
    const client = await connect(...args);
    if (typeof client?.on === 'function') client.on('error', () => (lost = true));
    return client;
  };
  t.after(() => fx.log.close());
  p.statements.length = 0;
  await assert.rejects(fx.log.commit(fx.lease, fx.commit), { code: '57P01' });
  assert.ok(lost, 'the client heard of it first');
  assert.deepEqual(kindsOf(p.statements), ['BEGIN+SELECT'], JSON.stringify(p.statements));
  assert.deepEqual([...(await fx.log.marks(fx.lease, [fx.a, fx.b])).keys()], [], 'nothing written');
  const done = await fx.log.commit(fx.lease, fx.commit);
  assert.equal(done.ids.length, 2);
  assert.equal(calls, 2);
});

test("a commit whose connection the server ends during a statement of its effects: every later call and the commit fail with the server's code", async (t) => {
  const { p, killer } = withKiller(t);
  let calls = 0;
  const later = [];
  const fx = await setUp(p, {
    effects: async (client) => {
      if (calls++ > 0) return;
      // The first time: its server process is terminated while a statement of the effects runs.
      const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
      // (Caught at once: it may fail before the terminating query answers.)
      const sleeping = client.query('SELECT pg_sleep(5)').catch((error) => later.push(error));
      await sleep(100);
      await killer.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await sleeping;
      // The effects go on (they caught it): each call fails with the server's code, not a connection error without one.
      await sleep(100);
      await client.query('SELECT 1').catch((error) => later.push(error));
    },
  });
  t.after(() => fx.log.close());
  await assert.rejects(fx.log.commit(fx.lease, fx.commit), { code: '57P01' });
  assert.deepEqual(
    later.map((e) => e.code),
    ['57P01', '57P01'],
    later.map((e) => e.message),
  );
  assert.deepEqual([...(await fx.log.marks(fx.lease, [fx.a, fx.b])).keys()], [], 'nothing written');
  const done = await fx.log.commit(fx.lease, fx.commit);
  assert.equal(done.ids.length, 2);
});

/** A log with `effects` on `p` over `n` partitions, each leased, one event each read: a commit per partition. */
async function partitionsSetUp(p, n, options) {
  const space = await preparePg(p, SCHEMA, fresh('fn'), n);
  const log = new PgLog(p, space, n, options);
  const leases = [];
  const commits = [];
  for (let i = 0; i < n; i++) {
    const [id] = await appendEventsPg(p, space, i, [[`k${i}`, `${i}`]]);
    const lease = await log.acquire(i, 'w1', 10_000);
    await log.read(lease, '>', 10);
    const sid = `k${i}@${id}`;
    leases.push(lease);
    commits.push({
      outputs: [
        { sid, seq: 1, key: `k${i}`, payload: Buffer.from(`P${i}a`) },
        { sid, seq: 2, key: `k${i}`, payload: Buffer.from(`P${i}b`) },
      ],
      acks: [id],
      ended: [sid],
      endedSeqs: [2],
      serial: 1,
      ids: true,
    });
  }
  return { space, log, leases, commits };
}

test('commits of several partitions in one turn: one transaction, one statement, one call of the effects, each its ids', async () => {
  const p = loggingPool();
  const seen = [];
  const fx = await partitionsSetUp(p, 4, {
    effects: async (client, written) => {
      p.statements.push(['effects', '']);
      await client.query('SELECT 1');
      seen.push(written.map((o) => `${o.partition}:${o.data}`));
    },
  });
  // Partition 2's lease is lost to another worker before the turn: its commit is refused, writes nothing and runs
  // no effects; the others' are served by the same statement.
  await fx.log.release(fx.leases[2]);
  const other = new PgLog(p, fx.space, 4);
  await other.acquire(2, 'w2', 10_000);
  p.statements.length = 0;
  const results = await Promise.allSettled(fx.commits.map((commit, i) => fx.log.commit(fx.leases[i], commit)));
  assert.deepEqual(kindsOf(p.statements), ['BEGIN+SELECT', 'effects', 'SELECT', 'COMMIT'], JSON.stringify(p.statements));
  assert.equal(p.statements[0][1].match(/commit_9\(/g).length, 4, 'one call per partition in the one statement');
  // The written outputs of the partitions committed, in partition order, each partition's in its commit's order.
  assert.deepEqual(seen, [['0:P0a', '0:P0b', '1:P1a', '1:P1b', '3:P3a', '3:P3b']]);
  assert.equal(results[2].status, 'rejected');
  assert.equal(results[2].reason.code, 'ERR_VELO_FENCED');
  for (const i of [0, 1, 3]) {
    assert.equal(results[i].status, 'fulfilled');
    const entries = await outputEntriesPg(p, fx.space, i);
    assert.deepEqual(
      results[i].value.ids,
      entries.map(([id]) => id.toString()),
      `partition ${i}: the ids of its outputs, as stored`,
    );
    assert.deepEqual(
      entries.map(([, fields]) => fields[7].toString()),
      [`P${i}a`, `P${i}b`],
    );
  }
  assert.deepEqual(await outputEntriesPg(p, fx.space, 2), [], 'the fenced partition wrote nothing');
  // Their retries (same serials) write nothing and run no effects: the ids of the first.
  const again = await Promise.all([0, 1, 3].map((i) => fx.log.commit(fx.leases[i], fx.commits[i])));
  assert.deepEqual(
    again.map((r) => r.ids),
    [0, 1, 3].map((i) => results[i].value.ids),
  );
  assert.equal(seen.length, 1);
  await other.close();
  await fx.log.close();
  await p.end();
});

test("effects that throw on one partition's outputs in a shared turn: its commit fails alone, the others commit once", async () => {
  const p = loggingPool();
  const calls = [];
  const fx = await partitionsSetUp(p, 3, {
    effects: async (client, written) => {
      const partitions = [...new Set(written.map((o) => o.partition))];
      calls.push(partitions);
      for (const partition of partitions) {
        const n = written.filter((o) => o.partition === partition).length;
        await client.query(`INSERT INTO ${SCHEMA}_ledger (p, n) VALUES ($1, $2)`, [partition, n]);
      }
      if (partitions.includes(1)) throw new Error('the ledger refused partition 1');
    },
  });
  await p.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA}_ledger (p integer, n integer)`);
  await p.query(`DELETE FROM ${SCHEMA}_ledger`);
  const results = await Promise.allSettled(fx.commits.map((commit, i) => fx.log.commit(fx.leases[i], commit)));
  assert.equal(results[1].status, 'rejected');
  assert.match(results[1].reason.message, /the ledger refused partition 1/);
  assert.equal(results[0].status, 'fulfilled');
  assert.equal(results[2].status, 'fulfilled');
  // The shared transaction rolled back, then each commit alone: 0 and 2 committed with their rows once; 1 nothing.
  const { rows } = await p.query(`SELECT p, n FROM ${SCHEMA}_ledger ORDER BY p`);
  assert.deepEqual(rows, [
    { p: 0, n: 2 },
    { p: 2, n: 2 },
  ]);
  assert.deepEqual(await outputEntriesPg(p, fx.space, 1), []);
  assert.equal((await outputEntriesPg(p, fx.space, 0)).length, 2);
  // One call for the shared turn, then one per partition alone (in the order their retries ran).
  assert.deepEqual(calls[0], [0, 1, 2], 'the shared turn: one call with every partition');
  assert.deepEqual(
    calls
      .slice(1)
      .map((c) => c.join())
      .sort(),
    ['0', '1', '2'],
  );
  await fx.log.close();
  await p.end();
});

test('commits of several partitions in one turn without effects: one statement', async () => {
  const p = loggingPool();
  const fx = await partitionsSetUp(p, 3, {});
  p.statements.length = 0;
  const results = await Promise.all(fx.commits.map((commit, i) => fx.log.commit(fx.leases[i], commit)));
  assert.deepEqual(kindsOf(p.statements), ['SELECT'], JSON.stringify(p.statements));
  for (const [i, result] of results.entries()) {
    const entries = await outputEntriesPg(p, fx.space, i);
    assert.deepEqual(
      result.ids,
      entries.map(([id]) => id.toString()),
    );
  }
  await fx.log.close();
  await p.end();
});
