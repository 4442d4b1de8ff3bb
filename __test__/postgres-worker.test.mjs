// The worker on Postgres through the public entry points (`velo-stream/postgres`): postgresWorker runs the engine
// redisWorker runs, postgresProducer sends, postgresOutputs reads. Sessions end by their idle time with each output
// once per (sid, seq); a session's kept state (keyState) starts the key's next one; a timer fires once; `effects`
// writes into a table of the user in the commit's transaction, and a throw there rolls the commit back and retries
// it, so each effect row is there once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresOutputs, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { streamFn } from '../index.mjs';
import { checkpointTotals, totals } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_worker';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;

/** Reads outputs until `n` came (or fails after `ms`); then a little longer, to catch one too many. */
async function readOutputs(options, n, ms = 20_000) {
  const signal = AbortSignal.timeout(ms);
  const got = [];
  for await (const item of postgresOutputs({ ...options, signal })) {
    got.push(item);
    if (got.length === n) break;
  }
  assert.equal(got.length, n, `${got.length} of ${n} outputs within ${ms} ms`);
  await sleep(300);
  const again = [];
  for await (const item of postgresOutputs({ ...options, signal: AbortSignal.timeout(300) })) again.push(item);
  assert.equal(again.length, n, 'no output beyond those expected');
  return got;
}

function assertOnce(outputs) {
  const seen = new Set();
  for (const o of outputs) {
    const id = `${o.sid}#${o.seq}`;
    assert.ok(!seen.has(id), `${id} written twice`);
    seen.add(id);
  }
}

test('postgresWorker runs sessions as redisWorker does: outputs per key in order, once per (sid, seq), sessions ended by idle time', async () => {
  const name = fresh('totals');
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: 4 };
  const errors = [];
  const worker = postgresWorker(totals({ idleTimeout: 300 }), { ...shared, leaseTtl: 2000, onError: (e) => errors.push(e) });
  const producer = postgresProducer(shared);
  try {
    const events = [];
    for (let round = 1; round <= 3; round++) for (let k = 0; k < 10; k++) events.push([`k${k}`, { n: round }]);
    const ids = await producer.sendMany(events);
    assert.equal(ids.length, 30);
    const fourth = await producer.send('k0', { n: 4 });
    assert.match(fourth, /^\d+-\d+$/);
    // Sessions end by the log's clock: k0's fourth event joins its session unless its entry came `idleTimeout` or
    // more after the third's (a loaded machine between the two sends).
    const ms = (id) => Number(id.slice(0, id.indexOf('-')));
    const joined = ms(fourth) - ms(ids[20]) < 300;
    const outputs = await readOutputs(shared, 31);
    assertOnce(outputs);
    for (let k = 0; k < 10; k++) {
      const mine = outputs.filter((o) => o.key === `k${k}`);
      const expected = k === 0 ? [1, 3, 6, joined ? 10 : 4] : [1, 3, 6];
      assert.deepEqual(
        mine.map((o) => o.value.total),
        expected,
        `k${k}'s totals`,
      );
      assert.equal(new Set(mine.map((o) => o.sid)).size, k === 0 && !joined ? 2 : 1, 'one session per key (and its log)');
      assert.equal(mine[0].partition, producer.partitionOf(`k${k}`));
    }
    await sleep(700);
    await producer.send('k0', { n: 100 });
    const later = await readOutputs(shared, 32);
    // (Outputs come in each partition's commit order, partition after partition: k0's last is its newest.)
    const last = later.filter((o) => o.key === 'k0').at(-1);
    assert.deepEqual(last.value, { n: 100, total: 100, count: 1 }, 'a session after the idle end starts afresh');
    assert.notEqual(last.sid, outputs[0].sid);
    assert.equal(await producer.lag('k0'), 0);
    assert.deepEqual(worker.stats().owned, [0, 1, 2, 3]);
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test('keyState and checkpoints on Postgres: the kept state starts the key next session; a timer fires once', async () => {
  const name = fresh('kept');
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: 2 };
  const errors = [];
  const worker = postgresWorker(checkpointTotals({ idleTimeout: 200 }, 0, 1), {
    ...shared,
    keyState: { retention: 60_000 },
    onError: (e) => errors.push(e),
  });
  const timers = streamFn(
    async function* timers(events, ctx) {
      for await (const e of events) {
        if (e.woke !== undefined) yield { woke: e.woke };
        else {
          ctx.wakeAt(ctx.entry.time + 300, { woke: e.n });
          yield { n: e.n };
        }
      }
    },
    { idleTimeout: 100 },
  );
  const tname = fresh('timers');
  const tshared = { ...shared, name: tname };
  const timerWorker = postgresWorker(timers, { ...tshared, onError: (e) => errors.push(e) });
  const producer = postgresProducer(shared);
  try {
    await producer.sendMany([
      ['cart', { n: 1 }],
      ['cart', { n: 2 }],
    ]);
    await readOutputs(shared, 2);
    await sleep(600);
    await producer.send('cart', { n: 3 });
    const outputs = await readOutputs(shared, 3);
    assert.deepEqual(outputs[2].value, { n: 3, total: 6, count: 3 }, 'started from the state the first session kept');
    assert.notEqual(outputs[2].sid, outputs[0].sid);
    assert.equal(worker.stats().keyStateStarts, 1);

    await postgresProducer(tshared).send('t', { n: 7 });
    const fired = await readOutputs(tshared, 2);
    assert.deepEqual(
      fired.map((o) => o.value),
      [{ n: 7 }, { woke: 7 }],
    );
    assert.deepEqual(errors, []);
  } finally {
    await Promise.all([worker.close(), timerWorker.close()]);
  }
});

test('effects: each written output reaches the user table in its commit transaction, once; a throw rolls the commit back and it is retried', async () => {
  const name = fresh('ledger');
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: 2 };
  await pool().query(`CREATE TABLE IF NOT EXISTS ledger_t (account text, n int, balance int, sid text, seq int)`);
  const errors = [];
  let calls = 0;
  const worker = postgresWorker(totals({ idleTimeout: 200 }), {
    ...shared,
    onError: (e) => errors.push(e),
    effects: async (tx, outputs) => {
      for (const o of outputs) {
        await tx.query('INSERT INTO ledger_t (account, n, balance, sid, seq) VALUES ($1, $2, $3, $4, $5)', [
          o.key,
          o.value.n,
          o.value.total,
          o.sid,
          o.seq,
        ]);
      }
      // The first call fails after its inserts: they roll back with the commit, which is retried.
      if (++calls === 1) throw new Error('effects failed once');
    },
  });
  const producer = postgresProducer(shared);
  try {
    const events = [];
    for (let n = 1; n <= 5; n++) for (const account of ['a', 'b', 'c']) events.push([account, { n }]);
    await producer.sendMany(events);
    const outputs = await readOutputs(shared, 15);
    assertOnce(outputs);
    const { rows } = await pool().query('SELECT account, n, balance FROM ledger_t ORDER BY account, n');
    assert.equal(rows.length, 15, 'one row per event');
    for (const account of ['a', 'b', 'c']) {
      assert.deepEqual(
        rows.filter((r) => r.account === account).map((r) => r.balance),
        [1, 3, 6, 10, 15],
      );
    }
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /effects failed once/);
  } finally {
    await worker.close();
  }
});

test('the Postgres entry points refuse bad options with coded errors', () => {
  const fn = totals();
  assert.throws(() => postgresWorker(fn, { pool: {}, name: 'x' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => postgresWorker(fn, { pool: pool(), name: 'x', schema: 'Bad-Schema' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => postgresWorker(fn, { pool: pool(), name: 'x', client: {} }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => postgresWorker(fn, { pool: pool(), name: 'x', effects: 1 }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => postgresWorker({}, { pool: pool(), name: 'x' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => postgresProducer({ pool: pool(), name: 'x', partitions: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => postgresOutputs({ pool: pool(), name: 'x', from: 'middle' }), { code: 'ERR_INVALID_ARG_VALUE' });
});
