// redisLimiter while its redis-server is stopped (by PID) mid-run and started again: each `whenRedisFails` policy
// does what docs/redis/flow-control.md says, waiters in line follow it, and the limiter goes back to Redis after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisLimiter } from 'velo-stream/redis';
import { client, redis, useRedis } from './helpers/redis-suite.mjs';

useRedis();

async function eventually(check, what, ms = 30_000) {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
const UNREACHABLE = /^ERR_VELO_REDIS_(CONNECTION|TIMEOUT)$/;
const common = { client: undefined, leaseTtl: 600, callTimeout: 300 };

test("Redis stopped mid-run and restarted: fail-closed refuses, fail-open allows, 'local' limits in-process by its share; all go back to Redis", async () => {
  const opts = { ...common, client };
  const closed = redisLimiter({ ...opts, name: 'closed', concurrency: 1 });
  const open = redisLimiter({ ...opts, name: 'open', concurrency: 1, whenRedisFails: 'fail-open' });
  // Two processes share 'local' (concurrency 4): each falls back to 4 / 2 = 2.
  const local = redisLimiter({ ...opts, name: 'local', concurrency: 4, whenRedisFails: 'local' });
  const peer = redisLimiter({ ...opts, name: 'local', concurrency: 4, whenRedisFails: 'local' });
  const all = [closed, open, local, peer];
  let down = false;
  try {
    await eventually(() => local.stats().fleet.processes === 2, 'both local processes registered');
    const before = await closed.acquire(0);
    assert.equal(before.source, 'redis');
    const waiter = closed.acquire(0).catch((error) => error);
    await eventually(() => closed.stats().waiting === 1, 'a waiter in line');

    await redis.shutdown();
    down = true;
    // The waiter follows the policy once its renewal fails: fail-closed refuses it.
    assert.match((await waiter).code, UNREACHABLE);
    await assert.rejects(closed.acquire(0), (error) => UNREACHABLE.test(error.code));
    assert.equal(closed.stats().redisDown, true);
    const opened = await open.acquire(0);
    assert.equal(opened.source, 'open');
    const l1 = await local.acquire(0);
    const l2 = await local.acquire(0);
    assert.deepEqual([l1.source, l2.source], ['local', 'local']);
    let third;
    const pending = local.acquire(0).then((p) => (third = p));
    await eventually(() => local.stats().waiting === 1, 'the third waits in-process (share of 2)');
    assert.equal(third, undefined);
    l1.release();
    await pending;
    assert.equal(third.source, 'local');
    third.release();
    l2.release();
    opened.release();

    await redis.start();
    down = false;
    for (const limiter of all) await eventually(() => !limiter.stats().redisDown, `${limiter.name} sees Redis again`);
    // The restart lost Redis' data (no persistence): the permit held across it is reported lost, not renewed.
    await eventually(() => before.lost, 'the permit held across the restart is lost');
    for (const limiter of [closed, open, local]) {
      const permit = await limiter.acquire(0);
      assert.equal(permit.source, 'redis', limiter.name);
      permit.release();
      assert.equal(await permit.released(), true);
    }
  } finally {
    // A failed check must not leave the server down for after()'s stop.
    if (down) await redis.start();
    for (const limiter of all) await limiter.close();
  }
});

test('acquires that got no answer within callTimeout (Redis paused) take nothing once Redis answers, under every policy: their permits and tickets are undone by their tokens (counted round trips)', async () => {
  const opts = { client, leaseTtl: 60_000, callTimeout: 300 };
  const names = ['undo-closed', 'undo-open', 'undo-local'];
  const limiters = [
    redisLimiter({ ...opts, name: names[0], concurrency: 5 }),
    redisLimiter({ ...opts, name: names[1], concurrency: 5, whenRedisFails: 'fail-open' }),
    redisLimiter({ ...opts, name: names[2], concurrency: 5, whenRedisFails: 'local' }),
  ];
  // An acquire that would wait in line: the one slot of 'undo-line' is held.
  const holder = redisLimiter({ ...opts, name: 'undo-line', concurrency: 1 });
  const waiter = redisLimiter({ ...opts, name: 'undo-line', concurrency: 1 });
  const all = [...limiters, holder, waiter];
  let paused = false;
  try {
    for (const l of limiters) (await l.acquire(0)).release();
    const slot = await holder.acquire(0);
    await redis.pause();
    paused = true;
    const acquires = [];
    for (const l of limiters) for (let i = 0; i < 3; i++) acquires.push(l.acquire(i).then((p) => p.source, (error) => error.code));
    acquires.push(waiter.acquire(0).then((p) => p.source, (error) => error.code));
    const got = await Promise.all(acquires);
    assert.deepEqual(got, [
      ...Array(3).fill('ERR_VELO_REDIS_TIMEOUT'),
      ...Array(3).fill('open'),
      ...Array(3).fill('local'),
      'ERR_VELO_REDIS_TIMEOUT',
    ]);
    await redis.resume();
    paused = false;
    // Redis runs the paused acquires now, then their undos (sent after them on the same connection).
    const holders = async () => Promise.all(names.map((name) => client.zCard(`velo:lim:{${name}}:h:`)));
    for (let i = 0; i < 50 && (await holders()).some((count) => count > 0); i++) await client.ping();
    assert.deepEqual(await holders(), [0, 0, 0], 'no permit left that nobody holds');
    for (let i = 0; i < 50 && (await client.zCard('velo:lim:{undo-line}:q:')) > 0; i++) await client.ping();
    assert.equal(await client.zCard('velo:lim:{undo-line}:q:'), 0, "the timed-out waiter's ticket left the line");
    slot.release();
    assert.equal(await slot.released(), true);
    assert.equal(await client.zCard('velo:lim:{undo-line}:h:'), 0, 'the freed slot went to nobody');
  } finally {
    if (paused) await redis.resume();
    for (const limiter of all) await limiter.close();
  }
});
