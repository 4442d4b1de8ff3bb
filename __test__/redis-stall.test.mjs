// No stall on a backlog (issue 25): whatever the keys, the backlog, maxConcurrent and readCount, every
// partition keeps making progress. Entries of keys waiting for a session slot past the held bound stay in
// Redis (pending) and are read again by id; a session's close marker is read past them, so slots free up.
// Each scenario runs to the end and checks, from Redis: each (sid, seq) once, per key the outputs of the
// sessions the log defines, in order, and nothing pending. A stall is no new output for 20 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { checkOutputs, expectedFromLog, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';
import { prng } from '../bench/prng.mjs';

useRedis();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const STALL_MS = 20_000;

/**
 * Sends `backlog` ([key, n] pairs) before a worker starts, then `live` while it runs, and waits until every
 * event has its output and nothing is pending; fails if no output is added for STALL_MS.
 */
async function runToEnd({ partitions, fn, workerOptions = {}, backlog, live = [] }) {
  const name = fresh('stall');
  const producer = redisProducer({ client, name, partitions });
  for (let i = 0; i < backlog.length; i += 1000) await producer.sendMany(backlog.slice(i, i + 1000).map(([k, n]) => [k, { n }]));
  // trimInterval 0: the check reads the sessions from the whole input log.
  // (Keys waiting for a session slot are reported, as these backlogs mean them to; anything else goes to stderr.)
  const onError = (e) => e?.code === 'ERR_VELO_SESSION_SLOTS' || process.emitWarning(e);
  const worker = redisWorker(fn, { client, name, partitions, leaseTtl: 5000, trimInterval: 0, onError, ...workerOptions });
  const total = backlog.length + live.length;
  try {
    const sending = (async () => {
      for (let i = 0; i < live.length; i += 50) {
        await producer.sendMany(live.slice(i, i + 50).map(([k, n]) => [k, { n }]));
        await sleep(2);
      }
    })();
    let seen = -1;
    let maxWaitingKeys = 0;
    let progressAt = Date.now();
    for (;;) {
      maxWaitingKeys = Math.max(maxWaitingKeys, worker.stats().waitingKeys);
      const outputs = (await readAllOutputs(client, name, partitions)).length;
      if (outputs >= total && (await pendingCount(client, name, partitions)) === 0) break;
      if (outputs !== seen) {
        seen = outputs;
        progressAt = Date.now();
      } else if (Date.now() - progressAt > STALL_MS) {
        assert.fail(
          `stalled: ${outputs} of ${total} outputs, no progress for ${STALL_MS} ms; stats ${JSON.stringify(worker.stats())}`,
        );
      }
      await sleep(200);
    }
    await sending;
    const stats = worker.stats();
    checkOutputs(await readAllOutputs(client, name, partitions), await expectedFromLog(client, name, partitions, fn.config.idleTimeout));
    assert.equal(stats.held, 0, 'nothing held at the end');
    assert.equal(stats.waitingKeys, 0, 'no key waiting in Redis at the end');
    return { name, stats, maxWaitingKeys };
  } finally {
    await worker.close();
  }
}

/** `rounds` events per key, keys interleaved (k0, k1, ..., k0, k1, ...): every key's events span the backlog. */
function interleaved(keys, rounds, prefix = 'k') {
  const out = [];
  for (let r = 0; r < rounds; r++) for (let k = 0; k < keys; k++) out.push([`${prefix}${k}`, r * keys + k]);
  return out;
}

test('1 partition, maxConcurrent 1, idleTimeout 100, 20 keys x 2 events: every event handled', async () => {
  await runToEnd({ partitions: 1, fn: totals({ idleTimeout: 100, maxConcurrent: 1 }), backlog: interleaved(20, 2) });
});

test('held bound reached (readCount 1: 64 entries held at most) with live sessions whose keys have more events behind it', async () => {
  await runToEnd({
    partitions: 1,
    fn: totals({ idleTimeout: 100, maxConcurrent: 4 }),
    workerOptions: { readCount: 1 },
    backlog: interleaved(60, 3),
  });
});

test('keys with more entries waiting in Redis than ids kept per key (64) and keys with a few: both kinds found again, in order', async () => {
  // readCount 1: 64 entries held at most; a slot for one key at a time. The four long keys (150 events each)
  // overflow the ids kept for them and are found by passes over the pending list; the 40 short keys are read
  // again by id.
  const backlog = [...interleaved(4, 150, 'long'), ...interleaved(40, 3, 'short')];
  await runToEnd({ partitions: 1, fn: totals({ idleTimeout: 100, maxConcurrent: 1 }), workerOptions: { readCount: 1 }, backlog });
});

test('a backlog of 1,500 keys x 5 events, maxConcurrent 100: drains', async () => {
  const { stats } = await runToEnd({
    partitions: 4,
    fn: totals({ idleTimeout: 100, maxConcurrent: 100 }),
    workerOptions: { readCount: 16 },
    backlog: interleaved(1500, 5),
  });
  assert.equal(stats.lost, 0);
});

test('a backlog of 6,000 keys x 5 events on 4 partitions with maxConcurrent 1,000 and the default maxBufferedEvents, readCount 64 (held entries reach their bound): drains', async () => {
  const { stats, maxWaitingKeys } = await runToEnd({
    partitions: 4,
    // (1,000 slots, the default before issue 57: far fewer than the keys.)
    fn: totals({ idleTimeout: 200, maxConcurrent: 1000 }),
    // 7,500 entries per partition, 4,096 held at most.
    workerOptions: { readCount: 64 },
    backlog: interleaved(6000, 5),
  });
  assert.ok(maxWaitingKeys > 0, 'keys waited in Redis past the bound of held entries');
  assert.equal(stats.lost, 0);
  assert.equal(stats.fenced, 0);
});

test('800 live keys with maxConcurrent 20 while events keep arriving: every event handled', async () => {
  const live = [];
  for (let i = 0; i < 4000; i++) live.push([`live${i % 800}`, i]);
  await runToEnd({
    partitions: 2,
    fn: totals({ idleTimeout: 80, maxConcurrent: 20 }),
    workerOptions: { readCount: 8 },
    backlog: [],
    live,
  });
});

test('randomized: keys, partitions, backlog and live split, maxConcurrent, readCount, idle (seeded)', async () => {
  const random = prng(2511);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  for (let round = 0; round < 4; round++) {
    const keys = int(20, 600);
    const events = int(keys, keys * 4);
    const pairs = [];
    for (let i = 0; i < events; i++) pairs.push([`r${round}k${int(0, keys - 1)}`, i]);
    const split = int(0, events);
    const config = { idleTimeout: int(50, 300), maxConcurrent: int(1, 200) };
    const workerOptions = { readCount: int(1, 256) };
    await runToEnd({
      partitions: int(1, 4),
      fn: totals(config),
      workerOptions,
      backlog: pairs.slice(0, split),
      live: pairs.slice(split),
    });
  }
});
