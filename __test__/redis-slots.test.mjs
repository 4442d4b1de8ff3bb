// Session slots (issue 57): keys that need a new session while every slot of a worker (`maxConcurrent`) is taken
// wait for sessions to end. The worker says so: `stats().slots`, the Prometheus `velo_redis_slot_*` series, and an
// `ERR_VELO_SESSION_SLOTS` report through `onError`, at most once a minute; nothing of it when the slots suffice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Registry } from 'prom-client';
import { registerRedisWorkerMetrics } from 'velo-stream/prometheus';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { checkOutputs, eventually, expectedTotals, pendingCount, readAllOutputs, totals } from './helpers/redis-fixtures.mjs';

const require = createRequire(import.meta.url);
const { SlotReport, WaitingKeys, SLOTS_REPORT_MS } = require('../dist/durable/engine/slot-watch.js');

useRedis();

/** One sample of a scrape: `name{labels}`'s value. */
async function sample(registry, series) {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('the slot report: every key that begins to wait is counted, a report at most once a minute of the clock given', () => {
  let now = 1_000;
  const reports = [];
  const report = new SlotReport(
    () => 2,
    () => now,
    (error) => reports.push(error),
  );
  const a = new WaitingKeys(report);
  const b = new WaitingKeys(report);
  a.noSlot('x');
  a.noSlot('x'); // still waiting: counted once
  a.noSlot('y');
  b.noSlot('z');
  assert.deepEqual([report.waiting, report.waits, reports.length], [3, 3, 1]);
  assert.equal(reports[0].code, 'ERR_VELO_SESSION_SLOTS');
  assert.equal(reports[0].slots, 2);
  assert.equal(reports[0].waitingKeys, 1, 'the keys waiting when it was made');
  a.wentOn('x');
  a.wentOn('x'); // no longer waiting: nothing more
  a.wentOn('other');
  assert.deepEqual([report.waiting, report.waits], [2, 3]);
  now += SLOTS_REPORT_MS - 1;
  a.noSlot('x'); // waits again: counted again, not reported within the minute
  assert.deepEqual([report.waiting, report.waits, reports.length], [3, 4, 1]);
  now += 1;
  b.noSlot('w');
  assert.deepEqual([report.waiting, report.waits, reports.length], [4, 5, 2]);
  assert.equal(reports[1].waitingKeys, 4);
  a.clear(); // its partition stopped
  assert.equal(report.waiting, 2);
  b.clear();
  assert.deepEqual([report.waiting, report.waits, reports.length], [0, 5, 2]);
  // A partition whose worker keeps no report (the simulator's) counts nothing.
  const none = new WaitingKeys(undefined);
  none.noSlot('x');
  none.wentOn('x');
  none.clear();
});

/** Runs `keys` keys x `perKey` events through one worker of `maxConcurrent`; its reports, stats and scraped series. */
async function run(maxConcurrent, keys, perKey) {
  const name = fresh('slots');
  const producer = redisProducer({ client, name, partitions: 1 });
  const fn = totals({ idleTimeout: 200, maxConcurrent });
  const reported = [];
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 1500, onError: (error) => reported.push(error) });
  const registry = new Registry();
  registerRedisWorkerMetrics(registry, [worker]);
  const seen = [];
  try {
    const names = Array.from({ length: keys }, (_, k) => `k${k}`);
    const sent = new Map(names.map((k) => [k, []]));
    const pairs = [];
    for (let i = 0; i < keys * perKey; i++) {
      const key = names[i % keys];
      sent.get(key).push(i);
      pairs.push([key, { n: i }]);
    }
    await producer.sendMany(pairs);
    await eventually(async () => {
      seen.push(worker.stats().slots.waitingKeys);
      return (await readAllOutputs(client, name, 1)).length === keys * perKey;
    }, 'every output');
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'every session ended and acked');
    checkOutputs(await readAllOutputs(client, name, 1), new Map(names.map((k) => [k, expectedTotals(sent.get(k))])));
    const labels = `{fn="${name}",worker="${worker.id}"}`;
    const series = {
      slots: await sample(registry, `velo_redis_session_slots${labels}`),
      waiting: await sample(registry, `velo_redis_slot_waiting_keys${labels}`),
      waits: await sample(registry, `velo_redis_slot_waits_total${labels}`),
    };
    return { stats: worker.stats(), reported, seen, series, fn };
  } finally {
    await worker.close();
  }
}

test('more live keys than slots: counted in stats() and the metrics, reported once, and every output is right', async () => {
  const { stats, reported, seen, series, fn } = await run(2, 6, 10);
  const slotReports = reported.filter((e) => e.code === 'ERR_VELO_SESSION_SLOTS');
  assert.deepEqual(
    reported.filter((e) => e.code !== 'ERR_VELO_SESSION_SLOTS'),
    [],
    'nothing else reported',
  );
  // Within a minute: one report, however many keys waited.
  assert.equal(slotReports.length, 1);
  assert.equal(slotReports[0].slots, 2);
  assert.ok(slotReports[0].waitingKeys >= 1 && slotReports[0].waitingKeys <= 4, `waiting keys ${slotReports[0].waitingKeys}`);
  // Six keys, two slots: at least four keys waited; none waits once everything is done.
  assert.ok(stats.slots.waits >= 4, `waits ${stats.slots.waits}`);
  assert.equal(stats.slots.max, 2);
  assert.equal(stats.slots.waitingKeys, 0);
  assert.ok(Math.max(...seen) >= 1, 'keys were seen waiting');
  assert.ok(Math.max(...seen) <= 4, `never more than the keys beyond the slots (${Math.max(...seen)})`);
  assert.deepEqual(series, { slots: 2, waiting: 0, waits: stats.slots.waits });
  assert.equal(fn.stats().rejected, 0, 'no open refused');
});

test('as many slots as live keys: no report, no wait counted', async () => {
  const { stats, reported, seen, series } = await run(6, 6, 10);
  assert.deepEqual(reported, []);
  assert.deepEqual(stats.slots, { max: 6, waitingKeys: 0, waits: 0 });
  assert.equal(Math.max(...seen), 0);
  assert.deepEqual(series, { slots: 6, waiting: 0, waits: 0 });
});
