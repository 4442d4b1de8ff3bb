// A limiter's figures where operators see them: the Prometheus exporter (registerLimiterMetrics) and, when the
// application traces, the time a task call waited for its permit on the call's span.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { limiter, streamFn, task } from 'velo-stream';
import { registerLimiterMetrics } from 'velo-stream/prometheus';
import { settle } from './helpers/util.mjs';

/** The value of one sample line of a scrape. */
function sample(text, line) {
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  assert.ok(found, `no sample ${line} in\n${text}`);
  return Number(found.slice(line.length + 1));
}

test('registerLimiterMetrics exports permits in use, waiters, admitted, rejected and the wait histogram', async () => {
  const registry = new Registry();
  const l = limiter({ concurrency: 1, maxWaiting: 1, name: 'api' });
  registerLimiterMetrics(registry, [l]);
  const held = await l.acquire();
  const waiter = l.acquire();
  await assert.rejects(l.acquire(), { code: 'ERR_VELO_LIMIT_QUEUE_FULL' });
  let text = await registry.metrics();
  assert.equal(sample(text, 'velo_limiter_in_use{limiter="api"}'), 1);
  assert.equal(sample(text, 'velo_limiter_waiting{limiter="api"}'), 1);
  assert.equal(sample(text, 'velo_limiter_admitted_total{limiter="api"}'), 1);
  assert.equal(sample(text, 'velo_limiter_rejected_total{limiter="api"}'), 1);
  held.release();
  (await waiter).release();
  text = await registry.metrics();
  assert.equal(sample(text, 'velo_limiter_in_use{limiter="api"}'), 0);
  assert.equal(sample(text, 'velo_limiter_wait_seconds_count{limiter="api"}'), 2);
  assert.equal(sample(text, 'velo_limiter_wait_seconds_bucket{limiter="api",le="+Inf"}'), 2);
  assert.throws(() => registerLimiterMetrics(new Registry(), [l, limiter({ concurrency: 1, name: 'api' })]), {
    code: 'ERR_INVALID_ARG_VALUE',
  });
  assert.throws(() => registerLimiterMetrics(new Registry(), [{}]), { code: 'ERR_INVALID_ARG_TYPE' });
  // A name with a lone surrogate would be U+FFFD on the wire, the label of other names too.
  assert.throws(() => registerLimiterMetrics(new Registry(), [l, limiter({ concurrency: 1, name: 'api\uD800' })]), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /^The limiter name "api\\ud800" has a lone surrogate/,
  });
});

test('a grant given back unused stays in admitted_total (a counter never goes down) and counts in refunded_total', async () => {
  // A stream granted by `rate` waits for `gate`, then is cancelled: its rate unit comes back between two scrapes.
  const registry = new Registry();
  const rate = limiter({ rate: { limit: 2, period: 60_000 }, name: 'rate' });
  const gate = limiter({ concurrency: 1, name: 'gate' });
  registerLimiterMetrics(registry, [rate, gate]);
  const held = await gate.acquire();
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { limiter: [rate, gate] },
  );
  const s = fn.open();
  await settle();
  assert.equal(gate.stats().waiting, 1);
  const before = await registry.metrics();
  assert.equal(sample(before, 'velo_limiter_admitted_total{limiter="rate"}'), 1);
  assert.equal(sample(before, 'velo_limiter_refunded_total{limiter="rate"}'), 0);
  await s.cancel();
  await settle();
  const after = await registry.metrics();
  assert.equal(sample(after, 'velo_limiter_admitted_total{limiter="rate"}'), 1);
  assert.equal(sample(after, 'velo_limiter_refunded_total{limiter="rate"}'), 1);
  assert.equal(sample(after, 'velo_limiter_in_use{limiter="rate"}'), 0);
  // Its unit came back: both of the rate's units are there.
  const [a, b] = [rate.tryAcquire(), rate.tryAcquire()];
  assert.ok(a !== undefined && b !== undefined);
  held.release();
});

test("a scrape reads each limiter's stats() once; the next scrape reads afresh; a counter of another make that is not a count is left out", async () => {
  const registry = new Registry();
  const l = limiter({ concurrency: 2, name: 'once' });
  let reads = 0;
  const stats = l.stats.bind(l);
  l.stats = () => (reads++, stats());
  let figures = { name: 'odd', inUse: 1, waiting: 0, admitted: -3, refunded: NaN, rejected: Infinity, waitedMs: { p50: 0, p99: 0 }, keys: 0 };
  const odd = { name: 'odd', stats: () => figures };
  registerLimiterMetrics(registry, () => [l, odd]);
  let text = await registry.metrics();
  assert.equal(reads, 1);
  assert.equal(sample(text, 'velo_limiter_in_use{limiter="once"}'), 0);
  assert.equal(sample(text, 'velo_limiter_in_use{limiter="odd"}'), 1);
  for (const counter of ['admitted', 'refunded', 'rejected'])
    assert.ok(!text.includes(`velo_limiter_${counter}_total{limiter="odd"}`), counter);
  // Without a turn of the event loop between them, the next scrape still reads what is now.
  const held = await l.acquire();
  figures = { ...figures, admitted: 4 };
  text = await registry.metrics();
  assert.equal(reads, 2);
  assert.equal(sample(text, 'velo_limiter_in_use{limiter="once"}'), 1);
  assert.equal(sample(text, 'velo_limiter_admitted_total{limiter="once"}'), 1);
  assert.equal(sample(text, 'velo_limiter_admitted_total{limiter="odd"}'), 4);
  // A fraction is not a count either; a whole number past 2^53 still is one.
  figures = { ...figures, admitted: 1.5, refunded: 2 ** 60 };
  text = await registry.metrics();
  assert.ok(!text.includes('velo_limiter_admitted_total{limiter="odd"}'), text);
  assert.equal(sample(text, 'velo_limiter_refunded_total{limiter="odd"}'), 2 ** 60);
  held.release();
});

test('traced: a task call that waited for its permit records the wait on its span', async () => {
  const exporter = new InMemorySpanExporter();
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  try {
    const l = limiter({ concurrency: 1, name: 'traced' });
    const stage = task(async (x) => x, { concurrency: 4, limiter: l });
    assert.deepEqual(await stage.run([1, 2, 3]), [1, 2, 3]);
    const calls = exporter.getFinishedSpans().filter((s) => s.name === 'velo task call');
    assert.equal(calls.length, 3);
    const waited = calls.filter((s) => s.events.some((e) => e.name === 'velo.limiter.granted'));
    // The first call got its permit at once; the two others waited for it.
    assert.equal(waited.length, 2);
    for (const s of waited) {
      assert.equal(typeof s.attributes['velo.limiter.wait_ms'], 'number');
      assert.equal(s.events.find((e) => e.name === 'velo.limiter.granted').attributes['velo.limiter.names'], 'traced');
    }
  } finally {
    trace.disable();
    context.disable();
  }
});

test('per-key waits: waitingKeys() lists the keys waiting longest with their waiters and holds; stats().oldestWaitMs and its gauge', async () => {
  let now = 0;
  const l = limiter({ concurrency: 1, key: (item) => item.k, name: 'keyed', clock: () => now });
  const registry = new Registry();
  registerLimiterMetrics(registry, [l]);
  assert.deepEqual(l.waitingKeys(), []);
  assert.equal(l.stats().oldestWaitMs, 0);
  const a = await l.acquire({ k: 'a' });
  const b = await l.acquire({ k: 'b' });
  await l.acquire({ k: 'c' });
  const waits = [];
  waits.push(l.acquire({ k: 'a' }));
  now = 5;
  waits.push(l.acquire({ k: 'b' }));
  now = 10;
  waits.push(l.acquire({ k: 'a' }));
  now = 20;
  assert.deepEqual(l.waitingKeys(), [
    { key: 'a', waiting: 2, held: 1, oldestWaitMs: 20 },
    { key: 'b', waiting: 1, held: 1, oldestWaitMs: 15 },
  ]);
  assert.deepEqual(
    l.waitingKeys(1).map((k) => k.key),
    ['a'],
  );
  assert.equal(l.stats().oldestWaitMs, 20);
  assert.equal(sample(await registry.metrics(), 'velo_limiter_oldest_wait_seconds{limiter="keyed"}'), 0.02);
  // a's first waiter granted: its line's longest wait is now its second's.
  a.release();
  const second = await waits[0];
  assert.deepEqual(l.waitingKeys(), [
    { key: 'b', waiting: 1, held: 1, oldestWaitMs: 15 },
    { key: 'a', waiting: 1, held: 1, oldestWaitMs: 10 },
  ]);
  second.release();
  b.release();
  await Promise.all(waits.slice(1)).then((permits) => permits.forEach((p) => p.release()));
  assert.deepEqual(l.waitingKeys(), []);
  assert.equal(sample(await registry.metrics(), 'velo_limiter_oldest_wait_seconds{limiter="keyed"}'), 0);
  for (const bad of [0, 1.5, 1001, NaN, '3']) assert.throws(() => l.waitingKeys(bad), { code: 'ERR_OUT_OF_RANGE' });
  await l.close();
});

test('a limiter whose stats() throws is left out of the scrape; the others are exported', async () => {
  const registry = new Registry();
  const good = limiter({ concurrency: 1, name: 'good' });
  const broken = {
    name: 'broken',
    acquire: async () => ({ release() {} }),
    tryAcquire: () => undefined,
    stats: () => {
      throw new Error('stats broke');
    },
  };
  registerLimiterMetrics(registry, [good, broken]);
  const text = await registry.metrics();
  assert.equal(sample(text, 'velo_limiter_in_use{limiter="good"}'), 0);
  assert.ok(!text.includes('limiter="broken"'), 'no sample of the broken limiter');
  await good.close();
});
