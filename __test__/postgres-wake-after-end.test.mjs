// A timer that the log's clock passes before its wake-up is written: the session takes the timer, returns, and its
// end is committed. Its wake-up, still in flight on another connection of the pool, must not be written after that
// end: the session would then count as live for ever (versions' status, recordings, drained(), a later release
// refusing the partition). One worker, no faults: single-event sessions whose handler arms a timer 30 ms after its
// event and returns when it fires, events 32 ms apart, so that other keys' events pass each timer as it comes due.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { postgresOutputs, postgresProducer, postgresVersions, postgresWorker } from 'velo-stream/postgres';
import { eventually } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SESSIONS = 150;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('no wake-up is written after its session ended: every session of a timer the log passed ends, none is left live', async () => {
  const name = `wake-end-${process.pid}`;
  const shared = { pool: pool(), schema: 'velo_wake_end', name, partitions: 1 };
  const fn = streamFn(
    async function* armsThenReturns(events, ctx) {
      for await (const e of events) {
        if (e.fired) {
          yield { fired: e.n };
          return;
        }
        ctx.wakeAt(ctx.entry.time + 30, { fired: true, n: e.n });
      }
    },
    { idleTimeout: 10_000 },
  );
  const errors = [];
  const worker = postgresWorker(fn, { ...shared, version: 'v1', pollInterval: 5, onError: (e) => errors.push(e) });
  const producer = postgresProducer(shared);
  try {
    for (let n = 0; n < SESSIONS; n++) {
      await producer.send(`k${n}`, { n });
      await sleep(32);
    }
    const fired = new Set();
    for await (const o of postgresOutputs({ ...shared, pollInterval: 10, signal: AbortSignal.timeout(60_000) })) {
      fired.add(o.value.fired);
      if (fired.size === SESSIONS) break;
    }
    assert.equal(fired.size, SESSIONS);
    const versions = postgresVersions(shared);
    // Every session returned: none is left live, and v1 drains once the worker is gone.
    let live;
    const none = async () => Object.keys((live = (await versions.status()).sessions)).length === 0;
    await eventually(none, 'no live session', 5_000).catch(() => assert.deepEqual(live, {}, 'sessions left live'));
    const { rows } = await pool().query('SELECT sid, id FROM velo_wake_end.timers WHERE fn = $1', [name]);
    assert.deepEqual(rows, [], 'no timer record of an ended session');
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});
