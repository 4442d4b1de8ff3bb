// The Postgres log's reads of new entries asked for in the same turn of the event loop, for different partitions:
// one statement for them all, each partition answered as a read of its own would be (its entries, in order, up to
// its count, made pending, its position moved; with none, its tail), and each fenced by its own lease.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog, appendEventsPg, preparePg } from '#testing';
import { fresh } from './helpers/redis-suite.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_read_many';
const ev = (key, n) => [key, Buffer.from(JSON.stringify({ n }))];

/** The log's pool, its statements counted by their first words. */
function counting() {
  const inner = pool();
  const seen = [];
  const counted = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'query') {
        return (config, ...rest) => {
          seen.push(typeof config === 'string' ? config : config.text);
          return target.query(config, ...rest);
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { counted, seen };
}

const reads = (seen) => seen.filter((text) => /FOR UPDATE OF c/.test(text)).length;

test('reads of several partitions in one turn: one statement, each answered as alone, each fenced by its own lease', async () => {
  const space = await preparePg(pool(), SCHEMA, fresh('fn'), 4);
  const { counted, seen } = counting();
  const log = new PgLog(counted, space, 4);
  const written = {
    0: await appendEventsPg(pool(), space, 0, [ev('a', 1), ev('a', 2), ev('b', 3)]),
    1: await appendEventsPg(pool(), space, 1, [ev('c', 4)]),
    // A large event: past the read's bytes, its fields come by the second statement.
    3: await appendEventsPg(pool(), space, 3, [ev('d', 5), ['d', Buffer.alloc(40_000, 120)], ev('d', 6)]),
  };
  const leases = await Promise.all([0, 1, 2, 3].map((p) => log.acquire(p, 'w1', 30_000)));
  const before = reads(seen);
  const [r0, r1, r2, r3] = await Promise.all([
    log.read(leases[0], '>', 2),
    log.read(leases[1], '>', 10),
    log.read(leases[2], '>', 10),
    log.read(leases[3], '>', 10),
  ]);
  assert.equal(reads(seen) - before, 1, 'one statement for the four reads');
  assert.deepEqual(
    r0.entries.map((e) => e.id),
    written[0].slice(0, 2),
    'up to its count, in order',
  );
  assert.deepEqual(JSON.parse(r0.entries[1].payload.toString()), { n: 2 });
  assert.deepEqual(
    r1.entries.map((e) => e.id),
    written[1],
  );
  assert.deepEqual(r2, { entries: [], tail: '0-0' }, 'an empty partition: its tail');
  assert.deepEqual(
    r3.entries.map((e) => e.id),
    written[3],
  );
  assert.equal(r3.entries[1].payload.length, 40_000, 'the large entry whole');
  // Each position moved and each entry made pending, as by a read of its own.
  const [again0, again1, again2] = await Promise.all([
    log.read(leases[0], '>', 10),
    log.read(leases[1], '>', 10),
    log.read(leases[2], '>', 10),
  ]);
  assert.deepEqual(
    again0.entries.map((e) => e.id),
    written[0].slice(2),
  );
  assert.deepEqual(again1, { entries: [], tail: written[1][0] });
  assert.deepEqual(again2, { entries: [], tail: '0-0' });
  assert.deepEqual(
    (await log.read(leases[0], '0', 10)).entries.map((e) => e.id),
    written[0],
    'all pending',
  );
  // A lease lost (taken by another worker): that read is refused, the others in its statement are served.
  await appendEventsPg(pool(), space, 1, [ev('c', 7)]);
  await appendEventsPg(pool(), space, 2, [ev('e', 8)]);
  await log.release(leases[1]);
  const other = new PgLog(pool(), space, 4);
  await other.acquire(1, 'w2', 30_000);
  const [lost, served] = await Promise.allSettled([log.read(leases[1], '>', 10), log.read(leases[2], '>', 10)]);
  assert.equal(lost.status, 'rejected');
  assert.equal(lost.reason.code, 'ERR_VELO_FENCED');
  assert.equal(served.status, 'fulfilled');
  assert.equal(served.value.entries.length, 1);
  // A read alone in its turn is the single-partition statement, as before.
  const alone = reads(seen);
  await log.read(leases[0], '>', 10);
  assert.equal(reads(seen) - alone, 1);
  await other.close();
  await log.close();
});

test('lags and trims of several partitions in one turn: one statement each, each answered as alone, trims fenced', async () => {
  const space = await preparePg(pool(), SCHEMA, fresh('fn'), 3);
  const { counted, seen } = counting();
  const log = new PgLog(counted, space, 3);
  const written = {
    0: await appendEventsPg(pool(), space, 0, [ev('a', 1), ev('a', 2), ev('a', 3)]),
    1: await appendEventsPg(pool(), space, 1, [ev('b', 4), ev('b', 5)]),
  };
  const leases = await Promise.all([0, 1, 2].map((p) => log.acquire(p, 'w1', 30_000)));
  await log.read(leases[0], '>', 2);
  const lags = (seen) => seen.filter((text) => /^SELECT w\.p,\s+\(SELECT count/.test(text)).length;
  const before = lags(seen);
  assert.deepEqual(await Promise.all([0, 1, 2].map((p) => log.lag(p))), [1, 2, 0], 'undelivered entries of each');
  assert.equal(lags(seen) - before, 1, 'one statement for the three lags');
  const pinned = await Promise.all([0, 1, 2].map((p) => log.pinned(p)));
  assert.ok(pinned[0] >= 0);
  assert.deepEqual(pinned.slice(1), [0, 0], 'nothing pending: 0');
  // Partition 0: e1 and e2 delivered and pending; e1 acked. Partition 1: all delivered and acked.
  await log.commit(leases[0], { outputs: [], acks: [written[0][0]], ended: [] });
  await log.read(leases[1], '>', 10);
  await log.commit(leases[1], { outputs: [], acks: written[1], ended: [] });
  // Partition 2's lease is lost: its trim is refused; the others' are served by the same statement.
  await log.release(leases[2]);
  const other = new PgLog(pool(), space, 3);
  await other.acquire(2, 'w2', 30_000);
  const trims = (seen) => seen.filter((text) => /DELETE FROM \S+\.entries x USING b/.test(text)).length;
  const beforeTrims = trims(seen);
  const [t0, t1, t2] = await Promise.allSettled([0, 1, 2].map((p) => log.trim(leases[p])));
  assert.equal(trims(seen) - beforeTrims, 1, 'one statement for the three trims');
  assert.deepEqual([t0.value, t1.value], [1, 1], 'up to the oldest pending (e2), up to the last delivered (e5)');
  assert.equal(t2.status, 'rejected');
  assert.equal(t2.reason.code, 'ERR_VELO_FENCED');
  assert.deepEqual(
    (await log.read(leases[0], '0', 10)).entries.map((e) => e.id),
    [written[0][1]],
    'the pending entry stays',
  );
  await other.close();
  await log.close();
});
