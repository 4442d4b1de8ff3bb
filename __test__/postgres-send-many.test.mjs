// A Postgres producer's calls, on a private postgres: `send` is one statement, `sendMany` one transaction (one
// statement) per call whatever the partitions it touches, each key's events in order; concurrent calls over the same
// partitions in different orders lock the head rows in partition order and never deadlock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresProducer } from 'velo-stream/postgres';
import { fresh } from './helpers/redis-suite.mjs';
import { postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_send_many';

/** A pool that counts what is sent through it: its own statements and its clients' checkouts (transactions). */
function countingPool() {
  const p = postgres.pool({ max: 8 });
  const counts = { queries: 0, connects: 0 };
  const query = p.query.bind(p);
  p.query = (...args) => {
    counts.queries++;
    return query(...args);
  };
  const connect = p.connect.bind(p);
  p.connect = (...args) => {
    // (pg-pool's own query() checks a client out with a callback: counted as its query.)
    if (typeof args[0] !== 'function') counts.connects++;
    return connect(...args);
  };
  p.counts = counts;
  return p;
}

test('sendMany over many partitions is one transaction (one statement), each key in order; send is one statement', async () => {
  const p = countingPool();
  const shared = { pool: p, schema: SCHEMA, name: fresh('fn'), partitions: 16 };
  const producer = postgresProducer(shared);
  await producer.send('warm-up', 0); // the tables made
  const events = [];
  for (let n = 0; n < 10; n++) for (let k = 0; k < 40; k++) events.push([`k${k}`, { k, n }]);
  const touched = new Set(events.map(([key]) => producer.partitionOf(key)));
  assert.ok(touched.size >= 10, `many partitions: ${touched.size}`);
  p.counts.queries = 0;
  p.counts.connects = 0;
  const ids = await producer.sendMany(events);
  assert.deepEqual(p.counts, { queries: 1, connects: 0 }, 'one statement, no transaction of several');
  assert.equal(ids.length, events.length);
  // Each key's events in order: ids ascending within its partition, in the order sent.
  const byKey = new Map();
  events.forEach(([key], i) => byKey.set(key, [...(byKey.get(key) ?? []), ids[i]]));
  const order = (a, b) => {
    const [am, as] = a.split('-').map(BigInt);
    const [bm, bs] = b.split('-').map(BigInt);
    return am === bm ? (as < bs ? -1 : 1) : am < bm ? -1 : 1;
  };
  for (const [key, list] of byKey) assert.deepEqual([...list].sort(order), list, key);
  // Stored as sent: each partition's entries, by id, are its events in the call's order.
  const { rows } = await p.query(`SELECT p, key, payload FROM ${SCHEMA}.entries WHERE fn = $1 AND key <> 'warm-up' ORDER BY p, ms, seq`, [
    shared.name,
  ]);
  const stored = rows.map((r) => `${r.p} ${r.key} ${r.payload}`);
  const expected = [...touched]
    .sort((a, b) => a - b)
    .flatMap((part) =>
      events.filter(([key]) => producer.partitionOf(key) === part).map(([key, e]) => `${part} ${key} ${JSON.stringify(e)}`),
    );
  assert.deepEqual(stored, expected);
  p.counts.queries = 0;
  await producer.send('one', 1);
  assert.deepEqual(p.counts, { queries: 1, connects: 0 }, 'send: one statement');
  await p.end();
});

test('concurrent sendMany calls over the same partitions, in opposite orders, never deadlock', async () => {
  const p = countingPool();
  const shared = { pool: p, schema: SCHEMA, name: fresh('fn'), partitions: 8 };
  const producer = postgresProducer(shared);
  const keys = Array.from({ length: 32 }, (_, k) => `key-${k}`);
  const calls = [];
  for (let c = 0; c < 12; c++) {
    const list = c % 2 === 0 ? keys : [...keys].reverse();
    calls.push(producer.sendMany(list.map((key) => [key, { c }])));
  }
  const results = await Promise.all(calls);
  assert.equal(results.flat().length, 12 * keys.length);
  const { rows } = await p.query(`SELECT count(*)::int AS n FROM ${SCHEMA}.entries WHERE fn = $1`, [shared.name]);
  assert.equal(rows[0].n, 12 * keys.length);
  await p.end();
});
