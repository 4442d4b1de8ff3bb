// What a paused owner can hold back on Postgres, on a private postgres. A statement that holds a partition's lease
// or cursor row returns a small bounded result: the server sends it whole into the socket buffers, so an owner
// paused while receiving it (SIGSTOP) does not keep the statement active with the locks held (where neither the
// idle-in-transaction timeout nor a takeover could end it). A read of large entries returns their fields from a
// plain SELECT after the locking statement, all of them, in order. And a new process's set-up (ensurePartitions)
// does not wait on partition rows an owner's statement has locked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog, appendEventsPg, preparePg } from '#testing';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_bounded';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const within = (promise, ms) => Promise.race([promise.then(() => true), sleep(ms).then(() => false)]);

/** A pool whose `locked()` lists the size (bytes of its rows as JSON) of each result of a statement that locks rows. */
function measuringPool() {
  const p = postgres.pool({ max: 4 });
  const sizes = [];
  const query = p.query.bind(p);
  p.query = async (config, ...rest) => {
    const result = await query(config, ...rest);
    const text = typeof config === 'string' ? config : config.text;
    if (/FOR (KEY SHARE|UPDATE)/.test(text)) sizes.push(JSON.stringify(result.rows).length);
    return result;
  };
  p.locked = () => sizes;
  return p;
}

test('a read of large entries: the statement that locks returns a bounded result, the entries come whole', async () => {
  const measured = measuringPool();
  const space = await preparePg(pool(), SCHEMA, 'big', 1);
  const log = new PgLog(measured, space, 1);
  const pad = 'x'.repeat(20 * 1024);
  const events = Array.from({ length: 200 }, (_, n) => [`k${n % 7}`, Buffer.from(JSON.stringify({ n, pad }))]);
  for (let i = 0; i < events.length; i += 50) await appendEventsPg(pool(), space, 0, events.slice(i, i + 50));
  const lease = await log.acquire(0, 'w1', 60_000);
  const check = (entries) => {
    assert.equal(entries.length, 200);
    entries.forEach((e, n) => {
      assert.equal(e.key, `k${n % 7}`);
      assert.equal(JSON.parse(Buffer.from(e.payload).toString()).n, n);
    });
  };
  check((await log.read(lease, '>', 500)).entries);
  // Replay (pending entries from the start), as a takeover reads them.
  check((await log.read(lease, '0', 500)).entries);
  const sizes = measured.locked();
  assert.ok(sizes.length >= 2);
  for (const size of sizes) assert.ok(size < 128 * 1024, `a locking statement returned ${size} bytes`);
  // Small entries still come in the locking statement's one round trip.
  await appendEventsPg(pool(), space, 0, [['s', Buffer.from('{"n":1}')]]);
  const before = sizes.length;
  const { entries } = await log.read(lease, '>', 10);
  assert.deepEqual(
    entries.map((e) => Buffer.from(e.payload).toString()),
    ['{"n":1}'],
  );
  assert.equal(sizes.length, before + 1);
  await log.close();
});

test("a new process's set-up does not wait on partition rows an owner's statement holds", async () => {
  const space = await preparePg(pool(), SCHEMA, 'locked', 2);
  const owner = await pool().connect();
  try {
    await owner.query('BEGIN');
    // As an owner's read in flight: the cursor row updated, the lease row held FOR KEY SHARE.
    await owner.query(`UPDATE ${space.S}.cursors SET delivered_ms = delivered_ms WHERE fn = $1 AND p = 0`, [space.fn]);
    await owner.query(`UPDATE ${space.S}.heads SET last_ms = last_ms WHERE fn = $1 AND p = 0`, [space.fn]);
    await owner.query(`SELECT 1 FROM ${space.S}.leases WHERE fn = $1 AND p = 0 FOR KEY SHARE`, [space.fn]);
    assert.equal(await within(preparePg(pool(), SCHEMA, 'locked', 2), 5000), true, 'the set-up did not wait');
  } finally {
    await owner.query('ROLLBACK');
    owner.release();
  }
});
