// A pipe and a task() stage as a session's function end by their idleTimeout, as a single handler's session does,
// on every backend: on the test worker's virtual clock (settle() ends them), and on Redis and on Postgres (the
// session ends about idleTimeout after its last event, its slot free, and the key's next event opens another
// session). A stream without the session's hooks (a pipe's, a task stage's) never says that it waits for input: its
// idle end needs a tick all the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn, task } from 'velo-stream';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { testWorker } from 'velo-stream/testing';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';
import { until } from './helpers/resume.mjs';

useRedis();
usePostgres();

const IDLE = 200;
const double = streamFn(
  async function* (events) {
    for await (const e of events) yield { n: e.n * 2 };
  },
  { idleTimeout: IDLE },
);
const plusOne = streamFn(
  async function* (events) {
    for await (const e of events) yield { m: e.n + 1 };
  },
  { idleTimeout: IDLE },
);
const KINDS = {
  pipe: () => double.pipe(plusOne),
  task: () => task(async (e) => ({ t: e.n }), { idleTimeout: IDLE }),
};

for (const [kind, make] of Object.entries(KINDS)) {
  test(`${kind}: a session ends by idleTimeout on the test worker's virtual clock`, async () => {
    const worker = testWorker(make());
    try {
      worker.send('k', { n: 1 });
      worker.send('k', { n: 2 });
      await worker.advance(10);
      // Ended by its idle end: settle() has nothing left open.
      await worker.settle(10 * IDLE);
      worker.send('k', { n: 3 });
      await worker.settle(10 * IDLE);
      const sessions = worker.sessions();
      assert.equal(sessions.length, 2, 'the key had two sessions: the first ended idle');
      assert.deepEqual(
        sessions.map((s) => s.outputs.length),
        [2, 1],
      );
    } finally {
      await worker.close();
    }
  });

  for (const backend of ['redis', 'postgres']) {
    test(`${kind} on ${backend}: a session ends by idleTimeout, and the key's next event opens another`, async () => {
      const shared =
        backend === 'redis'
          ? { client, name: fresh(`kinds-idle-${kind}`), partitions: 1 }
          : { client: pool(), schema: 'velo_kinds_idle', name: fresh(`kinds_idle_${kind}`), partitions: 1 };
      const errors = [];
      const worker = sessionWorker(make(), { ...shared, leaseTtl: 3000, onError: (e) => errors.push(e) });
      const producer = sessionProducer(shared);
      const got = [];
      const reading = new AbortController();
      const reader = (async () => {
        for await (const o of sessionOutputs({ ...shared, signal: reading.signal })) got.push(o);
      })().catch((error) => {
        if (!reading.signal.aborted) throw error;
      });
      try {
        await until(() => worker.stats().owned.length === 1, 'the worker owns the partition');
        await producer.send('k', { n: 1 });
        await until(() => got.length === 1, 'the first output');
        // Its idle end passes: the session ends (within a few ticks of it), its slot free. (It may have ended
        // already: the output reaches the reader through the store, which may take longer than the idle end.)
        await until(() => worker.stats().sessions === 0, `the session ended by its idle end (${IDLE} ms)`, 10_000);
        await producer.send('k', { n: 2 });
        await until(() => got.length === 2, 'the second output');
        assert.notEqual(got[1].sid, got[0].sid, 'the next event opened another session');
        assert.deepEqual(errors, []);
      } finally {
        reading.abort();
        await reader;
        await worker.close();
      }
    });
  }
}
