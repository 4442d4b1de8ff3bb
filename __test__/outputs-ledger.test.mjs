// sessionOutputs into the user's own database, exactly once, on both backends (docs/durable/outputs.md):
// - `after` on Redis as on Postgres: the same meaning (per partition, go on after that id) and the same refusals;
// - `batches()`: at most `max` outputs, `from`/`to` chained, each partition's outputs in order;
// - a position a trim has passed goes on at the oldest output kept;
// - the guard: of two readers that read the same batch, one writes it, the other rolls back and reads on from the
//   stored position (also when the second waits on the first's row lock);
// - examples/outputs-ledger.mjs on each backend: two reader processes racing, one reader and one worker killed -9
//   and replaced, the ledger exact and in order per account, every other child exiting 0 with a clean stderr.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { account, POSITION, LEDGER, readIntoLedger, round, writeBatch, checkLedger } from '../examples/outputs-ledger.mjs';
import { run } from './helpers/child.mjs';
import { startRedis } from './helpers/redis-server.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();
let redis;
let redisClient;
before(async () => {
  redis = await startRedis();
  redisClient = await redis.client();
});
after(async () => {
  await redis?.stop();
});

const EXAMPLE = fileURLToPath(new URL('../examples/outputs-ledger.mjs', import.meta.url));
const PARTITIONS = 4;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let names = 0;

/** The options of a fresh function on `kind`'s backend. */
function shape(kind) {
  const name = `ol${++names}`;
  return kind === 'redis'
    ? { client: redisClient, name, partitions: PARTITIONS }
    : { client: pool(), schema: 'velo_ol', name, partitions: PARTITIONS };
}

/** The first `n` items of `iterable` (then the loop ends). */
async function take(iterable, n) {
  const got = [];
  if (n === 0) return got;
  for await (const x of iterable) if (got.push(x) === n) break;
  return got;
}

/** Runs `account` on `shared` for `events` events over 12 keys until every output is stored; returns them all. */
async function outputsOf(shared, events = 60) {
  const worker = sessionWorker(account, { ...shared, version: 'v1' });
  const sent = new Map();
  const producer = sessionProducer(shared);
  for (let r = 0; r < events / 12; r++) await producer.sendMany(round(r, 12, sent));
  const all = await take(sessionOutputs(shared), events);
  await worker.close();
  return all;
}

/** Per partition, its items' ids in order. */
function idsByPartition(items) {
  const by = Array.from({ length: PARTITIONS }, () => []);
  for (const o of items) by[o.partition].push(o.id);
  return by;
}

const parts = (id) => {
  const [ms, seq = '0'] = id.split('-');
  return [BigInt(ms), BigInt(seq)];
};
const later = (a, b) => {
  const [x, y] = [parts(a), parts(b)];
  return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
};

for (const kind of ['redis', 'postgres']) {
  test(`${kind}: after and batches refuse hostile values with the same codes on both backends`, () => {
    const shared = shape(kind);
    const refused = (after, code) =>
      assert.throws(() => sessionOutputs({ ...shared, after }), { code }, `after ${inspect(after)}`);
    for (const bad of [null, 'x', 5, true, [], ['1-0'], new Map([[0, '1-0']]), () => {}, new Date()])
      refused(bad, 'ERR_INVALID_ARG_TYPE');
    for (const key of ['4', '-1', 'x', '01', '1.5', '1e0', ' 1', 'NaN', '4294967296'])
      refused({ [key]: '1-0' }, 'ERR_OUT_OF_RANGE');
    // (The message names the key as what is out of range, not its output id.)
    assert.throws(() => sessionOutputs({ ...shared, after: { [PARTITIONS]: '1-0' } }), {
      message: new RegExp(`options.after has the key "${PARTITIONS}": its keys must be partition numbers, 0 to ${PARTITIONS - 1}$`),
    });
    for (const id of [5, null, undefined, {}, ['1-0'], 1n]) refused({ 0: id }, 'ERR_INVALID_ARG_TYPE');
    for (const id of [
      '',
      'abc',
      '1-2-3',
      '-1',
      '1-',
      '-',
      ' 1-0',
      '1-0\n',
      '1.5-0',
      '0x10-0',
      '18446744073709551616-0',
      '1-18446744073709551616',
      '123456789012345678901-0',
    ])
      refused({ 0: id }, 'ERR_INVALID_ARG_VALUE');
    // Accepted: both parts to 2^64 - 1, the seq left out.
    sessionOutputs({ ...shared, after: { 0: '18446744073709551615-18446744073709551615', 1: '7', [PARTITIONS - 1]: '0-0' } });
    sessionOutputs({ ...shared, after: Object.assign(Object.create(null), { 0: '1-1' }) });
    const outputs = sessionOutputs(shared);
    for (const max of [0, -1, 1.5, '5', 100_001, NaN, Infinity, null])
      assert.throws(() => outputs.batches({ max }), { code: 'ERR_OUT_OF_RANGE' }, `max ${max}`);
    for (const options of [5, null, 'x']) assert.throws(() => outputs.batches(options), { code: 'ERR_INVALID_ARG_TYPE' });
    if (kind === 'redis') {
      assert.throws(() => sessionOutputs({ ...shared, group: 'g', after: { 0: '1-0' } }), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => sessionOutputs({ ...shared, group: 'g' }).batches(), { code: 'ERR_INVALID_ARG_VALUE' });
    }
  });

  test(`${kind}: after goes on after each partition's id (the rest from the start); batches carry the same outputs, at most max, from/to chained`, async () => {
    const shared = shape(kind);
    const all = await outputsOf(shared);
    const by = idsByPartition(all);
    assert.ok(
      by.every((ids) => ids.length >= 6),
      'every partition has outputs',
    );
    // Partition 0 after its third output, 1 after an id given as `<ms>` only, 2 after an id before all, 3 from its start.
    const given = { 0: by[0][2], 1: by[1][2].split('-')[0], 2: '0-1' };
    const expected = by.map((ids, p) => (given[p] === undefined ? ids : ids.filter((id) => later(id, given[p]))));
    const total = expected.reduce((n, ids) => n + ids.length, 0);
    assert.ok(total < all.length);

    const items = await take(sessionOutputs({ ...shared, after: given }), total);
    assert.deepEqual(idsByPartition(items), expected);

    const batches = [];
    let n = 0;
    for await (const batch of sessionOutputs({ ...shared, after: given }).batches({ max: 5 })) {
      batches.push(batch);
      if ((n += batch.outputs.length) >= total) break;
    }
    assert.equal(n, total);
    assert.deepEqual(idsByPartition(batches.flatMap((b) => b.outputs)), expected);
    assert.deepEqual(batches[0].from, given, 'the first batch is read after `after`, as given');
    for (const [i, b] of batches.entries()) {
      assert.ok(b.outputs.length >= 1 && b.outputs.length <= 5);
      if (i > 0) assert.deepEqual(b.from, batches[i - 1].to);
      const to = { ...b.from };
      for (const o of b.outputs) to[o.partition] = o.id;
      assert.deepEqual(b.to, to);
    }
    // A reader started at the last `to` has nothing more (a new output after it would be its next).
    const reader = sessionOutputs({ ...shared, after: batches.at(-1).to });
    const next = reader.batches({ max: 5 }).next();
    const none = await Promise.race([next.then(() => 'batch'), sleep(300).then(() => 'none')]);
    await reader[Symbol.asyncDispose]();
    assert.equal(none, 'none');
    assert.deepEqual(await next, { done: true, value: undefined });
  });

  test(`${kind}: from 'end': the first batch is read after the ends the reader started at`, async () => {
    const shared = shape(kind);
    const all = await outputsOf(shared);
    const ends = Object.fromEntries(idsByPartition(all).map((ids, p) => [p, ids.at(-1)]));
    const reader = sessionOutputs({ ...shared, from: 'end' });
    const first = reader.batches().next();
    // (The reader finds the ends at its first read: give it time to connect, under load too.)
    await sleep(1000);
    const worker = sessionWorker(account, { ...shared, version: 'v1' });
    await sessionProducer(shared).send('acct-0', { n: 60, amount: 1 });
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(() => resolve({ value: null }), 30_000)));
    const { value } = await Promise.race([first, late]);
    clearTimeout(timer);
    await reader[Symbol.asyncDispose]();
    assert.ok(value !== null, 'the new output came');
    await worker.close();
    assert.deepEqual(value.from, ends);
    assert.deepEqual(
      value.outputs.map((o) => [o.key, o.value.n]),
      [['acct-0', 60]],
    );
  });

  test(`${kind}: a position a trim has passed goes on at the oldest output kept, without an error`, async () => {
    const shared = shape(kind);
    const all = await outputsOf(shared);
    const ids = idsByPartition(all)[0];
    // The worker's trim, as outputMaxLen makes it: the partition's first three outputs gone.
    if (kind === 'redis') await redisClient.sendCommand(['XTRIM', `velo:{${shared.name}:p0}:out`, 'MINID', ids[3]]);
    else {
      const [ms, seq] = ids[3].split('-');
      await pool().query(`DELETE FROM velo_ol.outputs WHERE fn = $1 AND p = 0 AND (ms, seq) < ($2::bigint, $3::bigint)`, [
        shared.name,
        ms,
        seq,
      ]);
    }
    const [batch] = await take(sessionOutputs({ ...shared, after: { 0: ids[0] } }).batches({ max: 1 }), 1);
    assert.equal(batch.outputs[0].partition, 0);
    assert.equal(batch.outputs[0].id, ids[3]);
    assert.deepEqual(batch.from, { 0: ids[0] });
    assert.deepEqual(batch.to, { 0: ids[3] });
  });

  test(`${kind}: two readers read the same batch: the guard lets one write it, the other rolls back (also waiting on the first's lock) and reads on from the stored position`, async () => {
    const shared = shape(kind);
    await pool().query(LEDGER);
    await pool().query(POSITION);
    await pool().query('TRUNCATE demo_ledger');
    await pool().query(`INSERT INTO demo_ledger_position VALUES ($1, '{}')`, [shared.name]);
    const all = await outputsOf(shared);
    const stored = async () =>
      (await pool().query('SELECT after FROM demo_ledger_position WHERE name = $1', [shared.name])).rows[0].after;
    const rows = async () => Number((await pool().query('SELECT count(*) FROM demo_ledger')).rows[0].count);
    const first = async () => (await take(sessionOutputs({ ...shared, after: await stored() }).batches({ max: 7 }), 1))[0];

    const a = await first();
    const b = await first();
    assert.deepEqual(b, a, 'the same batch');
    assert.equal(await writeBatch(pool(), shared.name, a), true);
    assert.equal(await writeBatch(pool(), shared.name, b), false, 'the second is refused');
    assert.equal(await rows(), 7);

    // Racing: the second's guard waits on the first's row lock, then sees the position moved.
    const c = await first();
    assert.deepEqual(c.from, a.to);
    const tx = await pool().connect();
    try {
      await tx.query('BEGIN');
      await tx.query('UPDATE demo_ledger_position SET after = $2 WHERE name = $1 AND after = $3::jsonb', [
        shared.name,
        c.to,
        c.from,
      ]);
      const loser = writeBatch(pool(), shared.name, c);
      await sleep(200);
      await tx.query('COMMIT');
      assert.equal(await loser, false);
    } finally {
      tx.release();
    }
    // (The winner above moved the position without its rows: the ledger goes on after them.)
    assert.deepEqual(await stored(), c.to);
    assert.equal(await rows(), 7);
    await pool().query('TRUNCATE demo_ledger');
    await pool().query(`UPDATE demo_ledger_position SET after = '{}' WHERE name = $1`, [shared.name]);

    // Two readers writing the whole of it at once: every output once, in order per key.
    const ac = new AbortController();
    const readers = [1, 2].map(() => readIntoLedger(pool(), shared, { signal: ac.signal, max: 4 }));
    for (let i = 0; (await rows()) < all.length; i++) {
      assert.ok(i < 300, 'the ledger filled');
      await sleep(50);
    }
    await sleep(200);
    ac.abort();
    await Promise.all(readers);
    const sent = new Map();
    for (let r = 0; r < all.length / 12; r++) round(r, 12, sent);
    assert.equal(await checkLedger(pool(), sent), all.length);
    assert.deepEqual(await stored(), Object.fromEntries(idsByPartition(all).map((ids, p) => [p, ids.at(-1)])));
  });

  test(`${kind}: examples/outputs-ledger.mjs, two reader processes racing, a reader and a worker killed -9 and replaced: the ledger exact and in order per account; the others exit 0, stderr clean`, async () => {
    const { REDIS_URL: _r, DATABASE_URL: _d, ...env } = process.env;
    env.DATABASE_URL = `postgres://velo@127.0.0.1:${postgres.port}/postgres`;
    if (kind === 'redis') env.REDIS_URL = redis.url;
    const { stdout } = await run([EXAMPLE], { env, timeout: 120_000 });
    assert.match(stdout, /^killed reader-1 \(pid \d+\) with SIGKILL after round 7; reader-3 started$/m);
    assert.match(stdout, /^killed worker-1 \(pid \d+\) with SIGKILL after round 13; worker-3 started$/m);
    assert.match(
      stdout,
      new RegExp(`^function on ${kind === 'redis' ? 'Redis' : 'Postgres'}, 1000 events for 50 accounts$`, 'm'),
    );
    assert.match(stdout, /^ledger rows 1000 for 1000 events: each once, every account's in order: yes$/m);
    assert.match(
      stdout,
      /^shutdown reader-1 SIGKILL, reader-2 exit 0, reader-3 exit 0, worker-1 SIGKILL, worker-2 exit 0, worker-3 exit 0$/m,
    );
    if (kind === 'redis') assert.deepEqual(await redisClient.keys('velo:{ledger-demo*'), [], 'its keys removed');
  });
}
