// A limiter's figures where operators see them: the Prometheus exporter (registerLimiterMetrics) and, when the
// application traces, the time a task call waited for its permit on the call's span.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { limiter, task } from 'velo-stream';
import { registerLimiterMetrics } from 'velo-stream/prometheus';

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
