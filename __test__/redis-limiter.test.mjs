// redisLimiter in one process on a private redis-server (several limiter objects of one name stand for processes):
// keys, reject mode, the line's bound, abort, close, setLimits, cost, and what every option refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limiter } from 'velo-stream';
import { redisLimiter } from 'velo-stream/redis';
import { client, redis, useRedis } from './helpers/redis-suite.mjs';

useRedis();

let n = 0;
const fresh = () => `lim${++n}`;
const settledState = (promise) => {
  const state = { done: false };
  promise.then(
    () => (state.done = true),
    () => (state.done = true),
  );
  return state;
};
/** Resolves once `check()` holds (asked every 10 ms; the limit is only a guard against a hang). */
async function eventually(check, what, ms = 20_000) {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('keyed: a key at its concurrency waits while other keys proceed; its release serves the line first come first served', async () => {
  const name = fresh();
  const options = { client, name, concurrency: 1, key: (item) => item.tenant, leaseTtl: 3000 };
  const a = redisLimiter(options);
  const b = redisLimiter(options);
  try {
    const held = await a.acquire({ tenant: 'x' });
    const order = [];
    const first = b.acquire({ tenant: 'x' }).then((p) => (order.push('first'), p));
    await eventually(async () => (await client.zCard(`velo:lim:{${name}}:q:x`)) === 1, 'first in line');
    const second = a.acquire({ tenant: 'x' }).then((p) => (order.push('second'), p));
    await eventually(async () => (await client.zCard(`velo:lim:{${name}}:q:x`)) === 2, 'second in line');
    // Other keys are not held up by x's line.
    const y = await b.acquire({ tenant: 'y' });
    const z = await a.acquire({ tenant: 'z' });
    assert.equal(a.stats().waiting, 1);
    assert.equal(b.stats().keys, 2);
    // Per-key waits, as this process sees them: a waits once on x (and holds x), b once on x and holds y.
    const [ax] = a.waitingKeys();
    assert.deepEqual([ax.key, ax.waiting, ax.held], ['x', 1, 1]);
    assert.ok(ax.oldestWaitMs > 0 && ax.oldestWaitMs <= a.stats().oldestWaitMs);
    assert.deepEqual(
      b.waitingKeys().map(({ key, waiting, held }) => ({ key, waiting, held })),
      [{ key: 'x', waiting: 1, held: 0 }],
    );
    assert.throws(() => a.waitingKeys(0), { code: 'ERR_OUT_OF_RANGE' });
    held.release();
    const p1 = await first;
    assert.deepEqual(order, ['first']);
    p1.release();
    (await second).release();
    assert.deepEqual(order, ['first', 'second']);
    y.release();
    z.release();
  } finally {
    await a.close();
    await b.close();
  }
});

test('reject mode answers from one call: refused with ERR_VELO_RATE_LIMITED (retryAfter from the rate), counted', async () => {
  const name = fresh();
  const limiter = redisLimiter({ client, name, mode: 'reject', rate: { limit: 2, period: 10_000, burst: 2 }, cost: (c) => c });
  try {
    await limiter.acquire(1);
    await limiter.acquire(1);
    const error = await limiter.acquire(1).catch((e) => e);
    assert.equal(error.code, 'ERR_VELO_RATE_LIMITED');
    assert.ok(error.retryAfter > 0 && error.retryAfter <= 5000, `retryAfter ${error.retryAfter}`);
    // A cost above the burst could never pass: refused at once, not kept waiting for ever.
    await assert.rejects(limiter.acquire(3), { code: 'ERR_VELO_LIMIT_COST' });
    await assert.rejects(limiter.acquire(NaN), { code: 'ERR_VELO_LIMIT_COST' });
    await assert.rejects(limiter.acquire(-1), { code: 'ERR_VELO_LIMIT_COST' });
    // Whole units, as the in-process limiter (the 'local' fallback is one).
    await assert.rejects(limiter.acquire(0.5), { code: 'ERR_VELO_LIMIT_COST' });
    assert.equal(limiter.stats().rejected, 1);
    assert.equal(limiter.stats().admitted, 2);
    assert.equal(limiter.tryAcquire(1), undefined);
  } finally {
    await limiter.close();
  }
});

test('throttle: the line is bounded by maxWaiting (ERR_VELO_LIMIT_QUEUE_FULL); an aborted waiter leaves it; close rejects waiters', async () => {
  const name = fresh();
  const limiter = redisLimiter({ client, name, concurrency: 1, maxWaiting: 2 });
  const other = redisLimiter({ client, name, concurrency: 1, maxWaiting: 2 });
  try {
    const held = await limiter.acquire(0);
    const controller = new AbortController();
    const aborted = other.acquire(0, { signal: controller.signal });
    const waiting = limiter.acquire(0);
    const waitingState = settledState(waiting);
    await eventually(async () => (await client.zCard(`velo:lim:{${name}}:q:`)) === 2, 'two in line');
    await assert.rejects(other.acquire(0), { code: 'ERR_VELO_LIMIT_QUEUE_FULL' });
    controller.abort(new Error('stop'));
    await assert.rejects(aborted, /stop/);
    await eventually(async () => (await client.zCard(`velo:lim:{${name}}:q:`)) === 1, 'the aborted ticket left the line');
    held.release();
    (await waiting).release();
    assert.ok(waitingState.done);
    // close(): waiters rejected with ERR_VELO_LIMITER_CLOSED, their tickets gone, later acquires refused.
    const again = await limiter.acquire(0);
    const parked = other.acquire(0).catch((error) => error);
    await eventually(async () => (await client.zCard(`velo:lim:{${name}}:q:`)) === 1, 'one in line');
    await other.close();
    assert.equal((await parked).code, 'ERR_VELO_LIMITER_CLOSED');
    await assert.rejects(other.acquire(0), { code: 'ERR_VELO_LIMITER_CLOSED' });
    assert.equal(await client.zCard(`velo:lim:{${name}}:q:`), 0);
    again.release();
    assert.equal(await again.released(), true);
  } finally {
    await limiter.close();
    await other.close();
  }
});

test('setLimits: stored in Redis, seen by every process at its next decision, waiters re-decided at once', async () => {
  const name = fresh();
  const a = redisLimiter({ client, name, concurrency: 1 });
  const b = redisLimiter({ client, name, concurrency: 1 });
  try {
    const held = await a.acquire(0);
    const waiting = b.acquire(0);
    await eventually(async () => (await client.zCard(`velo:lim:{${name}}:q:`)) === 1, 'in line');
    await a.setLimits({ concurrency: 3 });
    const granted = await waiting;
    // b was created with concurrency 1; the fleet's stored limit (3) is what it decides by.
    const third = await b.acquire(0);
    const probe = redisLimiter({ client, name, concurrency: 1, mode: 'reject' });
    await assert.rejects(probe.acquire(0), { code: 'ERR_VELO_RATE_LIMITED' });
    await probe.close();
    for (const p of [held, granted, third]) p.release();
    await assert.rejects(a.setLimits({ concurrency: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(a.setLimits({}), { code: 'ERR_INVALID_ARG_VALUE' });
  } finally {
    await a.close();
    await b.close();
  }
});

test('options refused with coded errors: missing client or name, bad leaseTtl, limits of 0, NaN, huge, hostile objects', () => {
  const name = 'valid';
  const cases = [
    [undefined, 'ERR_INVALID_ARG_TYPE'],
    [{ name, concurrency: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ client: {}, name, concurrency: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ client, concurrency: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ client, name: 'a{b}', concurrency: 1 }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name, concurrency: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: NaN }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1.5 }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1e12 }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: Infinity }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, rate: { limit: 0, period: 1000 } }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, rate: { limit: 10, period: NaN } }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, rate: { limit: 10, period: 1000, burst: 0 } }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, rate: { limit: 10, period: 1000, bursts: 2 } }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name, rate: 10 }, 'ERR_INVALID_ARG_TYPE'],
    [{ client, name, concurrency: 1, leaseTtl: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, leaseTtl: 299 }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, leaseTtl: '1000' }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, maxWaiting: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, mode: 'drop' }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name, concurrency: 1, whenRedisFails: 'retry' }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name, concurrency: 1, callTimeout: -1 }, 'ERR_OUT_OF_RANGE'],
    // (null is a value, not the default: refused as the workers' options are.)
    [{ client, name, concurrency: 1, callTimeout: null }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, leaseTtl: null }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, maxWaiting: null }, 'ERR_OUT_OF_RANGE'],
    [{ client, name, concurrency: 1, mode: null }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name, concurrency: 1, whenRedisFails: null }, 'ERR_INVALID_ARG_VALUE'],
    [{ client, name, concurrency: 1, key: 'tenant' }, 'ERR_INVALID_ARG_TYPE'],
    [{ client, name, concurrency: 1, cost: 3 }, 'ERR_INVALID_ARG_TYPE'],
    [{ client, name, concurrency: 1, concurency: 2 }, 'ERR_INVALID_ARG_VALUE'],
    [
      {
        client,
        name,
        get concurrency() {
          throw new Error('getter');
        },
      },
      'ERR_INVALID_ARG_TYPE',
    ],
  ];
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  cases.push([revoked.proxy, 'ERR_INVALID_ARG_TYPE']);
  const revokedRate = Proxy.revocable({}, {});
  revokedRate.revoke();
  cases.push([{ client, name, rate: revokedRate.proxy }, 'ERR_INVALID_ARG_TYPE']);
  for (const [i, [options, code]] of cases.entries()) assert.throws(() => redisLimiter(options), { code }, `case ${i}`);
});

test('key and cost functions: a throwing key, a non-string, empty or too long key reject with ERR_VELO_LIMIT_KEY (as the in-process limiter)', async () => {
  const name = fresh();
  const limiter = redisLimiter({
    client,
    name,
    concurrency: 1,
    key: (item) => {
      if (item === 'throw') throw new Error('boom');
      return item;
    },
  });
  try {
    await assert.rejects(
      limiter.acquire('throw'),
      (error) => error.code === 'ERR_VELO_LIMIT_KEY' && /boom/.test(error.cause.message),
    );
    await assert.rejects(limiter.acquire(''), { code: 'ERR_VELO_LIMIT_KEY' });
    await assert.rejects(limiter.acquire(42), { code: 'ERR_VELO_LIMIT_KEY' });
    await assert.rejects(limiter.acquire('k'.repeat(2000)), { code: 'ERR_VELO_LIMIT_KEY' });
    (await limiter.acquire('ok')).release();
  } finally {
    await limiter.close();
  }
});

test('the renewal script never revives a lease that ran out, and a stale release frees nothing (the scripts alone, by Redis clock)', async () => {
  const { readFileSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const dir = createRequire(import.meta.url)
    .resolve('velo-stream/redis')
    .replace(/index\.js$/, 'log/lua/');
  const script = (file) => readFileSync(`${dir}limiter-common.lua`, 'utf8') + '\n' + readFileSync(`${dir}${file}`, 'utf8');
  const name = fresh();
  const prefix = `velo:lim:{${name}}`;
  const [s] = await client.sendCommand(['TIME']);
  const past = Number(s) * 1000 - 1000;
  // Token 7 ran out a second ago (not yet swept); token 8 is someone's live permit.
  await client.zAdd(`${prefix}:h:`, [
    { score: past, value: '7' },
    { score: past + 60_000, value: '8' },
  ]);
  const reply = await client.sendCommand([
    'EVAL',
    script('limiter-renew.lua'),
    '1',
    prefix,
    'p1',
    '5000',
    '1',
    '0',
    '2',
    '',
    '',
    '',
    '',
    '7',
  ]);
  assert.deepEqual(reply[0], ['7'], 'reported lost');
  assert.deepEqual(await client.zRange(`${prefix}:h:`, 0, -1), ['8'], 'not revived; the live permit untouched');
  const freed = await client.sendCommand(['EVAL', script('limiter-release.lua'), '1', prefix, '', '7', '5000', '2', '', '', '']);
  assert.equal(freed, 0);
  assert.deepEqual(await client.zRange(`${prefix}:h:`, 0, -1), ['8']);
});

test('one renewal call per process per interval covers all its permits and tickets (counted on the client)', async () => {
  const name = fresh();
  const renewSha = await (async () => {
    const { readFileSync } = await import('node:fs');
    const { createRequire } = await import('node:module');
    const { createHash } = await import('node:crypto');
    const dir = createRequire(import.meta.url)
      .resolve('velo-stream/redis')
      .replace(/index\.js$/, 'log/lua/');
    const source = ['limiter-common.lua', 'limiter-renew.lua'].map((f) => readFileSync(`${dir}${f}`, 'utf8')).join('\n');
    return createHash('sha1').update(source).digest('hex');
  })();
  const calls = [];
  // The user's client, with every command it sends recorded.
  const spy = Object.create(client);
  spy.sendCommand = (args, options) => {
    calls.push(args.map(String));
    return client.sendCommand(args, options);
  };
  spy.duplicate = () => client.duplicate();
  const limiter = redisLimiter({ client: spy, name, concurrency: 10, leaseTtl: 600 });
  const permits = [];
  try {
    for (let i = 0; i < 10; i++) permits.push(await limiter.acquire(i));
    const before = calls.length;
    const waiter = limiter.acquire(0).catch((error) => error);
    // The waiter's one poll once its subscription is up (what was published before it), then only renewals.
    await eventually(() => calls.slice(before).filter((c) => c[0] === 'EVALSHA' && c[1] !== renewSha).length === 2, 'the poll');
    const start = calls.length;
    await eventually(() => calls.slice(start).filter((c) => c[1] === renewSha).length >= 3, 'three renewals');
    const renewals = calls.slice(start).filter((c) => c[1] === renewSha);
    // EVALSHA sha 1 prefix pid ttl n m c l p b ...pairs: every renewal names all 10 permits and the ticket.
    for (const r of renewals) assert.deepEqual([r[6], r[7]], ['10', '1']);
    for (const r of renewals) assert.equal(r.length, 12 + 2 * 11);
    assert.equal(
      calls.slice(start).filter((c) => c[0] === 'EVALSHA' && c[1] !== renewSha).length,
      0,
      'no other call while holding and waiting (no polling)',
    );
    for (const p of permits) p.release();
    (await waiter).release();
  } finally {
    await limiter.close();
  }
});

test("the fleet's limits decide, not the process': a process made rate-only holds a leased permit once setLimits adds a concurrency", async () => {
  const name = fresh();
  const rateOnly = redisLimiter({ client, name, rate: { limit: 1000, period: 1000 } });
  const admin = redisLimiter({ client, name, rate: { limit: 1000, period: 1000 } });
  try {
    await admin.setLimits({ concurrency: 1, rate: { limit: 1000, period: 1000 } });
    const permit = await rateOnly.acquire(0);
    assert.deepEqual(await client.zRange(`velo:lim:{${name}}:h:`, 0, -1), [permit.token], 'held as a lease');
    const probe = redisLimiter({ client, name, concurrency: 5, mode: 'reject' });
    await assert.rejects(probe.acquire(0), { code: 'ERR_VELO_RATE_LIMITED' });
    await probe.close();
    permit.release();
    assert.equal(await permit.released(), true);
    assert.equal(await client.zCard(`velo:lim:{${name}}:h:`), 0, 'given back, not left to its lease');
  } finally {
    await rateOnly.close();
    await admin.close();
  }
});

test('setLimits: permits granted while the fleet was rate-only count when a concurrency limit comes back (held from grant to release, as in-process)', async () => {
  const name = fresh();
  const rate = { limit: 1000, period: 1000 };
  const l = redisLimiter({ client, name, concurrency: 2 });
  try {
    await l.setLimits({ rate });
    const held = [await l.acquire(1), await l.acquire(2), await l.acquire(3)];
    assert.equal(l.stats().inUse, 3);
    assert.equal(await client.zCard(`velo:lim:{${name}}:h:`), 3, 'each a lease in Redis');
    await l.setLimits({ concurrency: 2, rate });
    const fourth = settledState(l.acquire(4));
    const probe = redisLimiter({ client, name, concurrency: 2, mode: 'reject' });
    await assert.rejects(probe.acquire(5), { code: 'ERR_VELO_RATE_LIMITED' }, 'three held, limit two: none free');
    await probe.close();
    held[0].release();
    assert.equal(await held[0].released(), true);
    assert.equal(fourth.done, false, 'two still held of a limit of two');
    assert.equal(await client.zCard(`velo:lim:{${name}}:q:`), 1, 'the 4th waits in line');
    assert.equal(await client.zCard(`velo:lim:{${name}}:h:`), 2);
    held[1].release();
    await eventually(() => fourth.done, 'the 4th is granted once one held is back');
    assert.equal(l.stats().inUse, 2);
    held[2].release();
    assert.equal(await held[2].released(), true);
  } finally {
    await l.close();
  }
});

test('an undo that reaches Redis before its acquire (the connection lost with it in flight) makes the acquire take nothing, granted at once or in line (the scripts alone)', async () => {
  const { readFileSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const dir = createRequire(import.meta.url)
    .resolve('velo-stream/redis')
    .replace(/index\.js$/, 'log/lua/');
  const script = (file) => readFileSync(`${dir}limiter-common.lua`, 'utf8') + '\n' + readFileSync(`${dir}${file}`, 'utf8');
  const name = fresh();
  const prefix = `velo:lim:{${name}}`;
  const limits = ['1', '', '', ''];
  const acquire = (token) =>
    client.sendCommand(['EVAL', script('limiter-acquire.lua'), '1', prefix, '', '', '1', 't', '60000', '10', ...limits, token]);
  const undo = (token) =>
    client.sendCommand(['EVAL', script('limiter-cancel.lua'), '1', prefix, '', '', token, '60000', '1', ...limits]);
  // Undone first: the acquire, run after, is refused and holds nothing.
  await undo('a-1');
  assert.equal((await acquire('a-1'))[0], 'c');
  assert.equal(await client.zCard(`${prefix}:h:`), 0);
  // A permit granted, then its undo: given back.
  assert.deepEqual((await acquire('a-2')).slice(0, 2), ['g', 'a-2']);
  await undo('a-2');
  assert.equal(await client.zCard(`${prefix}:h:`), 0);
  // In line (its ticket unknown to its process, whose reply was lost), then undone: skipped when its turn comes.
  assert.equal((await acquire('a-3'))[0], 'g');
  const [kind] = await acquire('a-4');
  assert.equal(kind, 'w');
  await undo('a-4');
  const freed = await client.sendCommand(['EVAL', script('limiter-release.lua'), '1', prefix, '', 'a-3', '60000', ...limits]);
  assert.equal(freed, 1);
  assert.deepEqual(
    [await client.zCard(`${prefix}:h:`), await client.zCard(`${prefix}:q:`)],
    [0, 0],
    'nothing granted to the undone ticket',
  );
});

test('tokens are never handed out twice, also after the limiter lost its keys: a stale release frees nothing', async () => {
  // The limiter's keys deleted while A holds its permit (a reset; a restart without persistence, or a failover to a
  // lagging replica, loses them the same way). B is then granted the only permit: A's late release must not free
  // it (a counter starting over gave B A's token), so a third process is refused while B holds.
  const name = fresh();
  const options = { client, name, concurrency: 1, leaseTtl: 30_000 };
  const [a, b, c] = [redisLimiter(options), redisLimiter(options), redisLimiter({ ...options, mode: 'reject' })];
  try {
    const held = await a.acquire(undefined);
    for (const key of await client.keys(`velo:lim:{${name}}:*`)) await client.del(key);
    const bHeld = await b.acquire(undefined);
    assert.notEqual(bHeld.token, held.token, 'a token is never handed out twice');
    held.release();
    assert.equal(await held.released(), false, "A's stale release freed nothing");
    assert.notEqual(await client.zScore(`velo:lim:{${name}}:h:`, bHeld.token), null, "B's permit is still held");
    await assert.rejects(c.acquire(undefined), { code: 'ERR_VELO_RATE_LIMITED' });
    bHeld.release();
    assert.equal(await bHeld.released(), true);
    (await c.acquire(undefined)).release();
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

test("acquire()'s options, setLimits() options, keys that are not well-formed Unicode, a revoked client: coded errors", async () => {
  const name = fresh();
  const l = redisLimiter({ client, name, concurrency: 1, key: (item) => item.k });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  try {
    for (const [i, [options, code]] of [
      ['x', 'ERR_INVALID_ARG_TYPE'],
      [{ signal: null }, 'ERR_INVALID_ARG_TYPE'],
      [{ signal: 'x' }, 'ERR_INVALID_ARG_TYPE'],
      [{ signal: {} }, 'ERR_INVALID_ARG_TYPE'],
      [revoked.proxy, 'ERR_INVALID_ARG_TYPE'],
      [{ signal: revoked.proxy }, 'ERR_INVALID_ARG_TYPE'],
      [{ sigal: 1 }, 'ERR_INVALID_ARG_VALUE'],
    ].entries()) {
      await assert.rejects(l.acquire({ k: 'a' }, options), { code }, `case ${i}`);
    }
    // Redis keeps keys as UTF-8: a lone surrogate would become U+FFFD and share another key's limit.
    for (const k of ['\uD800', 'a\uDC00b']) await assert.rejects(l.acquire({ k }), { code: 'ERR_VELO_LIMIT_KEY' });
    await assert.rejects(l.setLimits({ concurrency: 5, maxWaiting: 3 }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /unknown option "maxWaiting"/,
    });
    await assert.rejects(l.setLimits({ concurrency: 5, key: () => 'a' }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.equal(l.stats().inUse, 0);
    assert.throws(() => redisLimiter({ client: revoked.proxy, name, concurrency: 1 }), { code: 'ERR_INVALID_ARG_TYPE' });
  } finally {
    await l.close();
  }
});

test('bad options are answered as the in-process limiter answers them: an array, null, inherited limits (same code, same message shape)', async () => {
  const local = limiter({ concurrency: 1 });
  const fleet = redisLimiter({ client, name: fresh(), concurrency: 1 });
  try {
    const shape = /^The "(options|settings|rate)" argument must be an options object such as .*\. Received /;
    for (const bad of [[], null, 5]) {
      assert.throws(() => limiter(bad), { code: 'ERR_INVALID_ARG_TYPE', message: shape });
      assert.throws(() => redisLimiter(bad), { code: 'ERR_INVALID_ARG_TYPE', message: shape });
      assert.throws(() => local.setLimits(bad), { code: 'ERR_INVALID_ARG_TYPE', message: shape });
      await assert.rejects(fleet.setLimits(bad), { code: 'ERR_INVALID_ARG_TYPE', message: shape });
      assert.throws(() => limiter({ rate: bad }), { code: 'ERR_INVALID_ARG_TYPE', message: shape });
      assert.throws(() => redisLimiter({ client, name: 'x', rate: bad }), { code: 'ERR_INVALID_ARG_TYPE', message: shape });
    }
    // Inherited properties are read by both (options are read as properties, checked for unknown own keys).
    local.setLimits(Object.create({ concurrency: 2 }));
    await fleet.setLimits(Object.create({ concurrency: 2 }));
    assert.equal(await client.hGet(`velo:lim:{${fleet.name}}:cfg`, 'c'), '2');
    await redisLimiter(Object.create({ client, name: fresh(), concurrency: 1 })).close();
  } finally {
    await local.close();
    await fleet.close();
  }
});

test("a key's holders and line expire no earlier than their latest lease, so a key whose holders died and that no one uses again leaves nothing behind", async () => {
  const name = fresh();
  const leaseTtl = 5_000;
  const a = redisLimiter({ client, name, leaseTtl, concurrency: 1, key: (item) => item.tenant });
  const b = redisLimiter({ client, name, leaseTtl: 60_000, concurrency: 1, key: (item) => item.tenant });
  try {
    const permit = await a.acquire({ tenant: 't1' });
    const h = `velo:lim:{${name}}:h:t1`;
    const afterA = await client.pTTL(h);
    assert.ok(afterA > 0 && afterA <= leaseTtl, `h: expires with the lease (${afterA} ms)`);
    // A waiter of a process with a longer lease: the line's sets last as long as its ticket, the holders' as long as theirs.
    const waiting = b.acquire({ tenant: 't1' });
    for (let i = 0; i < 50 && (await client.exists(`velo:lim:{${name}}:q:t1`)) === 0; i++) await client.ping();
    const q = await client.pTTL(`velo:lim:{${name}}:q:t1`);
    const qx = await client.pTTL(`velo:lim:{${name}}:qx:t1`);
    assert.ok(q > leaseTtl && q <= 60_000 && qx > leaseTtl && qx <= 60_000, `the line expires with its ticket (${q}, ${qx})`);
    permit.release();
    const second = await waiting;
    // The key lasts at least as long as the latest lease it holds (Redis' clock). Its TTL is read before the
    // clock: time passing between the reads (a loaded machine) only widens the margin, never fails the check.
    const latest = Math.max(...(await client.zRangeWithScores(h, 0, -1)).map((e) => e.score));
    const afterB = await client.pTTL(h);
    const [seconds, micros] = await client.time().then((t) => (Array.isArray(t) ? t : [t.unix ?? t[0], t.microseconds ?? t[1]]));
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    assert.ok(
      afterB >= latest - now - 5 && afterB <= 60_000,
      `h: lasts as long as its latest lease (${afterB} ms, lease ${latest - now})`,
    );
    second.release();
    assert.equal(await second.released(), true);
  } finally {
    await a.close();
    await b.close();
  }
});

test("a waiter whose process died leaves nothing in the line's hashes once its line expired and a ticket is added (the scripts alone)", async () => {
  const { readFileSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const dir = createRequire(import.meta.url)
    .resolve('velo-stream/redis')
    .replace(/index\.js$/, 'log/lua/');
  const acquire = readFileSync(`${dir}limiter-common.lua`, 'utf8') + '\n' + readFileSync(`${dir}limiter-acquire.lua`, 'utf8');
  const prefix = `velo:lim:{${fresh()}}`;
  // ARGV: key, ticket, cost, mode, lease ttl, maxWaiting, concurrency, limit, period, burst, token.
  const call = (key, ttl, token) =>
    client.sendCommand(['EVAL', acquire, '1', prefix, key, '', '1', 't', String(ttl), '100', '1', '', '', '', token]);
  assert.equal((await call('dead', 300, 'd1'))[0], 'g');
  const [waiting, deadTicket] = await call('dead', 300, 'd2');
  assert.equal(waiting, 'w');
  assert.ok(await client.hGet(`${prefix}:qc`, deadTicket), 'in line');
  // Nobody renews: the holder's permit and the line expire by Redis' clock.
  await eventually(async () => (await client.exists(`${prefix}:q:dead`)) === 0, 'the line expired');
  assert.ok(await client.hGet(`${prefix}:qc`, deadTicket), 'its cost is still kept');
  assert.equal((await call('live', 60_000, 'l1'))[0], 'g');
  const [, liveTicket] = await call('live', 60_000, 'l2');
  assert.deepEqual(Object.keys(await client.hGetAll(`${prefix}:qc`)), [liveTicket], "the dead ticket's cost is gone");
  assert.deepEqual(await client.hGetAll(`${prefix}:qk`), { [liveTicket]: 'live' });
});

test("a waiter's wake-up that comes before its acquire's answer is not lost: granted at once, not at the next renewal", async () => {
  const name = fresh();
  // Process A's answers come late (a busy connection or event loop); its subscriber's messages do not.
  let delay = 0;
  const late = new Proxy(client, {
    get(target, property) {
      if (property === 'sendCommand')
        return (...args) =>
          target.sendCommand(...args).then(async (reply) => {
            if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
            return reply;
          });
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const a = redisLimiter({ client: late, name, concurrency: 1, leaseTtl: 60_000 });
  const b = redisLimiter({ client, name, concurrency: 1, leaseTtl: 60_000 });
  const line = () => client.zCard(`velo:lim:{${name}}:q:`);
  try {
    // A waits once, so that its subscription is up.
    let held = await b.acquire(0);
    const first = a.acquire(0);
    await eventually(async () => (await line()) === 1, 'A in line');
    held.release();
    (await first).release();
    held = await b.acquire(0);
    // A's next acquire takes its ticket at once; its answer comes 300 ms later. Meanwhile B's release grants the
    // ticket and publishes it: the message reaches A before A knows its ticket.
    delay = 300;
    const started = Date.now();
    const second = a.acquire(0);
    await eventually(async () => (await line()) === 1, 'A in line again');
    held.release();
    const permit = await second;
    const waited = Date.now() - started;
    delay = 0;
    permit.release();
    // Without the message, A waits for its renewal: a third of the lease, 20 s.
    assert.ok(waited < 5_000, `granted after ${waited} ms`);
  } finally {
    delay = 0;
    await a.close();
    await b.close();
  }
});
