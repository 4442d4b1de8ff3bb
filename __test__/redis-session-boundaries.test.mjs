// Where a session ends and which timers it may make must not depend on how the owner got there: live, on a
// backlog, or after a takeover from a checkpoint. Two cases that did (each against what the session rule says,
// js/durable/rules/session-rules.ts): a restored session's idle end measured from a timer made in the past instead of the
// latest time it had taken, and `maxSessionTimers` counting timers sent ahead to the session but not taken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from '../index.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

/** Redis' clock, ms. */
async function redisNow() {
  const [s, us] = (await client.sendCommand(['TIME'])).map(Number);
  return s * 1000 + Math.floor(us / 1000);
}

const owns = (worker) => eventually(() => worker.stats().owned.length === 1, 'the worker owns the partition');

test('a session restored from a checkpoint taken after a timer made in the past keeps its idle end from the latest time it took: its next timer, due before that end, fires', async () => {
  const IDLE = 3000;
  const name = fresh('pastidle');
  // The event E (entry time T) was made at `at` = T - 1000 by its producer. Its handler makes a timer at `at + 1`
  // (due at once, so it comes right after E), and, as that timer fires, a second at `at + 3500` (about T + 2500,
  // before the idle end T + 3000), then checkpoints.
  const fn = streamFn(
    async function* pastTimer(events, ctx) {
      for await (const e of events) {
        if (e.timer === undefined) {
          ctx.wakeAt(e.at + 1, { timer: 1, at: e.at });
          yield { event: true };
        } else if (e.timer === 1) {
          ctx.wakeAt(e.at + 3500, { timer: 2 });
          yield { timer: 1 };
          ctx.checkpoint({});
        } else yield { timer: 2 };
      }
    },
    { idleTimeout: IDLE },
  );
  const options = { client, name, partitions: 1, leaseTtl: 1000, trimInterval: 0 };
  const a = redisWorker(fn, options);
  let b;
  try {
    await owns(a);
    const producer = redisProducer({ client, name, partitions: 1 });
    await producer.send('k', { at: (await redisNow()) - 1000 });
    await eventually(
      async () => (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 1 && (await readAllOutputs(client, name, 1)).length === 2,
      'the checkpoint after the first timer',
    );
    // A hand-off well before the second timer is due: the next owner restores the session from its checkpoint.
    await a.close();
    b = redisWorker(fn, options);
    await eventually(async () => (await client.hLen(`velo:{${name}:p0}:ckpt`)) === 0, 'the session ended', 15_000);
    const outputs = await readAllOutputs(client, name, 1);
    assert.deepEqual(
      outputs.map((o) => o.value),
      [{ event: true }, { timer: 1 }, { timer: 2 }],
    );
    assert.equal(new Set(outputs.map((o) => o.sid)).size, 1);
    assert.equal(b.stats().restored, 1);
  } finally {
    await a.close();
    await b?.close();
  }
});

test('maxSessionTimers counts the timers not taken: a live run and a backlog let the handler make the same timers', async () => {
  // The handler makes two timers of one due time (a1, a2) with the first event; as a1 fires, it tries two more.
  // With maxSessionTimers 2, a2 not taken yet counts: one more is made, the next throws, whether a2 was sent
  // into the session ahead of the handler with a1 (live: both due when the log's clock reaches them) or not (a
  // backlog, where the key's next entry, after them, is in the session's input).
  const fn = streamFn(
    async function* timers(events, ctx) {
      for await (const e of events) {
        if (e.start) {
          ctx.wakeAt(e.at + 300, { t: 'a1', at: e.at });
          ctx.wakeAt(e.at + 300, { t: 'a2', at: e.at });
        } else if (e.t === 'a1') {
          let made = 0;
          try {
            for (let i = 0; i < 2; i++, made++) ctx.wakeAt(e.at + 600_000 + i, { t: 'later' });
          } catch (error) {
            assert.equal(error.code, 'ERR_VELO_TOO_MANY_TIMERS');
          }
          yield { made };
        } else if (e.t === 'a2') yield { a2: true };
        else yield { n: e.n };
      }
    },
    { idleTimeout: 60_000 },
  );
  const run = async (backlog) => {
    const name = fresh(backlog ? 'timersbacklog' : 'timerslive');
    const producer = redisProducer({ client, name, partitions: 1 });
    const options = { client, name, partitions: 1, leaseTtl: 1000, trimInterval: 0, maxSessionTimers: 2 };
    let worker;
    if (!backlog) {
      worker = redisWorker(fn, options);
      await owns(worker);
    }
    try {
      await producer.send('k', { start: true, at: await redisNow() });
      // The key's next entry comes after the timers' due time (live: once they fired).
      await new Promise((resolve) => setTimeout(resolve, 400));
      if (!backlog) await eventually(async () => (await readAllOutputs(client, name, 1)).length === 2, 'the timers fired');
      await producer.send('k', { n: 2 });
      worker ??= redisWorker(fn, options);
      await eventually(async () => (await readAllOutputs(client, name, 1)).length === 3, 'every output');
      return (await readAllOutputs(client, name, 1)).map((o) => o.value);
    } finally {
      await worker?.close();
    }
  };
  const expected = [{ made: 1 }, { a2: true }, { n: 2 }];
  assert.deepEqual(await run(false), expected, 'live');
  assert.deepEqual(await run(true), expected, 'backlog');
});
