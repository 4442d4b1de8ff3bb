// The process view both fleet limiters (redisLimiter, postgresLimiter) drive: what it decides from what a store
// answered, without a store, and that it is the one writer of its records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { LimiterView } = require('../dist/durable/common/limiter-view.js');

const settings = (more = {}) => ({
  name: 'v',
  limits: { concurrency: 2 },
  mode: 'throttle',
  maxWaiting: 10,
  leaseTtl: 3_000,
  whenFails: 'fail-closed',
  callTimeout: 5_000,
  ...more,
});

function waiter(ticket, key, since) {
  let settled;
  const done = new Promise((resolve) => {
    settled = resolve;
  });
  return {
    w: { ticket, token: `t${ticket}`, key, cost: 1, since, resolve: settled, reject: settled, polling: false, again: false, done: false },
    done,
  };
}

test('a renewal loses the permits past their lease by this clock and those the store names, and takes the fleet figures and limits', () => {
  const view = new LimiterView('redis', settings(), (item) => item);
  try {
    const giveBack = () => Promise.resolve(true);
    const old = view.grant('a', 'tok1', 0, 1, 0, 0, giveBack);
    const fresh = view.grant('a', 'tok2', 0, 1, 0, 10_000, giveBack);
    const named = view.grant('b', 'tok3', 0, 1, 0, 10_000, giveBack);
    const { permits } = view.toRenew(10_001);
    assert.equal(old.lost, true);
    assert.deepEqual(
      permits.map((p) => p.token),
      ['tok2', 'tok3'],
    );
    view.markDown(new Error('away'));
    const { w } = waiter('q1', 'a', 5);
    view.wait(w, () => {});
    const ask = view.renewed(10_001, permits, {
      lostTokens: ['tok3'],
      tickets: ['q1', 'unknown'],
      processes: 3,
      admitted: 7,
      rejected: 2,
      limits: [6, undefined, undefined, undefined],
    });
    assert.deepEqual(ask, [w]);
    assert.equal(fresh.renewedAt, 10_001);
    assert.equal(named.lost, true);
    assert.equal(view.down, null);
    assert.deepEqual(view.limits, { concurrency: 6 });
    const stats = view.stats();
    assert.deepEqual(stats.fleet, { processes: 3, admitted: 7, rejected: 2 });
    assert.equal(stats.lost, 2);
    assert.equal(stats.inUse, 1);
    assert.equal(stats.waiting, 1);
    assert.equal(stats.admitted, 3);
    const [line] = view.waitingKeys();
    assert.deepEqual({ ...line, oldestWaitMs: 0 }, { key: 'a', waiting: 1, held: 1, oldestWaitMs: 0 });
    assert.ok(line.oldestWaitMs > 0);
    assert.deepEqual(view.describe(), { kind: 'redis', concurrency: 6, mode: 'throttle', keyed: false });
  } finally {
    view.close();
  }
});

test('a hint before its ticket is kept and handed over when the waiter comes; a finished waiter is out once', () => {
  const view = new LimiterView('postgres', settings(), (item) => item);
  try {
    assert.equal(view.hinted('q9', 'q9 g'), undefined);
    const { w } = waiter('q9', '', 0);
    assert.equal(view.wait(w, () => {}), 'q9 g');
    assert.equal(view.hinted('q9', 'q9 25'), w);
    assert.equal(view.finish(w), true);
    assert.equal(view.finish(w), false);
    assert.equal(view.stats().waiting, 0);
  } finally {
    view.close();
  }
});

test('undos are handed out once until answered, and again after a failed send', () => {
  const view = new LimiterView('redis', settings(), (item) => item);
  try {
    view.undo('a', null, 'tok1');
    assert.deepEqual(view.undosToSend(), [['tok1', { key: 'a', ticket: null }]]);
    assert.deepEqual(view.undosToSend(), []);
    view.undoFailed('tok1');
    assert.equal(view.undosToSend().length, 1);
    view.undoAnswered('tok1');
    view.undoFailed('tok1');
    assert.deepEqual(view.undosToSend(), []);
  } finally {
    view.close();
  }
});

test("'local' when the store fails: the fallback holds this process' share of the limits among the live processes", async () => {
  const view = new LimiterView('redis', settings({ whenFails: 'local', limits: { concurrency: 4 } }), (item) => item);
  try {
    view.renewed(0, [], { lostTokens: [], tickets: [], processes: 2, admitted: 0, rejected: 0, limits: [] });
    const error = new Error('away');
    const one = await view.degraded('', 1, 0, error);
    const two = await view.degraded('', 1, 0, error);
    assert.equal(one.source, 'local');
    let third = false;
    const waiting = view.degraded('', 1, 0, error).then((p) => {
      third = true;
      return p;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(third, false, 'a share of 2 of the fleet concurrency 4 among 2 processes');
    one.release();
    (await waiting).release();
    two.release();
  } finally {
    const closing = view.close();
    await closing.fallback;
  }
  assert.equal(view.close(), false);
});

test('a store call that fails after close is refused as closed, whatever the failure policy: no permit, no fallback made', async () => {
  for (const whenFails of ['fail-open', 'local', 'fail-closed']) {
    const view = new LimiterView('redis', settings({ whenFails }), (item) => item);
    await view.close().fallback;
    await assert.rejects(view.degraded('', 1, 0, new Error('away')), { code: 'ERR_VELO_LIMITER_CLOSED' }, whenFails);
    assert.equal(view.stats().inUse, 0, `${whenFails}: nothing held, by a local limiter made after close either`);
  }
});

test("close refuses the waiters and hands them back for the store's line, once", async () => {
  const view = new LimiterView('redis', settings(), (item) => item);
  const { w, done } = waiter('q1', 'a', 0);
  view.wait(w, () => {});
  const closing = view.close();
  assert.deepEqual(closing.left, [w]);
  assert.equal((await done).code, 'ERR_VELO_LIMITER_CLOSED');
  assert.equal(view.close(), false);
  assert.throws(() => view.assertOpen(), { code: 'ERR_VELO_LIMITER_CLOSED' });
});

test("the view's records are written by the view only: neither the driver nor a backend assigns a permit's or a waiter's view fields", () => {
  for (const file of ['js/durable/common/fleet-limiter.ts', 'js/redis/limiter/limiter.ts', 'js/postgres/clients/limiter.ts']) {
    const source = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
    for (const field of ['lost', 'renewedAt', 'done', 'timer', 'onAbort']) {
      assert.doesNotMatch(source, new RegExp(`\\.${field}\\s*(=[^=]|\\+\\+|\\+=)`), `${file} writes .${field}`);
    }
  }
});

test('both limiters check the options they share alike, and list every option they know in one order', () => {
  const { redisLimiter } = require('../dist/redis/index.js');
  const { postgresLimiter } = require('../dist/postgres/index.js');
  const client = { sendCommand() {}, duplicate() {}, isOpen: true };
  const pool = { query() {}, connect() {} };
  const shared = 'name, concurrency, rate, key, cost, mode, maxWaiting, leaseTtl';
  assert.throws(() => redisLimiter({ client, name: 'x', concurrency: 1, bogus: 1 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: `redisLimiter(): unknown option "bogus". Known options: client, ${shared}, whenRedisFails, callTimeout`,
  });
  assert.throws(() => postgresLimiter({ pool, name: 'x', concurrency: 1, bogus: 1 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: `postgresLimiter(): unknown option "bogus". Known options: pool, schema, ${shared}, whenPostgresFails, callTimeout, listen, pollInterval`,
  });
  assert.throws(() => postgresLimiter({ pool, name: 'x', concurrency: 1, whenRedisFails: 'local' }), {
    message: 'postgresLimiter(): unknown option "whenRedisFails": on Postgres it is "whenPostgresFails"',
  });
  for (const [make, base, policy] of [
    [redisLimiter, { client }, 'whenRedisFails'],
    [postgresLimiter, { pool }, 'whenPostgresFails'],
  ]) {
    const bad = (more) => () => make({ ...base, name: 'x', concurrency: 1, ...more });
    assert.throws(bad({ mode: 'queue' }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(bad({ maxWaiting: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(bad({ leaseTtl: 299 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(bad({ callTimeout: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(bad({ [policy]: 'open' }), { code: 'ERR_INVALID_ARG_VALUE', message: new RegExp(`"${policy}" option`) });
    assert.throws(bad({ key: 'tenant' }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(bad({ priority: 1 }), { code: 'ERR_INVALID_ARG_VALUE', message: /not supported on (Redis|Postgres) yet/ });
  }
});
