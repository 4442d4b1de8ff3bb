// A handler that throws mid-session while its owner is killed -9 (before the
// error output is written, and once the first error outputs are in Redis):
// the new owner replays the failed sessions, which throw again at the same
// event. The error is written once (its (sid, seq) deduplicated), the
// session ends at its close marker (events between the throw and the marker
// are dropped with it), the key's later events start a new session, and
// nothing stays pending.
//
// (An idle-close marker racing a kill -9 is in redis-faults.test.mjs.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 8;
const KEYS = 12;
const FAILING = 6;

useRedis();

/** The sessions the input log defines, with each event's `fail` flag: Map sid -> { key, events, closed }. */
async function logSessions(name) {
  const sessions = new Map();
  for (let p = 0; p < PARTITIONS; p++) {
    const current = new Map();
    for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) {
      const key = message.k;
      if (message.c !== undefined) {
        if (current.get(key) === message.c) {
          sessions.get(message.c).closed = true;
          current.delete(key);
        }
        continue;
      }
      if (!current.has(key)) {
        current.set(key, `${key}@${id}`);
        sessions.set(`${key}@${id}`, { key, events: [], closed: false });
      }
      sessions.get(current.get(key)).events.push(JSON.parse(message.v));
    }
  }
  return sessions;
}

/** What the `totals` handler writes for a session's events, crash-free: running totals up to a `fail`, then its error. */
function expectedOutputs(events) {
  const out = [];
  let total = 0;
  let count = 0;
  for (const e of events) {
    if (e.fail) {
      out.push({ error: { name: 'Error', message: `failed at ${e.n}`, code: 'E_TEST' } });
      break;
    }
    total += e.n;
    count++;
    out.push({ n: e.n, total, count });
  }
  return out;
}

for (const moment of ['before the error is written', 'once errors are in Redis']) {
  test(`a handler throwing mid-session while its owner is killed -9 (${moment}): the error is written once, the session ends there, the key starts afresh`, async () => {
    const name = fresh('throw');
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    let n = 0;
    // One event per key; `fail(key)` true marks that key's event as the one the handler throws at.
    const round = (fail = () => false) =>
      producer.sendMany(Array.from({ length: KEYS }, (_, k) => [`k${k}`, fail(k) ? { n: n++, fail: true } : { n: n++ }]));
    // A slow handler (10 ms per event): the failing sessions have events buffered behind the throw. No trimming:
    // the check reads the whole input log.
    const start = () => workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle: 2500, delayMs: 10, trimInterval: 0 });
    const a = start();
    let b;
    try {
      await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
      for (let r = 0; r < 4; r++) await round();
      await round((k) => k < FAILING);
      // Sent before the close markers the failures write: they go to the failed sessions and are dropped with them.
      await round();
      if (moment === 'once errors are in Redis') {
        await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).some((o) => o.error), 'an error output written');
      }
      await killChild(a);
      const written = await readAllOutputs(client, name, PARTITIONS);
      const errorsBefore = written.filter((o) => o.error).length;
      if (moment === 'before the error is written') assert.equal(errorsBefore, 0, 'A died before writing an error');
      else assert.ok(errorsBefore > 0, 'A died with errors written');
      b = start();
      await eventually(() => lastStats(b)?.owned.length === PARTITIONS, 'B owns every partition', 30_000);
      // The failed keys' next events: a new session each, once B has replayed the failures and closed them.
      await eventually(
        async () => [...(await logSessions(name)).values()].filter((s) => s.closed && s.events.some((e) => e.fail)).length === FAILING,
        'the failed sessions closed by their markers',
        30_000,
      );
      for (let r = 0; r < 3; r++) await round();

      await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0, 'nothing pending', 30_000);
      await eventually(async () => [...(await logSessions(name)).values()].every((s) => s.closed), 'every session closed', 30_000);
      const sessions = await logSessions(name);
      const outputs = await readAllOutputs(client, name, PARTITIONS);
      const seen = new Set();
      for (const o of outputs) {
        assert.ok(!seen.has(`${o.sid}#${o.seq}`), `${o.sid}#${o.seq} written twice`);
        seen.add(`${o.sid}#${o.seq}`);
      }
      assert.deepEqual([...new Set(outputs.map((o) => o.sid))].sort(), [...sessions.keys()].sort(), 'a session per log session');
      for (const [sid, { events }] of sessions) {
        const mine = outputs.filter((o) => o.sid === sid);
        assert.deepEqual(mine.map((o) => o.seq), mine.map((_, i) => i + 1), `${sid}: seqs from 1, in order`);
        assert.deepEqual(mine.map((o) => o.value ?? { error: o.error }), expectedOutputs(events), sid);
      }
      const failed = [...sessions.values()].filter((s) => s.events.some((e) => e.fail));
      assert.equal(failed.length, FAILING, 'each failing key had one failed session');
      assert.equal(outputs.filter((o) => o.error).length, FAILING, 'one error output per failed session');
      for (let k = 0; k < FAILING; k++) {
        const mine = [...sessions.values()].filter((s) => s.key === `k${k}`);
        assert.ok(mine.length >= 2, `k${k}: a new session after the failed one`);
        assert.deepEqual(expectedOutputs(mine.at(-1).events)[0].count, 1, `k${k}: the last session starts from scratch`);
      }
      const stats = await stopChild(b);
      assert.ok(stats.replayedSessions > 0, 'B replayed the live sessions');
    } finally {
      for (const c of [a, b]) if (c && c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    }
  });
}
