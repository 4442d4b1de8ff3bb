// Bounds of velo-stream/redis (issue 13): the worker's budget of buffered
// events (maxBufferedEvents), the producer's lag bound (maxLag) and the
// session caps (maxSessionEvents, maxSessionAge), each against a private
// redis-server, the caps also through a kill -9 and a replay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { streamFn } from '../index.mjs';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { LagLimitError, SessionLimitError, fnv1a, redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, sender, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { checkOutputs, eventually, expectedFromLog, expectedTotals, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

useRedis();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One sample of a scrape: `name{labels}`'s value. */
async function sample(registry, series) {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The first key `prefix<i>` whose partition (of `partitions`) is `p`. */
function keyOn(prefix, p, partitions, skip = 0) {
  for (let i = 0, found = 0; ; i++) {
    if (fnv1a(`${prefix}${i}`) % partitions === p && found++ === skip) return `${prefix}${i}`;
  }
}

/** A gate a handler can wait at: `open()` lets it through. */
function gate() {
  let open;
  const promise = new Promise((resolve) => (open = resolve));
  return { promise, open };
}

/** `totals`, but an event `{ wait: true }` makes the handler wait at `g` before it goes on (its outputs do not change). */
function gatedTotals(g, config) {
  return streamFn(async function* gatedTotals(events) {
    let total = 0;
    let count = 0;
    for await (const e of events) {
      if (e.wait) await g.promise;
      total += e.n;
      count++;
      yield { n: e.n, total, count };
    }
  }, config);
}

/** Samples `worker.stats()` every few ms until `stop()`; resolves with the samples. */
function sampler(worker) {
  const samples = [];
  let running = true;
  const done = (async () => {
    while (running) {
      samples.push(worker.stats());
      await sleep(3);
    }
    return samples;
  })();
  return {
    stop() {
      running = false;
      return done;
    },
  };
}

test('maxBufferedEvents: a stalled session stops only its partition at its share; the other partition keeps completing keys', async () => {
  const name = fresh('budget');
  const partitions = 2;
  const budget = 20; // a share of 10 per partition
  const producer = redisProducer({ client, name, partitions });
  const g = gate();
  const worker = redisWorker(gatedTotals(g, { idleTimeout: 300 }), { client, name, partitions, leaseTtl: 1500, maxBufferedEvents: budget });
  const samples = sampler(worker);
  try {
    await eventually(() => worker.stats().owned.length === 2, 'the worker owns both partitions');
    const slow = keyOn('slow', 0, partitions);
    const sent = new Map([[slow, []]]);
    const pairs = [];
    for (let i = 0; i < 200; i++) {
      sent.get(slow).push(i);
      pairs.push([slow, i === 0 ? { n: i, wait: true } : { n: i }]);
    }
    await producer.sendMany(pairs);
    // The stalled session's partition fills its share and stops there: the rest of its input waits in Redis.
    await eventually(() => worker.stats().partitionBuffered[0] === budget / partitions, "partition 0 at its share");
    await eventually(() => worker.stats().partitionLag[0] > 100, 'the backlog measured in Redis, not read');
    // Meanwhile keys of partition 1 come and go (sessions of 5 events, closed by the idle timeout).
    const fast = [0, 1, 2, 3].map((j) => keyOn('fast', 1, partitions, j));
    let n = 1000;
    for (let round = 0; round < 3; round++) {
      const batch = [];
      for (const key of fast) {
        for (let j = 0; j < 5; j++) {
          sent.set(key, [...(sent.get(key) ?? []), n]);
          batch.push([key, { n: n++ }]);
        }
      }
      await producer.sendMany(batch);
      const total = 20 * (round + 1);
      await eventually(async () => (await readAllOutputs(client, name, partitions)).filter((o) => o.partition === 1).length === total, `${total} outputs on partition 1`);
    }
    assert.equal((await readAllOutputs(client, name, partitions)).filter((o) => o.key === slow).length, 0, 'the stalled key made no output');
    assert.equal(worker.stats().partitionBuffered[0], budget / partitions, 'partition 0 still at its share');
    const registry = new Registry();
    registerRedisWorkerMetrics(registry, [worker]);
    assert.equal(await sample(registry, `velo_redis_buffered_events{fn="${name}",worker="${worker.id}"}`), budget / partitions);
    g.open();
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 260, 'every output', 30_000);
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed');
    // (Sessions as the log's clock splits them with idleTimeout 300: a round may join the last or not.)
    checkOutputs(await readAllOutputs(client, name, partitions), await expectedFromLog(client, name, partitions, 300));
    await eventually(() => worker.stats().buffered === 0, 'nothing buffered once drained');
  } finally {
    const seen = await samples.stop();
    g.open();
    await worker.close();
    assert.ok(seen.length > 100, `sampled often (${seen.length})`);
    for (const s of seen) {
      assert.ok(s.buffered <= budget, `buffered ${s.buffered} > maxBufferedEvents ${budget}: ${JSON.stringify(s.partitionBuffered)}`);
      for (const p of s.owned) assert.ok(s.partitionBuffered[p] <= budget / partitions, `partition ${p}: ${s.partitionBuffered[p]} above its share`);
      assert.equal(s.buffered, s.owned.reduce((sum, p) => sum + s.partitionBuffered[p], 0));
    }
  }
});

test('maxBufferedEvents keeps a worker process small under a backlog of large events its sessions do not take (and without it, the same backlog is read into memory)', async () => {
  const partitions = 4;
  const keys = 16;
  const perKey = 40;
  const pad = 'x'.repeat(100_000); // 16 x 40 x 100 KB = 64 MB of input
  async function peakGrowth(maxBufferedEvents) {
    const name = fresh('rss');
    const producer = redisProducer({ client, name, partitions });
    const child = workerChild(name, { partitions, ttl: 1500, idle: 0, extra: { handler: 'stuck', maxBufferedEvents } });
    try {
      await eventually(() => lastStats(child)?.owned.length === partitions, 'the child owns every partition');
      await sleep(300);
      const before = lastStats(child).rss;
      for (let i = 0; i < perKey; i++) {
        await producer.sendMany(Array.from({ length: keys }, (_, k) => [`k${k}`, { n: i, pad }]));
      }
      // Each session took its first event and waits: the rest is either in memory or still in Redis.
      await eventually(() => lastStats(child).sessions === keys, 'a session per key');
      await eventually(() => lastStats(child).lag + lastStats(child).buffered + keys >= keys * perKey, 'every event measured, in Redis or buffered', 30_000);
      await sleep(500);
      const stats = lastStats(child);
      const peak = Math.max(...child.stdout.split('\n').filter((l) => l.startsWith('stats ')).map((l) => JSON.parse(l.slice(6)).rss));
      return { growth: peak - before, stats };
    } finally {
      await stopChild(child);
    }
  }
  const bounded = await peakGrowth(32);
  assert.ok(bounded.stats.buffered <= 32, `buffered ${bounded.stats.buffered}`);
  assert.ok(bounded.stats.lag >= keys * perKey - keys - 32, `the backlog stayed in Redis (lag ${bounded.stats.lag})`);
  const unbounded = await peakGrowth(1e9);
  assert.ok(unbounded.stats.buffered > keys * perKey / 2, `control: without a bound the backlog is read (${unbounded.stats.buffered})`);
  const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);
  // 32 events of 100 KB are about 6 MB (read and decoded); the rest of the growth is the runtime's own slack.
  assert.ok(unbounded.growth > 60 * 2 ** 20, `control: reading the backlog grows the process (${mb(unbounded.growth)} MB)`);
  assert.ok(bounded.growth < 45 * 2 ** 20 && bounded.growth * 3 < unbounded.growth, `bounded: ${mb(bounded.growth)} MB of growth (unbounded: ${mb(unbounded.growth)} MB)`);
});

test('bad bound options are refused with a code', async () => {
  const w = (extra) => () => redisWorker(totals(), { client, name: 'bad', partitions: 4, ...extra });
  assert.throws(w({ maxBufferedEvents: 3 }), { code: 'ERR_OUT_OF_RANGE', message: /"maxBufferedEvents" option must be an integer from options\.partitions \(4/ });
  assert.throws(w({ maxBufferedEvents: 10.5 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(w({ maxBufferedEvents: '100' }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(w({ maxSessionEvents: -1 }), { code: 'ERR_OUT_OF_RANGE', message: /maxSessionEvents/ });
  assert.throws(w({ maxSessionEvents: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(w({ maxSessionAge: -5 }), { code: 'ERR_OUT_OF_RANGE', message: /maxSessionAge/ });
  assert.throws(w({ maxSessionAge: Infinity }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(w({ maxSessionAge: 2 ** 31 }), { code: 'ERR_OUT_OF_RANGE', message: /2147483647/ });
  const p = (extra) => () => redisProducer({ client, name: 'bad', partitions: 4, ...extra });
  assert.throws(p({ maxLag: 0 }), { code: 'ERR_OUT_OF_RANGE', message: /maxLag/ });
  assert.throws(p({ maxLag: 2.5 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(p({ maxLag: 10, lagInterval: 0 }), { code: 'ERR_OUT_OF_RANGE', message: /lagInterval/ });
  const producer = redisProducer({ client, name: fresh('badlag'), partitions: 4 });
  await assert.rejects(producer.lag(4), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(producer.lag(-1), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(producer.lag(''), { code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(producer.lag({}), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.equal(await producer.lag(3), 0, 'a partition never written to');
});

/** Sends until one is refused with LagLimitError; resolves with how many were accepted. */
async function sendUntilRefused(producer, key, sent, from, max = 1000) {
  for (let i = 0; i < max; i++) {
    try {
      await producer.send(key, { n: from + i });
    } catch (error) {
      assert.ok(error instanceof LagLimitError, String(error));
      return { accepted: i, error };
    }
    sent.get(key).push(from + i);
  }
  assert.fail(`${max} sends accepted`);
}

/** Retries a send refused for lag until it is accepted (a worker is draining). */
async function sendWhenAdmitted(producer, key, event) {
  return eventually(async () => {
    try {
      return await producer.send(key, event);
    } catch (error) {
      if (error?.code !== 'ERR_VELO_LAG_LIMIT') throw error;
      return null;
    }
  }, `a send to ${key} admitted again`, 30_000);
}

test('maxLag: with no worker, sends to a partition are refused at the bound (nothing written), other partitions accepted; once a worker drains, accepted again', async () => {
  const name = fresh('lag');
  const partitions = 2;
  const producer = redisProducer({ client, name, partitions, maxLag: 20, lagInterval: 20 });
  const a = keyOn('a', 0, partitions);
  const b = keyOn('b', 1, partitions);
  const sent = new Map([[a, []], [b, []]]);
  const { accepted, error } = await sendUntilRefused(producer, a, sent, 0);
  assert.equal(accepted, 20);
  assert.equal(error.name, 'LagLimitError');
  assert.equal(error.code, 'ERR_VELO_LAG_LIMIT');
  assert.equal(error.partition, 0);
  assert.equal(error.lag, 20);
  assert.equal(error.limit, 20);
  assert.match(error.message, /Partition 0 is 20 entries behind \(maxLag 20\)/);
  // Still refused after fresh measures: the lag is real, not this producer's estimate.
  await sleep(50);
  await assert.rejects(producer.send(a, { n: 999 }), { code: 'ERR_VELO_LAG_LIMIT', lag: 20 });
  assert.equal(await producer.lag(a), 20);
  assert.equal(await producer.lag(0), 20);
  // A batch with one refused partition writes nothing, not even to the other one.
  await assert.rejects(producer.sendMany([[b, { n: 500 }], [a, { n: 501 }]]), { code: 'ERR_VELO_LAG_LIMIT', partition: 0 });
  assert.equal(await client.xLen(`velo:{${name}:p1}`), 0);
  assert.equal(await client.xLen(`velo:{${name}:p0}`), 20);
  // Another partition is not behind.
  await producer.sendMany([[b, { n: 600 }], [b, { n: 601 }]]);
  sent.get(b).push(600, 601);
  assert.equal(await producer.lag(b), 2);

  const worker = redisWorker(totals({ idleTimeout: 200 }), { client, name, partitions, leaseTtl: 1500 });
  try {
    await sendWhenAdmitted(producer, a, { n: 700 });
    sent.get(a).push(700);
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === 23, '23 outputs');
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed');
    // (Event 700 joins the first 20's session unless it came idleTimeout after them, by the log's clock: the log
    // says which.)
    checkOutputs(await readAllOutputs(client, name, partitions), await expectedFromLog(client, name, partitions, 200));
    assert.deepEqual(
      (await readAllOutputs(client, name, partitions)).map((o) => o.value.n).sort((x, y) => x - y),
      [...sent.values()].flat().sort((x, y) => x - y),
    );
    assert.equal(await producer.lag(a), 0);
  } finally {
    await worker.close();
  }
});

test('maxLag: a group whose count of entries read Redis got wrong (as after an AOF rewrite and a restart) is not taken as behind', async () => {
  const name = fresh('lagcount');
  const producer = redisProducer({ client, name, partitions: 1, maxLag: 5, lagInterval: 20 });
  const worker = redisWorker(totals({ idleTimeout: 100 }), { client, name, partitions: 1, leaseTtl: 1500 });
  const stream = `velo:{${name}:p0}`;
  try {
    for (let n = 0; n < 4; n++) await producer.send('k', { n });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 4, '4 outputs');
    await eventually(async () => (await producer.lag(0)) === 0, 'everything read');
    // Redis' own count of the entries the group read, set wrong: its XINFO lag says 4 behind, with nothing undelivered.
    const [group] = await client
      .sendCommand(['XINFO', 'GROUPS', stream])
      .then((gs) => gs.map((g) => Object.fromEntries(chunks(g))));
    await client.sendCommand(['XGROUP', 'SETID', stream, 'velo', group['last-delivered-id'], 'ENTRIESREAD', '0']);
    const [wrong] = await client
      .sendCommand(['XINFO', 'GROUPS', stream])
      .then((gs) => gs.map((g) => Object.fromEntries(chunks(g))));
    assert.equal(wrong.lag, 4, 'the lag Redis reports from its count');
    assert.equal(await producer.lag(0), 0);
    // Nothing undelivered: the count is set right, so Redis' own lag is right again too.
    const [righted] = await client
      .sendCommand(['XINFO', 'GROUPS', stream])
      .then((gs) => gs.map((g) => Object.fromEntries(chunks(g))));
    assert.equal(righted.lag, 0);
    assert.equal(righted['last-delivered-id'], group['last-delivered-id']);
    await producer.send('k', { n: 4 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 5, '5 outputs');
    // Behind for real, the count set right: the entries not delivered.
    await worker.close();
    for (let n = 5; n < 8; n++) await producer.send('k', { n });
    assert.equal(await producer.lag(0), 3);
    await producer.send('k', { n: 8 });
    assert.equal(await producer.lag(0), 4);
  } finally {
    await worker.close();
  }
});

/** A reply's map as entries, `[k, v, k, v]` (RESP2) or an object (RESP3). */
function chunks(reply) {
  if (!Array.isArray(reply)) return Object.entries(reply);
  const pairs = [];
  for (let i = 0; i < reply.length; i += 2) pairs.push([reply[i], reply[i + 1]]);
  return pairs;
}

test('maxLag with a stalled worker: its partition at its buffer share, the lag grows to the bound and sends are refused; once the session moves, accepted again', async () => {
  const name = fresh('stall');
  const partitions = 2;
  const maxLag = 30;
  const share = 5;
  const producer = redisProducer({ client, name, partitions, maxLag, lagInterval: 10 });
  const g = gate();
  const worker = redisWorker(gatedTotals(g, { idleTimeout: 200 }), { client, name, partitions, leaseTtl: 1500, maxBufferedEvents: share * partitions });
  try {
    await eventually(() => worker.stats().owned.length === 2, 'the worker owns both partitions');
    const key = keyOn('stalled', 0, partitions);
    const sent = new Map([[key, [0]]]);
    await producer.send(key, { n: 0, wait: true });
    await eventually(() => worker.stats().sessions === 1, 'the session waits at its first event');
    const { accepted } = await sendUntilRefused(producer, key, sent, 1);
    // The worker read at most its share (and the event its handler holds): everything else counts as lag. The
    // producer's estimate (its last measure plus its own sends since) is never below the real lag, so the bound
    // holds, and may be above it (the worker read some since the measure).
    assert.ok(accepted >= maxLag - 1 && accepted <= maxLag + share, `accepted ${accepted}`);
    const lag = await producer.lag(key);
    assert.ok(lag <= maxLag && lag >= maxLag - share - 1, `lag ${lag}`);
    assert.equal(lag, accepted + 1 - worker.stats().partitionBuffered[0] - 1, 'the lag is what the worker has not read');
    await eventually(() => worker.stats().partitionBuffered[0] === share, 'partition 0 at its share');
    g.open();
    await sendWhenAdmitted(producer, key, { n: 5000 });
    sent.get(key).push(5000);
    const total = sent.get(key).length;
    await eventually(async () => (await readAllOutputs(client, name, partitions)).length === total, `${total} outputs`, 30_000);
    await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'every session closed');
    checkOutputs(await readAllOutputs(client, name, partitions), await expectedFromLog(client, name, partitions, 200));
    assert.deepEqual(
      (await readAllOutputs(client, name, partitions)).map((o) => o.value.n).sort((x, y) => x - y),
      [...sent.get(key)].sort((x, y) => x - y),
    );
  } finally {
    g.open();
    await worker.close();
  }
});

test("maxLag: a producer's own sends, read by the workers since its last measure, do not refuse it: a refusal is on a fresh measure", async () => {
  const name = fresh('lagown');
  const producer = redisProducer({ client, name, partitions: 1, maxLag: 20, lagInterval: 60_000 });
  const probe = redisProducer({ client, name, partitions: 1 });
  const worker = redisWorker(totals({ idleTimeout: 200 }), { client, name, partitions: 1, leaseTtl: 1500 });
  try {
    // Measured once (lag 0) at the first send; then 19 more: the estimate says 20, the bound.
    for (let n = 0; n < 20; n++) await producer.send('k', { n });
    await eventually(async () => (await probe.lag(0)) === 0, 'the worker read every event');
    // Not due for a measure for a minute: the estimate alone would refuse every send from here.
    for (let n = 20; n < 25; n++) await producer.send('k', { n });
    await eventually(async () => (await readAllOutputs(client, name, 1)).length === 25, '25 outputs');
  } finally {
    await worker.close();
  }
  // With no worker reading, the fresh measure confirms the bound: refused, nothing written.
  const idle = fresh('lagown-idle');
  const stalled = redisProducer({ client, name: idle, partitions: 1, maxLag: 20, lagInterval: 60_000 });
  for (let n = 0; n < 20; n++) await stalled.send('k', { n });
  await assert.rejects(stalled.send('k', { n: 20 }), { code: 'ERR_VELO_LAG_LIMIT', lag: 20 });
  assert.equal(await client.xLen(`velo:{${idle}:p0}`), 20);
});

test('maxLag: the lag is measured once per partition per lagInterval, never once per send', async () => {
  const name = fresh('rate');
  const partitions = 2;
  const lagCalls = [];
  // The client as the producer sees it: every call counted. The lag script is the only one-key call without arguments.
  const counting = {
    sendCommand(args, options) {
      const [command, , numkeys] = args;
      // (A script Redis has not seen yet is sent again with EVAL: counted once, as its EVALSHA.)
      if (command === 'EVALSHA' && numkeys === '1' && args.length === 4) lagCalls.push(String(args[3]));
      return client.sendCommand(args, options);
    },
    duplicate: () => client.duplicate(),
    connect: () => client.connect(),
    on: () => counting,
    destroy: () => {},
  };
  const producer = redisProducer({ client: counting, name, partitions, maxLag: 1_000_000, lagInterval: 60_000 });
  const pairs = Array.from({ length: 200 }, (_, i) => [`k${i % 10}`, { n: i }]);
  for (const [key, event] of pairs.slice(0, 100)) await producer.send(key, event);
  await producer.sendMany(pairs.slice(100));
  await Promise.all(pairs.slice(0, 50).map(([key, event]) => producer.send(key, event)));
  assert.deepEqual(lagCalls.sort(), [`velo:{${name}:p0}`, `velo:{${name}:p1}`], 'one measure per partition');
  assert.equal(await producer.lag(0), 250 - (await client.xLen(`velo:{${name}:p1}`)));
  assert.equal(lagCalls.length, 3, 'lag() measures (once)');

  // Measures come again once due, in the background.
  const often = redisProducer({ client: counting, name, partitions: 1, maxLag: 1_000_000, lagInterval: 1 });
  lagCalls.length = 0;
  for (let i = 0; i < 20; i++) {
    await often.send('k', { n: i });
    await sleep(3);
  }
  assert.ok(lagCalls.length > 1, `measured again (${lagCalls.length})`);
  assert.ok(lagCalls.length <= 20, 'at most once per send');
});

/** Outputs with errors reduced to { name, code } (messages are checked apart). */
const byCode = (outputs) => outputs.map((o) => (o.error ? { ...o, error: { name: o.error.name, code: o.error.code } } : o));
const eventsCap = { error: { name: 'SessionLimitError', code: 'ERR_VELO_SESSION_EVENTS' } };
const ageCap = { error: { name: 'SessionLimitError', code: 'ERR_VELO_SESSION_AGE' } };

/** What `totals` outputs for a key's events with maxSessionEvents `max` (no idle close in between): per session its totals, then the cap's error if another event came. */
function expectedCapped(ns, max) {
  const out = [];
  for (let i = 0; i < ns.length; i += max) {
    out.push(...expectedTotals(ns.slice(i, i + max)));
    if (i + max < ns.length) out.push(eventsCap);
  }
  return out;
}

test('maxSessionEvents: the event past the cap ends the session (SessionLimitError its last output) and opens the next; a handler that fails or returns first ends it where it stopped', async () => {
  const name = fresh('cap');
  const producer = redisProducer({ client, name, partitions: 1 });
  // A slow handler: every entry is sent to its session before the handler gets to it, so the counts below are exact.
  const worker = redisWorker(totals({ idleTimeout: 200 }, 20), { client, name, partitions: 1, leaseTtl: 1500, maxSessionEvents: 3 });
  try {
    const pairs = [
      ...Array.from({ length: 8 }, (_, i) => ['a', { n: i }]),
      ['b', { n: 10 }],
      ['b', { n: 11 }],
      // Fails at its second event: its own error ends the session, and the next one starts at 22.
      ['c', { n: 20 }],
      ['c', { n: 21, fail: true }],
      ['c', { n: 22 }],
      ['c', { n: 23 }],
      // Returns at its second event: the next session starts at 32 (no cap error: its handler never read to the cap).
      ['d', { n: 30 }],
      ['d', { stop: true }],
      ['d', { n: 32 }],
      ['d', { n: 33 }],
    ];
    const ids = await producer.sendMany(pairs);
    await eventually(async () => (await pendingCount(client, name, 1)) === 0 && (await readAllOutputs(client, name, 1)).length === 19, 'every session closed');
    const outputs = await readAllOutputs(client, name, 1);
    checkOutputs(
      byCode(outputs),
      new Map([
        ['a', expectedCapped([0, 1, 2, 3, 4, 5, 6, 7], 3)],
        ['b', expectedTotals([10, 11])],
        ['c', [...expectedTotals([20]), { error: { name: 'Error', code: 'E_TEST' } }, ...expectedTotals([22, 23])]],
        ['d', [...expectedTotals([30]), ...expectedTotals([32, 33])]],
      ]),
    );
    // Sessions start at the entry past the cap.
    const sids = (key) => [...new Set(outputs.filter((o) => o.key === key).map((o) => o.sid))];
    assert.deepEqual(sids('a'), [`a@${ids[0]}`, `a@${ids[3]}`, `a@${ids[6]}`]);
    assert.deepEqual(sids('c'), [`c@${ids[10]}`, `c@${ids[12]}`]);
    assert.deepEqual(sids('d'), [`d@${ids[14]}`, `d@${ids[16]}`]);
    const first = outputs.find((o) => o.error?.code === 'ERR_VELO_SESSION_EVENTS');
    assert.equal(first.seq, 4);
    assert.equal(
      first.error.message,
      `Session "a@${ids[0]}" reached maxSessionEvents (3): it ended after its 3 inputs, before the next (an entry opens the key's next session, a timer never fires)`,
    );
    assert.equal(worker.stats().capped, 2, 'a twice (c and d ended before their caps)');
    assert.equal(worker.stats().handedOn, 2, "c's 22 and d's 32: their handlers never took them (23 and 33 came past the cap)");
    const registry = new Registry();
    registerRedisWorkerMetrics(registry, [worker]);
    assert.equal(await sample(registry, `velo_redis_capped_sessions_total{fn="${name}",worker="${worker.id}"}`), 2);
    assert.equal(await sample(registry, `velo_redis_handed_on_total{fn="${name}",worker="${worker.id}"}`), 2);
  } finally {
    await worker.close();
  }
  const error = new SessionLimitError('ERR_VELO_SESSION_AGE', 5, 'x');
  assert.ok(error instanceof Error);
  assert.equal(error.limit, 5);
});

test('maxSessionAge is measured on entry ids: an event past it opens the next session; a quiet session is closed by an age marker judged by its own id', async () => {
  const name = fresh('age');
  const input = `velo:{${name}:p0}`;
  // Entries added with ids a minute old, 100 ms apart in Redis time whatever the wall clock did meanwhile.
  const base = Date.now() - 60_000;
  const add = (ms, key, n) => client.xAdd(input, `${base + ms}-0`, { k: key, v: JSON.stringify({ n }) });
  await add(0, 'a', 0);
  await add(100, 'b', 100);
  await add(500, 'a', 1);
  await add(1000, 'a', 2); // exactly maxSessionAge after a's first: still in it
  await add(1001, 'a', 3); // past it: a's next session
  await add(1500, 'a', 4);
  const worker = redisWorker(totals({ idleTimeout: 0 }), { client, name, partitions: 1, leaseTtl: 1500, maxSessionAge: 1000 });
  try {
    // The live sessions a@1001 and b@100 are older than maxSessionAge: b's age end is before the last entry read
    // (the log's clock passes it), a@1001's comes after: an age marker closes it.
    await eventually(async () => (await pendingCount(client, name, 1)) === 0 && (await readAllOutputs(client, name, 1)).length === 9, 'every session closed');
    const outputs = await readAllOutputs(client, name, 1);
    checkOutputs(
      byCode(outputs),
      new Map([
        ['a', [...expectedTotals([0, 1, 2]), ageCap, ...expectedTotals([3, 4]), ageCap]],
        ['b', [...expectedTotals([100]), ageCap]],
      ]),
    );
    assert.deepEqual([...new Set(outputs.map((o) => o.sid))].sort(), [`a@${base}-0`, `a@${base + 1001}-0`, `b@${base + 100}-0`].sort());
    // The text is the session's own (its start and age end), whichever input or clock reading ended it.
    assert.match(outputs.find((o) => o.sid === `a@${base}-0` && o.error).error.message, new RegExp(`it began at ${base} and ended at ${base + 1001},`));
    assert.match(outputs.find((o) => o.sid === `b@${base + 100}-0` && o.error).error.message, new RegExp(`it began at ${base + 100} and ended at ${base + 1101},`));
    const markers = (await client.xRange(input, '-', '+')).filter((e) => e.message.r === 'age');
    assert.deepEqual(markers.map((m) => m.message.c), [`a@${base + 1001}-0`]);

    // A marker that comes too early by its own id (another machine's clock ahead) ends nothing.
    const producer = redisProducer({ client, name, partitions: 1 });
    const [first] = await producer.sendMany([['c', { n: 1 }]]);
    await client.xAdd(input, '*', { k: 'c', c: `c@${first}`, r: 'age' });
    await producer.send('c', { n: 2 });
    await eventually(async () => (await readAllOutputs(client, name, 1)).filter((o) => o.key === 'c').length === 3, "c's outputs and its age end");
    const c = (await readAllOutputs(client, name, 1)).filter((o) => o.key === 'c');
    assert.deepEqual(byCode(c).map((o) => o.value ?? o.error), [...expectedTotals([1, 2]), ageCap.error]);
    assert.equal(new Set(c.map((o) => o.sid)).size, 1, 'one session: the early marker did not end it');
    assert.equal(worker.stats().capped, 4);
  } finally {
    await worker.close();
  }
});

test('maxSessionEvents through kill -9 and a replay (with a buffer budget): every (sid, seq) once, equal to a crash-free run', async () => {
  const name = fresh('capkill');
  const partitions = 8;
  const max = 4;
  const extra = { maxSessionEvents: max, maxBufferedEvents: 64 };
  // A slow handler: a capped session takes a while to finish, so the kill finds some with their entries, and the
  // entry past the cap, still pending: the replay has to end them at the same entry.
  const start = () => workerChild(name, { partitions, ttl: 1000, idle: 2500, trimInterval: 1, delayMs: 20, extra });
  const producer = redisProducer({ client, name, partitions });
  const sent = new Map();
  const send = sender(producer, 20, sent);
  const a = start();
  await eventually(() => lastStats(a)?.owned.length === partitions, 'A owns every partition');
  await send(200);
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= 100, 'A wrote outputs', 30_000);
  await killChild(a);
  const b = start();
  await send(100);
  await eventually(() => lastStats(b)?.owned.length === partitions, 'B owns every partition', 30_000);
  const expected = new Map([...sent].map(([key, ns]) => [key, expectedCapped(ns, max)]));
  const total = [...expected.values()].reduce((n, list) => n + list.length, 0);
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= total, `${total} outputs`, 30_000);
  await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'nothing pending (every session closed)', 30_000);
  const outputs = await readAllOutputs(client, name, partitions);
  checkOutputs(byCode(outputs), expected);
  assert.equal(new Set(outputs.map((o) => o.sid)).size, [...sent.values()].reduce((n, ns) => n + Math.ceil(ns.length / max), 0), 'sessions of 4 events');
  const stats = await stopChild(b);
  assert.ok(stats.replayed > 0, 'B replayed pending entries');
  assert.ok(stats.capped > 0);
});

test('maxSessionAge through kill -9 and a replay: sessions split by entry ids, every (sid, seq) once, equal to a crash-free run', async () => {
  const name = fresh('agekill');
  const partitions = 4;
  const maxAge = 1000;
  const start = () => workerChild(name, { partitions, ttl: 1000, idle: 0, trimInterval: 1, delayMs: 30, extra: { maxSessionAge: maxAge } });
  // Every entry written before the workers start, with ids an hour old, 150 ms apart per key in Redis time.
  const base = Date.now() - 3_600_000;
  const keys = Array.from({ length: 12 }, (_, k) => `user${k}`);
  const times = new Map(keys.map((k) => [k, []]));
  for (let i = 0; i < 20; i++) {
    for (const [k, key] of keys.entries()) {
      const ms = base + i * 150 + k;
      times.get(key).push(ms);
      await client.xAdd(`velo:{${name}:p${fnv1a(key) % partitions}}`, `${ms}-0`, { k: key, v: JSON.stringify({ n: i }) });
    }
  }
  // A crash-free run's outputs: a session per run of events within maxAge of its first, each ended by the cap
  // (an event past it, or for the last one an age marker, the sessions being an hour old).
  const expected = new Map();
  for (const key of keys) {
    const out = [];
    let session = [];
    let first = 0;
    for (const [i, ms] of times.get(key).entries()) {
      if (session.length > 0 && ms - first > maxAge) {
        out.push(...expectedTotals(session), ageCap);
        session = [];
      }
      if (session.length === 0) first = ms;
      session.push(i);
    }
    out.push(...expectedTotals(session), ageCap);
    expected.set(key, out);
  }
  const a = start();
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= 60, 'A wrote outputs');
  await killChild(a);
  const b = start();
  const total = [...expected.values()].reduce((n, list) => n + list.length, 0);
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= total, `${total} outputs`, 30_000);
  await eventually(async () => (await pendingCount(client, name, partitions)) === 0, 'nothing pending (every session closed)', 30_000);
  checkOutputs(byCode(await readAllOutputs(client, name, partitions)), expected);
  const stats = await stopChild(b);
  assert.ok(stats.replayed > 0, 'B replayed pending entries');
});

// Found by an adversarial review: the pump parked at the bound of held entries
// was woken only by a session ending, which close() does only after the pump
// has stopped, so close() waited out the lease and dropped the partition.
test('close() with held entries at their bound (maxConcurrent reached) releases the lease at once, without CloseTimeoutError', async () => {
  const name = fresh('heldclose');
  const options = { client, name, partitions: 1 };
  const errors = [];
  const worker = redisWorker(totals({ idleTimeout: 60_000, maxConcurrent: 1 }), {
    ...options,
    readCount: 1,
    leaseTtl: 3000,
    onError: (error) => errors.push(error),
  });
  const producer = redisProducer(options);
  // One live session takes the only slot; the other keys' entries are held, past their bound.
  await producer.sendMany([['a', { n: 1 }], ...Array.from({ length: 20 }, (_, i) => [`b${i}`, { n: i }])]);
  await eventually(async () => worker.stats().held >= 16, 'the held entries at their bound');
  await worker.close();
  // (Keys waiting for the only slot are reported, once: that is all.)
  assert.deepEqual(
    errors.map((e) => e.code ?? e.message),
    ['ERR_VELO_SESSION_SLOTS'],
  );
  assert.equal(await client.exists(`velo:{${name}:p0}:lease`), 0, 'the lease was released, not left to run out');
});
