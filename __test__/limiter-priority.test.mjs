// The limiter's priorities (`limiter({ priority })`), by counting grants, never by timing: one concurrency slot,
// handed on one grant at a time, and the order of grants recorded. The rule is the core's
// (crates/velo-core/src/limiter/line.rs, checked against a model by property tests); these check that the
// JavaScript side feeds it each acquire's priority, with and without fairness, from task stages and sessions, and
// refuses bad priorities with ERR_VELO_LIMIT_PRIORITY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limiter, streamFn, task } from 'velo-stream';
import { redisLimiter } from 'velo-stream/redis';
import { settle } from './helpers/util.mjs';
import { grantOrder } from './helpers/limiter-grants.mjs';

/** The names granted, in order, when `plan` (items, in arrival order) all wait for one slot. */
const nameOrder = (l, plan) => grantOrder(l, plan, { name: 'first', p: 0, t: 'x' }, (item) => item.name);

test('priority: a higher priority is served before every lower one that came earlier; first come, first served within one', async () => {
  const l = limiter({ concurrency: 1, priority: (item) => item.p });
  const plan = [
    { name: 'low1', p: -5 },
    { name: 'mid1', p: 0 },
    { name: 'high1', p: 10 },
    { name: 'mid2', p: 0 },
    { name: 'high2', p: 10 },
    { name: 'low2', p: -5 },
    { name: 'top', p: 1_000_000 },
  ];
  assert.deepEqual(await nameOrder(l, plan), ['top', 'high1', 'high2', 'mid1', 'mid2', 'low1', 'low2']);
  assert.equal(l.stats().inUse, 0);
  await l.close();
  // Without it, the same plan is first come, first served.
  const fifo = limiter({ concurrency: 1 });
  assert.deepEqual(
    await nameOrder(fifo, plan),
    plan.map((item) => item.name),
  );
  await fifo.close();
});

test('priority with fairness: tenants take turns within a priority; a higher priority goes first whatever its tenant', async () => {
  const l = limiter({ concurrency: 1, priority: (item) => item.p, fairness: { by: (item) => item.t } });
  const plan = [
    { name: 'a1', t: 'a', p: 0 },
    { name: 'a2', t: 'a', p: 0 },
    { name: 'a3', t: 'a', p: 0 },
    { name: 'b1', t: 'b', p: 0 },
    { name: 'a-urgent', t: 'a', p: 1 },
    { name: 'b2', t: 'b', p: 0 },
  ];
  assert.deepEqual(await nameOrder(l, plan), ['a-urgent', 'a1', 'b1', 'a2', 'b2', 'a3']);
  await l.close();
});

test('priority: an aborted waiter leaves its priority; a priority is asked at every acquire, also one that does not wait', async () => {
  const asked = [];
  const l = limiter({
    concurrency: 1,
    priority: (item) => {
      asked.push(item.name);
      return item.p;
    },
  });
  const held = await l.acquire({ name: 'now', p: 0 });
  const ac = new AbortController();
  const order = [];
  const high = l.acquire({ name: 'high', p: 5 }, { signal: ac.signal }).catch((e) => e);
  const low = l.acquire({ name: 'low', p: 0 }).then((permit) => {
    order.push('low');
    return permit;
  });
  await settle();
  ac.abort(new Error('gone'));
  assert.equal((await high).message, 'gone');
  assert.equal(l.stats().waiting, 1);
  held.release();
  (await low).release();
  assert.deepEqual(order, ['low']);
  assert.deepEqual(asked, ['now', 'high', 'low']);
  await l.close();
});

test('priority per event in a task stage: urgent calls go first once the slot is taken', async () => {
  const l = limiter({ concurrency: 1, priority: (x) => (x.urgent ? 1 : 0) });
  const started = [];
  const stage = task(
    async (x) => {
      started.push(x.n);
      await settle(1);
      return x.n;
    },
    { concurrency: 8, limiter: l },
  );
  const events = Array.from({ length: 8 }, (_, n) => ({ n, urgent: n >= 5 }));
  const out = await stage.run(events);
  assert.deepEqual(out, [0, 1, 2, 3, 4, 5, 6, 7], 'outputs keep their order');
  // Call 0 took the free slot; the other seven waited, the urgent ones (5, 6, 7) first.
  assert.deepEqual(started, [0, 5, 6, 7, 1, 2, 3, 4]);
  await l.close();
});

test("priority per key of in-process sessions: a session's admission gets its key", async () => {
  const l = limiter({ concurrency: 1, priority: ({ key }) => (String(key).startsWith('vip:') ? 1 : 0) });
  const started = [];
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        started.push(e);
        yield e;
        return;
      }
    },
    { limiter: l },
  );
  const sessions = fn.sessions({ idleTimeout: 0 });
  const keys = ['a:0', 'a:1', 'a:2', 'vip:0', 'a:3', 'vip:1'];
  await Promise.all(keys.map((key) => sessions.send(key, key)));
  let n = 0;
  for await (const item of sessions) if (++n === keys.length) break;
  await sessions.close();
  assert.deepEqual(started, ['a:0', 'vip:0', 'vip:1', 'a:1', 'a:2', 'a:3']);
  await l.close();
});

test('priority: a bad priority refuses the acquire with ERR_VELO_LIMIT_PRIORITY, and nothing waits', async () => {
  const boom = new Error('boom');
  const answers = [
    [() => NaN, 'NaN'],
    [() => 1.5, 'a fraction'],
    [() => 1_000_001, 'too high'],
    [() => -1_000_001, 'too low'],
    [() => Infinity, 'Infinity'],
    [() => '1', 'a string'],
    [() => 1n, 'a BigInt'],
    [() => undefined, 'undefined'],
    [() => ({ valueOf: () => 1 }), 'an object'],
    [
      () => {
        throw boom;
      },
      'throws',
    ],
  ];
  for (const [priority, why] of answers) {
    const l = limiter({ concurrency: 1, priority });
    // Asked at every acquire: refused whether or not the acquire would wait.
    await assert.rejects(l.acquire({}), (e) => e instanceof TypeError && e.code === 'ERR_VELO_LIMIT_PRIORITY', why);
    assert.deepEqual([l.stats().waiting, l.stats().inUse], [0, 0], why);
    await l.close();
  }
  const l = limiter({
    concurrency: 1,
    priority: () => {
      throw boom;
    },
  });
  await assert.rejects(l.acquire({}), (e) => e.cause === boom);
  await l.close();
  // -0 is 0: granted.
  const zero = limiter({ concurrency: 1, priority: () => -0 });
  (await zero.acquire({})).release();
  await zero.close();
});

test('priority: bad options are refused at creation; the Redis limiter refuses it plainly', () => {
  for (const priority of [1, 'high', {}, null]) {
    assert.throws(() => limiter({ concurrency: 1, priority }), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  assert.throws(() => limiter({ concurrency: 1, mode: 'reject', priority: () => 1 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /nothing waits/,
  });
  assert.throws(() => redisLimiter({ client: {}, name: 'r', concurrency: 1, priority: () => 1 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /"priority" option is not supported on Redis yet/,
  });
});
