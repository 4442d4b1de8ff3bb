// A per-request stream keyed and costed by its opener: `fn.open({ key, cost })` (and `run(events, { key, cost })`)
// hands both to the function's limiters in the admission item, at open() and while the stream waits; a pipe's stages
// get them too; sessions keep their own `{ id, key }`; hostile values are refused at the call, before anything is
// opened or taken. And tryAcquire's refusals are counted (stats().rejected, velo_limiter_rejected_total), while the
// try-first paths of task stages and stream admission are not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { limiter, streamFn, task } from 'velo-stream';
import { registerLimiterMetrics } from 'velo-stream/prometheus';
import { collect, settle } from './helpers/util.mjs';

const echo = async function* (events) {
  for await (const e of events) yield e;
};

test("open({ key, cost }): a tenant's tokens per minute, as an LLM gateway limits its per-request streams", async () => {
  const seen = [];
  const tokens = limiter({
    name: 'tokens',
    rate: { limit: 1000, period: 60_000 },
    key: (item) => {
      seen.push(item);
      return item.key;
    },
    cost: ({ cost = 1 }) => cost,
    mode: 'reject',
  });
  const chat = streamFn(echo, { limiter: tokens });
  const a = chat.open({ key: 'tenant-a', cost: 800 });
  assert.deepEqual(seen, [{ id: '', key: 'tenant-a', cost: 800 }]);
  // Tenant a has 200 tokens left this minute: 300 more are refused, with the wait its rate tells.
  assert.throws(
    () => chat.open({ key: 'tenant-a', cost: 300 }),
    (e) => e.code === 'ERR_VELO_RATE_LIMITED' && e.status === 429 && e.retryAfter > 5000 && e.retryAfter <= 6000,
  );
  const a2 = chat.open({ key: 'tenant-a', cost: 200 });
  // Tenant b has a minute of its own.
  const b = chat.open({ key: 'tenant-b', cost: 1000 });
  // A request larger than the burst could never be served: 413.
  assert.throws(
    () => chat.open({ key: 'tenant-c', cost: 1001 }),
    (e) => e.code === 'ERR_VELO_LIMIT_COST' && e.status === 413,
  );
  assert.equal(tokens.stats().inUse, 3);
  await Promise.all([a, a2, b].map((s) => s.end()));
  await settle();
  assert.equal(tokens.stats().inUse, 0);
  // run() takes them too.
  assert.deepEqual(await chat.run([1, 2], { key: 'tenant-d', cost: 5 }), [1, 2]);
  assert.deepEqual(seen.at(-1), { id: '', key: 'tenant-d', cost: 5 });
  await assert.rejects(chat.run([1], { key: 'tenant-d', cost: 999 }), { code: 'ERR_VELO_RATE_LIMITED', status: 429 });
  await tokens.close();
});

test("a throttling limiter gets the key and cost at open() and again while the stream waits (with its id); a pipe's stages get them", async () => {
  const items = [];
  const one = limiter({
    concurrency: 1,
    key: (item) => {
      items.push(item);
      return item.key;
    },
    cost: ({ cost = 1 }) => cost,
  });
  const fn = streamFn(echo, { limiter: one });
  const first = fn.open({ key: 't', cost: 3 });
  const second = fn.open({ key: 't', cost: 4 });
  const reading = collect(second);
  await second.send('x');
  await second.end();
  await settle();
  // Asked at open() for both; the second waited, and asked again with its stream's id.
  assert.deepEqual(items.slice(0, 2), [
    { id: '', key: 't', cost: 3 },
    { id: '', key: 't', cost: 4 },
  ]);
  assert.deepEqual(items[2], { id: second.id, key: 't', cost: 4 });
  await first.end();
  assert.deepEqual(await reading, ['x']);

  // A pipe: each stage's limiters get the opener's key and cost.
  const stageItems = [];
  const l2 = limiter({
    concurrency: 5,
    key: (item) => {
      stageItems.push(item);
      return item.key;
    },
  });
  const staged = streamFn(echo, { limiter: l2 });
  const piped = staged.pipe(staged);
  assert.deepEqual(await piped.run([7], { key: 'p', cost: 2 }), [7]);
  assert.equal(stageItems.length, 2);
  for (const item of stageItems) assert.deepEqual({ key: item.key, cost: item.cost }, { key: 'p', cost: 2 });
});

test('sessions keep their own admission item ({ id, key }, no cost); open() without options gives { id } alone', async () => {
  const items = [];
  const l = limiter({
    concurrency: 10,
    key: (item) => {
      items.push(item);
      return String(item.key ?? 'none');
    },
  });
  const fn = streamFn(echo, { limiter: l });
  const s = fn.open();
  await s.end();
  const sessions = fn.sessions({ idleTimeout: 0 });
  await sessions.send('k', 1);
  for await (const out of sessions) {
    assert.equal(out.value, 1);
    break;
  }
  await sessions.close();
  assert.deepEqual(items[0], { id: '' });
  assert.deepEqual(items[1], { id: '', key: 'k' });
});

test('hostile key and cost are refused at the call with a stable code, before anything is opened or taken', async () => {
  const l = limiter({ concurrency: 1, key: ({ key }) => key, cost: ({ cost = 1 }) => cost, rate: { limit: 100, period: 1000 } });
  const fn = streamFn(echo, { limiter: l });
  const cases = [
    [{ key: 42 }, 'ERR_INVALID_ARG_TYPE', /"key" option must be a non-empty string/],
    [{ key: { tenant: 'a' } }, 'ERR_INVALID_ARG_TYPE', /"key"/],
    [{ key: null }, 'ERR_INVALID_ARG_TYPE', /"key"/],
    [{ key: '' }, 'ERR_INVALID_ARG_VALUE', /"key"/],
    [{ cost: -1 }, 'ERR_OUT_OF_RANGE', /"cost" option must be an integer from 0 to 4294967295/],
    [{ cost: NaN }, 'ERR_OUT_OF_RANGE', /"cost"/],
    [{ cost: Infinity }, 'ERR_OUT_OF_RANGE', /"cost"/],
    [{ cost: 1.5 }, 'ERR_OUT_OF_RANGE', /"cost"/],
    [{ cost: '4' }, 'ERR_OUT_OF_RANGE', /"cost"/],
    [{ cost: 2 ** 32 }, 'ERR_OUT_OF_RANGE', /"cost"/],
    [{ tenant: 'a' }, 'ERR_INVALID_ARG_VALUE', /Known options: signal, label, key, cost/],
  ];
  for (const [opts, code, message] of cases) {
    assert.throws(
      () => fn.open(opts),
      (e) => e.code === code && message.test(e.message),
      JSON.stringify(opts),
    );
    await assert.rejects(fn.run([1], opts), (e) => e.code === code, `run ${JSON.stringify(opts)}`);
  }
  assert.equal(fn.stats().opened, 0);
  assert.equal(l.stats().admitted, 0);
  assert.equal(l.stats().rejected, 0);
});

test('tryAcquire refusals count in stats().rejected and velo_limiter_rejected_total; the try-first paths of stages and admission do not', async () => {
  // Keyed, so that a task stage asks it per call (tryAcquire first, then acquire), as a stream's admission does.
  const l = limiter({ name: 'try', concurrency: 1, key: () => 'one' });
  const registry = new Registry();
  registerLimiterMetrics(registry, [l]);
  const held = l.tryAcquire();
  assert.ok(held);
  assert.equal(l.tryAcquire(), undefined);
  assert.equal(l.tryAcquire(), undefined);
  assert.equal(l.stats().rejected, 2);
  assert.match(await registry.metrics(), /^velo_limiter_rejected_total\{limiter="try"\} 2$/m);

  // A task call and a stream that find no permit free wait for one: granted later, not refused.
  const stage = task(async (x) => x, { limiter: l, concurrency: 2 });
  const calls = stage.run([1, 2]);
  const fn = streamFn(echo, { limiter: l });
  const stream = fn.open();
  const outputs = collect(stream);
  await stream.send('s');
  await stream.end();
  await settle();
  assert.equal(l.stats().waiting, 3);
  held.release();
  assert.deepEqual(await calls, [1, 2]);
  assert.deepEqual(await outputs, ['s']);
  assert.equal(l.stats().rejected, 2);
  // A closed limiter refuses every acquire; its tryAcquire() refusals are not counted (nor are its acquires').
  await l.close();
  assert.equal(l.tryAcquire(), undefined);
  assert.equal(l.stats().rejected, 2);
});
