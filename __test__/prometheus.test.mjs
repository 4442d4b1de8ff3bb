// velo-stream/prometheus: metrics scraped from a real /metrics endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { streamFn } from 'velo-stream';
import { registerStreamMetrics } from 'velo-stream/prometheus';
import { listen } from './helpers/server.mjs';

test('stream metrics are served on /metrics, labelled by function name', async () => {
  const echo = streamFn(async function* echoFn(events) {
    for await (const e of events) yield e;
  });
  const bad = streamFn(async function* badFn() {
    throw new Error('x');
  });
  const registry = new Registry();
  registerStreamMetrics(registry, [echo, bad]);
  await echo.run([1, 2, 3]);
  await echo.run([4]);
  await assert.rejects(bad.run([1]));
  const open = echo.open();
  const srv = await listen(async (_req, res) => {
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  try {
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const value = (line) => Number(text.split('\n').find((l) => l.startsWith(line))?.split(' ').at(-1));
    assert.equal(value('velo_streams_open{fn="echoFn"}'), 1);
    assert.equal(value('velo_streams_opened_total{fn="echoFn"}'), 3);
    assert.equal(value('velo_streams_completed_total{fn="echoFn"}'), 2);
    assert.equal(value('velo_streams_failed_total{fn="badFn"}'), 1);
    assert.equal(value('velo_events_in_total{fn="echoFn"}'), 4);
    assert.equal(value('velo_events_out_total{fn="echoFn"}'), 4);
    assert.equal(value('velo_queue_wait_seconds_count{fn="echoFn"}'), 4);
    assert.equal(value('velo_queue_wait_seconds_bucket{fn="echoFn",le="+Inf"}'), 4);
    assert.match(text, /# TYPE velo_queue_wait_seconds histogram/);
    assert.match(text, /velo_queue_wait_seconds_bucket\{fn="echoFn",le="0.001"\} \d+/);
  } finally {
    await srv.close();
    await open.cancel();
  }
});

test('a bad registry argument is a TypeError', () => {
  assert.throws(() => registerStreamMetrics({}, []), (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE');
});
