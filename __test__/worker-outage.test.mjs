// A worker whose server cannot be reached (its connections cut and refused by a proxy in front of a private
// redis-server or postgres), on each backend: `onError` gets at most one of the outage's failures a second while
// every failure is counted (`stats().errors`), the loops' retries space out as the outage goes on, and once the
// server can be reached again the worker serves the next event. The schedule itself (`Outage`) on a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createClient } from 'redis';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { redisClientOptions, redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from 'velo-stream';
import { MAX_RETRY_MS, MIN_GAP_MS, Outage, REPORT_EVERY_MS, RETRY_MS } from '#testing';
import { startPostgres } from './helpers/postgres-server.mjs';
import { fresh } from './helpers/redis-suite.mjs';
import { startRedis } from './helpers/redis-server.mjs';
import { startProxy } from './helpers/tcp-proxy.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 8;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('Outage: RETRY_MS without an outage; during one a quarter of its length, within RETRY_MS and MAX_RETRY_MS, spread by a fifth; one report a second; over once quiet', () => {
  let now = 1_000_000;
  let r = 0.5;
  const outage = new Outage({ now: () => now }, () => r);
  assert.equal(outage.retryMs(), RETRY_MS, 'no outage');
  assert.equal(outage.failed(), true, "an outage's first failure is reported");
  assert.equal(outage.retryMs(), RETRY_MS);
  const reports = [];
  // A failure every 50 ms for 20 s: the waits grow with the outage up to MAX_RETRY_MS; one report a second.
  for (let t = 50; t <= 20_000; t += 50) {
    now += 50;
    if (outage.failed()) reports.push(t);
    const wait = outage.retryMs();
    const middle = Math.round(Math.min(MAX_RETRY_MS, Math.max(RETRY_MS, t / 4)));
    assert.equal(wait, middle, `${t} ms into the outage`);
  }
  assert.deepEqual(reports, Array.from({ length: 20 }, (_, i) => (i + 1) * REPORT_EVERY_MS));
  r = 0;
  assert.equal(outage.retryMs(), MAX_RETRY_MS * 0.8, 'spread: a fifth less');
  r = 0.999999;
  assert.equal(outage.retryMs(), Math.round(MAX_RETRY_MS * (0.8 + 0.4 * r)), 'spread: up to a fifth more');
  r = 0.5;
  // Quiet for longer than a loop's longest wait (and then some): the outage is over.
  now += 2 * MAX_RETRY_MS;
  assert.equal(outage.retryMs(), MAX_RETRY_MS, 'still on: a loop may be waiting');
  now += 1001;
  assert.equal(outage.retryMs(), RETRY_MS, 'over');
  assert.equal(outage.failed(), true, "the next outage's first failure is reported at once");
  now += 10;
  assert.equal(outage.failed(), false);
  assert.equal(outage.retryMs(), RETRY_MS, 'a new outage starts short');
  // A server that answers one call in two: each answer ends the outage, each failure starts one; still one report a second.
  const flapping = [];
  for (let t = 0; t < 3000; t += 5) {
    now += 5;
    if (t % 10 === 0) outage.reached();
    else if (outage.failed()) flapping.push(t);
  }
  assert.ok(flapping.length <= 3, `${flapping.length} reports in 3 s of a flapping server`);
});

test("Outage: a loop's wait is at least its share of the worker's pace; a call that reaches the server ends the outage and every wait", async () => {
  let now = 0;
  const timers = new Map();
  let next = 0;
  const clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const t = { id: next++, fn, ms };
      timers.set(t.id, t);
      return t;
    },
    clearTimeout: (t) => t && timers.delete(t.id),
    setImmediate: (fn) => fn(),
  };
  const outage = new Outage(clock, () => 0.5);
  // No outage: a wait of RETRY_MS.
  void outage.wait();
  assert.deepEqual([...timers.values()].map((t) => t.ms), [RETRY_MS]);
  timers.clear();
  outage.failed();
  now = 100;
  // 40 loops waiting at once, 100 ms into an outage: the k-th waits at least k * MIN_GAP_MS.
  const woken = [];
  const waits = Array.from({ length: 40 }, (_, k) => outage.wait().then(() => woken.push(k)));
  assert.equal(outage.waiting, 40);
  assert.deepEqual(
    [...timers.values()].map((t) => t.ms),
    Array.from({ length: 40 }, (_, k) => Math.max(RETRY_MS, (k + 1) * MIN_GAP_MS)),
  );
  // The first timer fires: that loop alone retries.
  const [first] = timers.values();
  first.fn();
  await waits[0];
  assert.deepEqual(woken, [0]);
  // A call reaches the server: the outage is over, every other loop retries now, their timers cleared.
  outage.reached();
  await Promise.all(waits);
  assert.equal(woken.length, 40);
  assert.equal(timers.size, 0);
  assert.equal(outage.waiting, 0);
  assert.equal(outage.retryMs(), RETRY_MS, 'over');
  // The next outage: its first failure is reported once a second has passed since the last report.
  assert.equal(outage.failed(), false, 'within a second of the last report');
  now += REPORT_EVERY_MS;
  assert.equal(outage.failed(), true, 'a second after it');
  // wakeAll (the worker closing) ends the waits too.
  const closing = outage.wait();
  outage.wakeAll();
  await closing;
  assert.equal(outage.waiting, 0);
});

const echo = streamFn(async function* echo(events) {
  for await (const e of events) yield e;
});

/**
 * Cuts the worker's connections for `ms`, then heals them: returns the reports `onError` got during the cut, the
 * failures counted meanwhile, and the cut's length; then checks an event sent after the heal gets its output.
 */
async function outage({ proxy, worker, errors, send }, ms) {
  await eventually(() => worker.stats().owned.length === PARTITIONS, 'the worker owns every partition', 30_000);
  await send('k', { n: 1 });
  await eventually(() => worker.stats().outputs >= 1, 'the first output', 30_000);
  const counted = worker.stats().errors;
  const reported = errors.length;
  const start = Date.now();
  proxy.cut();
  await sleep(ms);
  const during = { reports: errors.slice(reported), failures: worker.stats().errors - counted, ms: Date.now() - start };
  proxy.heal();
  await send('k', { n: 2 });
  await eventually(() => worker.stats().outputs >= 2, 'an output after the outage', 30_000);
  return during;
}

/** The outage's reports: at most one a second (and one at its start), fewer than its failures. */
function checkReports({ reports, failures, ms }, what) {
  assert.ok(reports.length >= 1, `${what}: the outage was reported`);
  assert.ok(reports.length <= Math.floor(ms / REPORT_EVERY_MS) + 1, `${what}: ${reports.length} reports in ${ms} ms`);
  assert.ok(failures > reports.length, `${what}: ${failures} failures counted, ${reports.length} reported`);
}

test('Postgres unreachable: onError gets one failure a second, every one counted; the worker serves again once it can reach the server', async () => {
  const server = await startPostgres();
  const proxy = await startProxy(server.port);
  const name = fresh('outage');
  const pool = new pg.Pool({ ...server.config, port: proxy.port, max: 6 });
  pool.on('error', () => {});
  const producerPool = server.pool({ max: 2 });
  const errors = [];
  const worker = postgresWorker(echo, { pool, name, partitions: PARTITIONS, onError: (error) => errors.push(error) });
  const producer = postgresProducer({ pool: producerPool, name, partitions: PARTITIONS });
  try {
    const during = await outage({ proxy, worker, errors, send: (k, e) => producer.send(k, e) }, 3500);
    checkReports(during, 'Postgres');
    // Each partition's read fails at every retry (its only call in a quiet outage): RETRY_MS apart, the reads alone
    // would fail PARTITIONS * ms / RETRY_MS times; spaced out as the outage goes on, far fewer.
    const steady = (PARTITIONS * during.ms) / RETRY_MS;
    assert.ok(during.failures < 0.75 * steady, `${during.failures} failures in ${during.ms} ms, ${steady} at RETRY_MS`);
  } finally {
    await worker.close();
    await pool.end();
    await proxy.stop();
    await server.stop();
  }
});

test('Redis unreachable: onError gets one failure a second, every one counted; the worker serves again once it can reach the server', async () => {
  const server = await startRedis();
  const proxy = await startProxy(server.port);
  const name = fresh('outage');
  const client = createClient(redisClientOptions({ url: proxy.url }));
  client.on('error', () => {});
  await client.connect();
  const producerClient = createClient({ url: server.url });
  await producerClient.connect();
  const errors = [];
  const worker = redisWorker(echo, { client, name, partitions: PARTITIONS, onError: (error) => errors.push(error) });
  const producer = redisProducer({ client: producerClient, name, partitions: PARTITIONS });
  try {
    const during = await outage({ proxy, worker, errors, send: (k, e) => producer.send(k, e) }, 3500);
    checkReports(during, 'Redis');
    assert.ok(during.reports.every((e) => e.code === 'ERR_VELO_REDIS_CONNECTION'), during.reports.map((e) => e.message).join('\n'));
  } finally {
    await worker.close();
    await client.close();
    await producerClient.close();
    await proxy.stop();
    await server.stop();
  }
});
