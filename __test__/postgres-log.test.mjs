// What the log contract cannot show of the Postgres log (js/postgres/), on a private postgres: the row locks that
// fence an owner (a grant waits for an owner's write in flight, a renewal does not), entry ids given in commit order
// under concurrent appends (a reader of `id > cursor` loses none), the poll behind LISTEN/NOTIFY, the migrations, and
// the stable codes of bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { PgLog, appendEventsPg, preparePg } from '#testing';
import { fresh } from './helpers/redis-suite.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

const { SCHEMA_VERSION } = createRequire(import.meta.url)('../dist/postgres/log/schema.js');

usePostgres();

const SCHEMA = 'velo_log';
const ev = (key, n) => [key, Buffer.from(JSON.stringify({ n }))];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function open(partitions = 1, options = {}) {
  const space = await preparePg(pool(), SCHEMA, fresh('fn'), partitions);
  return { space, log: new PgLog(pool(), space, partitions, options) };
}

/** Settles within `ms` (true) or not (false). */
const within = (promise, ms) => Promise.race([promise.then(() => true), sleep(ms).then(() => false)]);

test('a grant waits for an owner write in flight (FOR KEY SHARE) and the late write after it is fenced; a renewal never waits', async () => {
  const { space, log } = await open();
  await appendEventsPg(pool(), space, 0, [ev('a', 1)]);
  const lease = await log.acquire(0, 'w1', 300);
  await log.read(lease, '>', 10);
  // An owner's transaction in flight: the lease row held FOR KEY SHARE, as every owner write holds it.
  const owner = await pool().connect();
  try {
    await owner.query('BEGIN');
    await owner.query(`SELECT token FROM ${space.S}.leases WHERE fn = $1 AND p = 0 FOR KEY SHARE`, [space.fn]);
    assert.equal(await within(log.renew(lease, 300), 1000), true, 'a renewal goes through the key share');
    await sleep(400); // the lease runs out meanwhile
    const grant = log.acquire(0, 'w2', 10_000);
    assert.equal(await within(grant, 300), false, 'the grant waits for the write in flight');
    await owner.query('COMMIT');
    const next = await grant;
    assert.equal(next.token, 'w2:2');
  } finally {
    owner.release();
  }
  // The paused owner wakes up: every write of its lease is refused with the FencedError the Redis log throws (a
  // refusal rolls back and gives its connection back to the pool: none is destroyed).
  let removed = 0;
  pool().on('remove', () => removed++);
  const fenced = { code: 'ERR_VELO_FENCED', name: 'FencedError' };
  await assert.rejects(log.commit(lease, { outputs: [], acks: [], ended: [] }), fenced);
  await assert.rejects(log.markClose(lease, 'a', 'a@1-0'), fenced);
  await assert.rejects(log.wake(lease, 'a', 'a@1-0', 1, 0, 'p'), fenced);
  await assert.rejects(log.read(lease, '>', 10), fenced);
  await assert.rejects(log.trim(lease), fenced);
  assert.equal(removed, 0, 'no connection destroyed by a refusal');
  await log.close();
});

test('a stale owner racing a takeover: none of its commits lands after the new owner took the partition', async () => {
  const { space, log } = await open();
  const [e1] = await appendEventsPg(pool(), space, 0, [ev('a', 1)]);
  const sid = `a@${e1}`;
  const old = await log.acquire(0, 'w1', 200);
  await log.read(old, '>', 10);
  let seq = 0;
  const landed = [];
  let fencedCount = 0;
  const stop = Date.now() + 900;
  // The old owner commits without a pause, past its lease's end; the new one takes over once it can.
  const racing = (async () => {
    while (Date.now() < stop) {
      const s = ++seq;
      try {
        await log.commit(old, { outputs: [{ sid, seq: s, key: 'a', payload: `old ${s}` }], acks: [], ended: [] });
        landed.push(s);
      } catch (error) {
        assert.equal(error.code, 'ERR_VELO_FENCED');
        fencedCount++;
      }
    }
  })();
  await sleep(250);
  let next;
  for (;;) {
    next = await log.acquire(0, 'w2', 10_000);
    if ('token' in next) break;
    await sleep(10);
  }
  const taken = seq;
  await log.commit(next, { outputs: [{ sid, seq: 1_000_000, key: 'a', payload: 'new' }], acks: [], ended: [] });
  await racing;
  assert.ok(fencedCount > 0, 'the old owner was fenced');
  assert.ok(landed.length > 0, 'the old owner committed while it held the lease');
  // Every commit that landed had begun before the grant returned; the output stream has them before the new owner's.
  assert.ok(
    Math.max(...landed) <= taken,
    `a commit of the old owner landed after the takeover (${Math.max(...landed)} > ${taken})`,
  );
  const { rows } = await pool().query(`SELECT oseq FROM ${space.S}.outputs WHERE fn = $1 ORDER BY ms, seq`, [space.fn]);
  assert.deepEqual(
    rows.map((r) => Number(r.oseq)),
    [...landed, 1_000_000],
  );
  await log.close();
});

test('entry ids are given in commit order: concurrent appends while the owner reads `>` lose none and repeat none', async () => {
  const { space, log } = await open();
  const lease = await log.acquire(0, 'w1', 30_000);
  const appended = [];
  const writers = Array.from({ length: 6 }, (_, w) =>
    (async () => {
      for (let i = 0; i < 30; i++) appended.push(...(await appendEventsPg(pool(), space, 0, [ev(`k${w}`, i), ev(`k${w}`, i)])));
    })(),
  );
  const read = [];
  let done = false;
  const all = Promise.all(writers).then(() => (done = true));
  while (!done) read.push(...(await log.read(lease, '>', 7)).entries.map((e) => e.id));
  await all;
  for (;;) {
    const { entries } = await log.read(lease, '>', 100);
    if (entries.length === 0) break;
    read.push(...entries.map((e) => e.id));
  }
  assert.equal(appended.length, 6 * 30 * 2);
  assert.equal(new Set(read).size, read.length, 'no entry delivered twice');
  assert.deepEqual([...read].sort(), [...appended].sort(), 'every entry delivered');
  assert.equal((await log.read(lease, '0', 1000)).entries.length, read.length, 'all pending');
  // An append waits for the head row: one held by an open transaction holds the next append until it commits.
  const holder = await pool().connect();
  try {
    await holder.query('BEGIN');
    await holder.query(`UPDATE ${space.S}.heads SET last_seq = last_seq WHERE fn = $1 AND p = 0`, [space.fn]);
    const append = appendEventsPg(pool(), space, 0, [ev('late', 1)]);
    assert.equal(await within(append, 200), false, 'the append waits for the head row');
    await holder.query('COMMIT');
    await append;
  } finally {
    holder.release();
  }
  await log.close();
});

test('wait: woken by NOTIFY long before its poll; an entry whose NOTIFY was lost is found by the poll', async () => {
  const { space, log } = await open(2, { pollInterval: 60_000 });
  const [e1] = await appendEventsPg(pool(), space, 0, [ev('a', 1)]);
  // The first wait subscribes (LISTEN); an append then wakes it at once.
  const first = log.wait(new Map([[0, e1]]), 20_000);
  await sleep(100);
  const started = Date.now();
  await appendEventsPg(pool(), space, 0, [ev('a', 2)]);
  assert.deepEqual(await first, [0]);
  assert.ok(Date.now() - started < 2000, 'woken by the notification');
  await log.close();
  // A log that polls every 50 ms; an entry written with no NOTIFY at all (as one sent before a LISTEN) is found.
  const polled = new PgLog(pool(), space, 2, { pollInterval: 50 });
  const waiting = polled.wait(new Map([[1, '0-0']]), 10_000);
  await sleep(100);
  await pool().query(
    `INSERT INTO ${space.S}.entries (fn, p, ms, seq, key, payload) VALUES ($1, 1, 1, 0, 'x', '\\x7b7d'::bytea)`,
    [space.fn],
  );
  assert.equal(await within(waiting, 2000), true, 'found by the poll');
  assert.deepEqual(await waiting, [1]);
  await polled.close();
  // `listen: false` (behind a transaction-mode pooler): no connection held, the poll alone finds an append.
  const before = pool().totalCount;
  const pollOnly = new PgLog(pool(), space, 2, { pollInterval: 50, listen: false });
  const [last] = await appendEventsPg(pool(), space, 0, [ev('a', 3)]);
  const quiet = pollOnly.wait(new Map([[0, last]]), 10_000);
  await sleep(100);
  await appendEventsPg(pool(), space, 0, [ev('a', 4)]);
  assert.deepEqual(await quiet, [0]);
  assert.ok(pool().totalCount <= before + 1, 'no LISTEN connection taken');
  assert.equal(pool().idleCount, pool().totalCount, 'every connection back in the pool');
  await pollOnly.close();
});

/** A pool of its own whose `query` calls (velo-stream's statements on it) are logged; `query` sends one unlogged. */
function countingPool() {
  const p = postgres.pool({ max: 4 });
  const statements = [];
  const query = p.query.bind(p);
  p.query = (config, values) => {
    statements.push(typeof config === 'string' ? config : config.text);
    return query(config, values);
  };
  return { p, statements, query };
}

test('wait after a read that took all there was: no statement until a NOTIFY or the poll; one heard since ends it at once', async () => {
  const { p, statements, query } = countingPool();
  const errors = [];
  const space = await preparePg(p, SCHEMA, fresh('fn'), 1);
  const log = new PgLog(p, space, 1, { pollInterval: 60_000, onError: (e) => errors.push(e) });
  const lease = await log.acquire(0, 'w1', 60_000);
  const tail = async () => {
    const read = await log.read(lease, '>', 100);
    return read.entries.length > 0 ? read.entries.at(-1).id : read.tail;
  };
  await appendEventsPg(p, space, 0, [ev('a', 1)]);
  // The first wait subscribes (LISTEN); it looks at once (no read of the partition yet) and finds the entry.
  assert.deepEqual(await log.wait(new Map([[0, '0-0']]), 60_000), [0]);
  await sleep(200);
  // A read that took all there was, then a wait: nothing is asked of the server until the append's NOTIFY.
  let at = await tail();
  let count = statements.length;
  const quiet = log.wait(new Map([[0, at]]), 60_000);
  assert.equal(await within(quiet, 300), false, 'nothing to find');
  assert.deepEqual(statements.slice(count), [], 'no statement sent by the wait');
  count = statements.length;
  await appendEventsPg(p, space, 0, [ev('a', 2)]);
  assert.deepEqual(await quiet, [0]);
  assert.equal(statements.length - count, 1, "the append's statement alone: its NOTIFY names the entry");
  // An append whose NOTIFY came between the read and the wait: the wait ends at once, without a look, since the
  // NOTIFY named an entry after its position (its poll is a minute away).
  at = await tail();
  await appendEventsPg(p, space, 0, [ev('a', 3)]);
  await sleep(200);
  count = statements.length;
  assert.deepEqual(await log.wait(new Map([[0, at]]), 60_000), [0]);
  assert.equal(statements.length, count, 'no look');
  // One named an entry at or before the position (read already): the wait waits, without a look.
  at = await tail();
  count = statements.length;
  assert.deepEqual(await log.wait(new Map([[0, at]]), 300), [], 'nothing to find in its time');
  assert.deepEqual(statements.slice(count), [], 'no statement sent by the wait');
  // The LISTEN connection lost after the read: an append meanwhile notifies no one, and the wait looks at once.
  at = await tail();
  const admin = postgres.pool({ max: 1 });
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`,
  );
  await admin.end();
  for (let i = 0; i < 100 && errors.length === 0; i++) await sleep(20);
  assert.ok(errors.length > 0, 'the lost connection reported');
  await appendEventsPg(p, space, 0, [ev('a', 4)]);
  assert.deepEqual(await log.wait(new Map([[0, at]]), 60_000), [0]);
  // A NOTIFY that names no entry (a release before this one sent the partition alone): the wait looks.
  at = await tail();
  const old = log.wait(new Map([[0, at]]), 60_000);
  await sleep(100);
  await query(
    `INSERT INTO ${space.S}.entries (fn, p, ms, seq, key, payload) VALUES ($1, 0, 9999999999999, 0, 'x', '\\x7b7d'::bytea)`,
    [space.fn],
  );
  count = statements.length;
  await query(`SELECT pg_notify($1, '0')`, [space.channel]);
  assert.deepEqual(await old, [0]);
  assert.equal(statements.length - count, 1, `one look: ${JSON.stringify(statements.slice(count))}`);
  await log.close();
  await p.end();
});

test('renewals asked in one turn go in one statement, each answered for its own lease', async () => {
  const { p, statements, query } = countingPool();
  const space = await preparePg(p, SCHEMA, fresh('fn'), 4);
  const log = new PgLog(p, space, 4, { listen: false });
  const leases = [];
  for (const partition of [0, 1, 2, 3]) leases.push(await log.acquire(partition, 'w1', 60_000));
  // Partition 3's lease taken by another owner meanwhile: its renewal is refused, the others' granted.
  await p.query(`UPDATE ${space.S}.leases SET token = 'other' WHERE fn = $1 AND p = 3`, [space.fn]);
  const before = statements.length;
  assert.deepEqual(await Promise.all(leases.map((lease) => log.renew(lease, 60_000))), [true, true, true, false]);
  assert.equal(statements.length - before, 1, 'one statement');
  // Renewals of separate turns go alone; a bad ttl is refused at the call.
  assert.equal(await log.renew(leases[0], 60_000), true);
  assert.equal(statements.length - before, 2);
  await assert.rejects(log.renew(leases[1], -1), { code: 'ERR_OUT_OF_RANGE' });
  await log.close();
  await p.end();
});

test('migrations: applied once, also by workers starting together; a schema of a newer release is refused', async () => {
  const schema = 'velo_migrate';
  await Promise.all(Array.from({ length: 4 }, () => preparePg(pool(), schema, 'f', 4)));
  const { rows } = await pool().query(`SELECT version FROM ${schema}.migrations ORDER BY version`);
  assert.deepEqual(
    rows.map((r) => r.version),
    Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1),
  );
  const { rows: leases } = await pool().query(`SELECT count(*)::int AS n FROM ${schema}.leases WHERE fn = 'f'`);
  assert.equal(leases[0].n, 4);
  await pool().query(`INSERT INTO ${schema}.migrations (version) VALUES (99)`);
  await assert.rejects(preparePg(pool(), schema, 'f', 4), {
    code: 'ERR_VELO_SCHEMA_VERSION',
    message: /version 99, which keeps workers from version 99 on/,
    found: 99,
    expected: SCHEMA_VERSION,
  });
});

test('bad input gets stable codes', async () => {
  await assert.rejects(preparePg({}, SCHEMA, 'f', 1), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(preparePg(pool(), 'Bad-Name', 'f', 1), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(preparePg(pool(), 'pg_velo', 'f', 1), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(preparePg(pool(), SCHEMA, 'a name', 1), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(preparePg(pool(), SCHEMA, 'f', 0), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(preparePg(pool(), SCHEMA, 'f', 16385), { code: 'ERR_OUT_OF_RANGE' });
  const { space, log } = await open(2);
  await assert.rejects(log.acquire(2, 'w', 1000), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(log.lag(-1), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(log.acquire(0, 'w', Number.NaN), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(log.acquire(0, 'w', 0), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(log.heartbeat('w', Infinity), { code: 'ERR_OUT_OF_RANGE' });
  const lease = await log.acquire(0, 'w', 10_000);
  await assert.rejects(log.entries(lease, ['nope']), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(log.read(lease, '1-2-3', 10), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(log.read(lease, '>', 0), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(appendEventsPg(pool(), space, 0, [['a\0b', '{}']]), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => new PgLog(pool(), space, 2, { pollInterval: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => new PgLog(pool(), space, 2, { listen: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(log.wake(lease, 'a', 'a@1-0', 1, Number.NaN, 'p'), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(
    log.commit(lease, { outputs: [], acks: [], ended: [], kept: [{ key: 'a', sid: 'a@1-0', state: '' }], retention: -5 }),
    {
      code: 'ERR_OUT_OF_RANGE',
    },
  );
  // An id past the largest bigint reads as it (idBefore makes one): the order still holds.
  assert.deepEqual((await log.read(lease, '0-18446744073709551615', 10)).entries, []);
  await log.close();
  assert.ok(postgres.port > 0);
});
