// A handler that throws (or returns) mid-session while its owner is killed -9
// (before the error output is written, and once the first ones are in Redis):
// the new owner replays the sessions, which end again at the same event. The
// error is written once (its (sid, seq) deduplicated), the session ends at the
// event its handler stopped at, the events behind it that its slow handler had
// buffered and never took start the key's next session (none is lost), and
// nothing stays pending.
//
// (An idle-close marker racing a kill -9 is in redis-faults.test.mjs.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs, sessionsInLog } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 8;
const KEYS = 12;
const FAILING = 6;
/** The function's idleTimeout, ms. */
const IDLE = 2500;

useRedis();

/**
 * The sessions the input log defines: a key's session runs from its first entry to its close marker, to its idle
 * end by the log's clock, or to the event its handler stops at (`fail` or `stop`), whichever comes first.
 */
function logSessions(name) {
  return sessionsInLog(client, name, PARTITIONS, IDLE, (event) => event.fail || event.stop);
}

/** What the `totals` handler writes for a session's events, crash-free: running totals up to a `fail` (then its error) or a `stop`. */
function expectedOutputs(events) {
  const out = [];
  let total = 0;
  let count = 0;
  for (const e of events) {
    if (e.fail) {
      out.push({ error: { name: 'Error', message: `failed at ${e.n}`, code: 'E_TEST' } });
      break;
    }
    if (e.stop) break;
    total += e.n;
    count++;
    out.push({ n: e.n, total, count });
  }
  return out;
}

const cases = [
  { ending: 'fail', moment: 'before the error is written' },
  { ending: 'fail', moment: 'once errors are in Redis' },
  { ending: 'stop', moment: 'while sessions end' },
];
for (const { ending, moment } of cases) {
  const how = ending === 'fail' ? 'throwing' : 'returning';
  test(`a handler ${how} mid-session while its owner is killed -9 (${moment}): ${ending === 'fail' ? 'the error is written once, ' : ''}the session ends at that event, the events behind it start the key's next session`, async () => {
    const name = fresh('throw');
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    let n = 0;
    // One event per key; `fail(key)` true marks that key's event as the one the handler throws at.
    const round = (fail = () => false) =>
      producer.sendMany(Array.from({ length: KEYS }, (_, k) => [`k${k}`, fail(k) ? { n: n++, [ending]: true } : { n: n++ }]));
    // A slow handler (10 ms per event): the failing sessions have events buffered behind the throw. No trimming:
    // the check reads the whole input log.
    const start = () => workerChild(name, { partitions: PARTITIONS, ttl: 1000, idle: IDLE, delayMs: 10, trimInterval: 0 });
    const a = start();
    let b;
    try {
      await eventually(() => lastStats(a)?.owned.length === PARTITIONS, 'A owns every partition');
      for (let r = 0; r < 4; r++) await round();
      await round((k) => k < FAILING);
      // Sent right behind: the slow handlers have them buffered, untaken, when they stop. They open the keys' next sessions.
      await round();
      if (moment === 'while sessions end') {
        await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).some((o) => o.value?.count === 1 && o.value.n >= 5 * KEYS), 'a next session started');
      }
      if (moment === 'once errors are in Redis') {
        await eventually(async () => (await readAllOutputs(client, name, PARTITIONS)).some((o) => o.error), 'an error output written');
      }
      await killChild(a);
      const written = await readAllOutputs(client, name, PARTITIONS);
      const errorsBefore = written.filter((o) => o.error).length;
      if (moment === 'before the error is written') assert.equal(errorsBefore, 0, 'A died before writing an error');
      if (moment === 'once errors are in Redis') assert.ok(errorsBefore > 0, 'A died with errors written');
      b = start();
      await eventually(() => lastStats(b)?.owned.length === PARTITIONS, 'B owns every partition', 30_000);
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
      const stopped = [...sessions.values()].filter((s) => s.events.some((e) => e[ending]));
      assert.equal(stopped.length, FAILING, 'each stopping key had one session ended by its handler');
      assert.equal(outputs.filter((o) => o.error).length, ending === 'fail' ? FAILING : 0, 'one error output per failed session');
      // Every event is in some session's outputs: none was dropped between a handler's end and the key's next session.
      const values = outputs.filter((o) => o.value).map((o) => o.value.n);
      const stops = [...sessions.values()].flatMap((s) => s.events.filter((e) => e[ending]).map((e) => e.n));
      assert.deepEqual([...values, ...stops].sort((x, y) => x - y), Array.from({ length: n }, (_, i) => i), 'every event processed');
      for (const s of stopped) {
        assert.ok(s.events.at(-1)[ending], `${s.key}: its session ends at the event its handler stopped at`);
        const next = [...sessions.entries()].find(([, t]) => t.key === s.key && t.events[0].n === s.events.at(-1).n + KEYS);
        assert.ok(next !== undefined, `${s.key}: the event right behind it opens the key's next session`);
      }
      const stats = await stopChild(b);
      assert.ok(stats.replayedSessions > 0, 'B replayed the live sessions');
    } finally {
      for (const c of [a, b]) if (c && c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    }
  });
}
