// Tracing through Redis (docs/tracing.md, "Redis"): a producer writes the span context active at send() into the
// entry (traceparent); the worker's session span links to the producer spans of its events, each event has a
// span of its own (a child of the session's, linked to its producer), and the handler's spans are children of
// the event it is at; output entries carry the session span's traceparent, which a redisOutputs reader
// continues. The worker runs in a child process with its own provider, printing its spans (helpers/
// redis-trace-child.mjs); this process is the producer and the reader, with an in-memory exporter.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { context, trace, ROOT_CONTEXT } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { outputTraceContext, redisOutputs, redisProducer } from 'velo-stream/redis';
import { start, run } from './helpers/child.mjs';
import { client, fresh, killChild, lastStats, redis, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

const exporter = new InMemorySpanExporter();
const tracer = () => trace.getTracer('test');
before(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
});
after(() => {
  trace.disable();
  context.disable();
});
beforeEach(() => exporter.reset());

const CHILD = fileURLToPath(new URL('./helpers/redis-trace-child.mjs', import.meta.url));

/** A traced worker process of `name` (one partition). */
function tracedWorker(name, { ttl = 1500, idle = 300, env } = {}) {
  return start([CHILD, redis.url, name, ttl, idle].map(String), { timeout: 120_000, env: env ?? process.env });
}

/** The spans a traced worker child printed so far. */
function childSpans(child) {
  return child.stdout
    .split('\n')
    .filter((l) => l.startsWith('span '))
    .map((l) => JSON.parse(l.slice(5)));
}

/** Runs `fn` in an active span `name`; resolves with that span's context once it ended. */
async function inSpan(name, fn) {
  return tracer().startActiveSpan(name, async (span) => {
    try {
      await fn();
    } finally {
      span.end();
    }
    return span.spanContext();
  });
}

const traceparentOf = (c) => `00-${c.traceId}-${c.spanId}-${c.traceFlags.toString(16).padStart(2, '0')}`;
const linksTo = (span, c) => span.links.some((l) => l.traceId === c.traceId && l.spanId === c.spanId);

/** The input entries of partition 0 of `name`, as { id, fields: { name: value } }. */
async function inputEntries(name) {
  const raw = await client.sendCommand(['XRANGE', `velo:{${name}:p0}`, '-', '+']);
  return raw.map(([id, list]) => ({ id, fields: Object.fromEntries(list.flatMap((v, i) => (i % 2 === 0 ? [[v, list[i + 1]]] : []))) }));
}
async function outputEntries(name) {
  const raw = await client.sendCommand(['XRANGE', `velo:{${name}:p0}:out`, '-', '+']);
  return raw.map(([id, list]) => ({ id, fields: Object.fromEntries(list.flatMap((v, i) => (i % 2 === 0 ? [[v, list[i + 1]]] : []))) }));
}

test('producer span -> entry traceparent -> the session span links to it; each event has a span linked to its producer, the parent of the handler spans; outputs carry the session span, continued by a redisOutputs reader', async () => {
  const name = fresh('traced');
  const producer = redisProducer({ client, name, partitions: 1 });
  const w = tracedWorker(name);
  try {
    const p1 = await inSpan('produce 1', () => producer.send('K', { n: 1 }));
    const p2 = await inSpan('produce 2', () => producer.sendMany([['K', { n: 2 }]]));
    const entries = await inputEntries(name);
    assert.deepEqual(
      entries.map((e) => e.fields.t),
      [traceparentOf(p1), traceparentOf(p2)],
      'each entry holds the traceparent of the span active at its send',
    );
    // The session ends at its idle timeout: its span is printed then.
    await eventually(() => childSpans(w).some((s) => s.name === 'velo traced'), 'the session span ended');
    const spans = childSpans(w);
    const [session] = spans.filter((s) => s.name === 'velo traced');
    assert.equal(session.parent, undefined, 'the session span is a root span');
    assert.ok(linksTo(session, p1) && linksTo(session, p2), 'the session span links to both producer spans');
    assert.equal(session.links.length, 2);
    assert.equal(session.attributes['velo.resumed'], false);
    assert.equal(session.attributes['velo.partition'], 0);
    const events = spans.filter((s) => s.name === 'velo event');
    assert.equal(events.length, 2);
    for (const [i, p] of [p1, p2].entries()) {
      const event = events.find((s) => s.attributes['velo.entry_id'] === entries[i].id);
      assert.ok(event, `a span for entry ${i + 1}`);
      assert.equal(event.parent, session.spanId, "an event's span is a child of the session's");
      assert.equal(event.traceId, session.traceId);
      assert.deepEqual(event.links, [{ traceId: p.traceId, spanId: p.spanId }], "an event's span links to its producer span");
      assert.equal(event.attributes['velo.replay'], undefined);
      for (const handler of [`handle ${i + 1}`, `after ${i + 1}`]) {
        const h = spans.find((s) => s.name === handler);
        assert.ok(h, handler);
        assert.equal(h.parent, event.spanId, `${handler} is a child of its event's span`);
        assert.equal(h.traceId, session.traceId);
      }
    }
    // The outputs carry the session span's context; a reader continues the trace from it.
    const out = await outputEntries(name);
    assert.equal(out.length, 2);
    for (const o of out) assert.equal(o.fields.t, traceparentOf({ ...session, traceFlags: 1 }));
    const ac = new AbortController();
    const items = [];
    for await (const item of redisOutputs({ client, name, partitions: 1, signal: ac.signal })) {
      items.push(item);
      tracer().startSpan(`read ${item.value}`, {}, outputTraceContext(item)).end();
      if (items.length === 2) break;
    }
    assert.deepEqual(
      items.map((i) => [i.value, i.traceparent]),
      [1, 2].map((n) => [n, out[0].fields.t]),
    );
    for (const n of [1, 2]) {
      const [read] = exporter.getFinishedSpans().filter((s) => s.name === `read ${n}`);
      assert.equal(read.parentSpanContext?.spanId, session.spanId, "the reader's span is a child of the session span");
      assert.equal(read.spanContext().traceId, session.traceId);
    }
    await stopChild(w);
  } finally {
    w.child.kill('SIGKILL');
  }
});
