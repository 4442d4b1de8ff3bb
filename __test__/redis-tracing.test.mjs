// Tracing through Redis (docs/tracing.md, "Redis"): a producer writes the span context active at send() into the
// entry (traceparent); the worker's session span links to the producer spans of its events, each event has a
// span of its own (a child of the session's, linked to its producer), and the handler's spans are children of
// the event it is at; output entries carry the session span's traceparent, which a redisOutputs reader
// continues. The worker runs in a child process with its own provider, printing its spans (helpers/
// redis-trace-child.mjs); this process is the producer and the reader, with an in-memory exporter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { context, createTraceState, trace, ROOT_CONTEXT } from '@opentelemetry/api';
import { outputTraceContext, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from 'velo-stream';
import { start, run } from './helpers/child.mjs';
import { client, fresh, killChild, lastStats, redis, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';
import { useTracing } from './helpers/tracing.mjs';

useRedis();

const exporter = useTracing();
const tracer = () => trace.getTracer('test');

const CHILD = fileURLToPath(new URL('./helpers/redis-trace-child.mjs', import.meta.url));

/**
 * A traced worker process of `name` (one partition). Its sessions never idle out during a test (however slowly a
 * loaded machine writes the entries): the test ends them with a hand-off (stopChild), which ends their spans.
 */
function tracedWorker(name, { ttl = 1500, idle = 600_000, env } = {}) {
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
  return raw.map(([id, list]) => ({
    id,
    fields: Object.fromEntries(list.flatMap((v, i) => (i % 2 === 0 ? [[v, list[i + 1]]] : []))),
  }));
}
async function outputEntries(name) {
  const raw = await client.sendCommand(['XRANGE', `velo:{${name}:p0}:out`, '-', '+']);
  return raw.map(([id, list]) => ({
    id,
    fields: Object.fromEntries(list.flatMap((v, i) => (i % 2 === 0 ? [[v, list[i + 1]]] : []))),
  }));
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
    await eventually(() => childSpans(w).some((s) => s.name === 'after 2'), 'both events handled');
    await eventually(async () => (await outputEntries(name)).length === 2, 'both outputs written');
    // The hand-off ends the session, and its span.
    await stopChild(w);
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
  } finally {
    w.child.kill('SIGKILL');
  }
});

test('after a kill -9 of the worker mid-session, the new owner replays the events marked velo.replay, still linked to their original producer spans, in a session span marked resumed', async () => {
  const name = fresh('replayed');
  const producer = redisProducer({ client, name, partitions: 1 });
  // A long idle timeout: the session is live when its owner dies, so the next owner replays its events.
  const a = tracedWorker(name);
  let b;
  try {
    await eventually(() => lastStats(a)?.owned.length === 1, 'the first worker owns the partition');
    const p1 = await inSpan('produce 1', () => producer.send('K', { n: 1 }));
    const p2 = await inSpan('produce 2', () => producer.send('K', { n: 2 }));
    await eventually(
      () => childSpans(a).filter((s) => s.name === 'after 2').length === 1,
      'the first worker handled both events',
    );
    await eventually(async () => (await outputEntries(name)).length === 2, 'both outputs written');
    const first = childSpans(a).find((s) => s.name === 'velo event');
    assert.equal(first.attributes['velo.replay'], undefined, 'live events are not marked');
    await killChild(a);
    assert.equal(await pendingCount(client, name, 1), 2, 'the live session left its events pending');

    b = tracedWorker(name);
    await eventually(
      () => childSpans(b).filter((s) => s.name === 'after 2').length === 1,
      'the next owner replayed both events',
      60_000,
    );
    const p3 = await inSpan('produce 3', () => producer.send('K', { n: 3 }));
    await eventually(() => childSpans(b).filter((s) => s.name === 'after 3').length === 1, 'the next owner handled a new event');
    await eventually(async () => (await outputEntries(name)).length === 3, 'the third output written');
    await stopChild(b);
    const spans = childSpans(b);
    const [session] = spans.filter((s) => s.name === 'velo traced');
    assert.ok(session, 'the session span ended at the hand-off');
    assert.equal(session.attributes['velo.resumed'], true, 'the session span says it was resumed');
    assert.equal(session.attributes['velo.restored'], false);
    for (const p of [p1, p2, p3]) assert.ok(linksTo(session, p), 'the resumed session links to every producer span');
    const events = spans.filter((s) => s.name === 'velo event');
    assert.equal(events.length, 3);
    for (const [i, p] of [p1, p2, p3].entries()) {
      const event = events[i];
      assert.deepEqual(
        event.links,
        [{ traceId: p.traceId, spanId: p.spanId }],
        `event ${i + 1} links to its original producer span`,
      );
      assert.equal(event.attributes['velo.replay'], i < 2 ? true : undefined, `event ${i + 1}: replayed ${i < 2}`);
      assert.equal(spans.find((s) => s.name === `handle ${i + 1}`).parent, event.spanId);
    }
    // The replayed outputs were written before (by the first owner's session span); the new one by the resumed session.
    const out = await outputEntries(name);
    const [firstSession] = childSpans(a)
      .filter((s) => s.name === 'velo event')
      .map((s) => s.parent);
    assert.deepEqual(
      out.map((o) => o.fields.t.split('-')[2]),
      [firstSession, firstSession, session.spanId],
    );
  } finally {
    a.child.kill('SIGKILL');
    b?.child.kill('SIGKILL');
  }
});

test('a hostile traceparent or tracestate (garbage, 10 KB, another version, zero ids) is ignored: the events are handled, without error and without links', async () => {
  const name = fresh('hostile');
  const input = `velo:{${name}:p0}`;
  const bad = [
    'garbage',
    'x'.repeat(10_000),
    `ff-${'1'.repeat(32)}-${'2'.repeat(16)}-01`,
    `01-${'1'.repeat(32)}-${'2'.repeat(16)}-01`,
    `00-${'0'.repeat(32)}-${'2'.repeat(16)}-01`,
    `00-${'1'.repeat(32)}-${'0'.repeat(16)}-01`,
    `00-${'A'.repeat(32)}-${'2'.repeat(16)}-01`,
    `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01-extra`,
    `00-${'1'.repeat(31)}\u00e9-${'2'.repeat(16)}-01`,
  ];
  for (const [n, t] of bad.entries())
    await client.sendCommand(['XADD', input, '*', 'k', 'K', 'v', JSON.stringify({ n }), 't', t]);
  // A valid traceparent with a hostile tracestate: the link stays, the state is dropped.
  const good = `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`;
  await client.sendCommand([
    'XADD',
    input,
    '*',
    'k',
    'K',
    'v',
    JSON.stringify({ n: bad.length }),
    't',
    good,
    's',
    'y'.repeat(10_000),
  ]);
  const w = tracedWorker(name);
  try {
    await eventually(() => childSpans(w).filter((s) => s.name === 'velo event').length === bad.length + 1, 'every event handled');
    await eventually(async () => (await outputEntries(name)).length === bad.length + 1, 'every output written');
    await stopChild(w);
    const spans = childSpans(w);
    const events = spans.filter((s) => s.name === 'velo event');
    assert.equal(events.length, bad.length + 1, 'every event handled');
    for (const e of events.slice(0, bad.length)) assert.deepEqual(e.links, []);
    assert.deepEqual(events.at(-1).links, [{ traceId: '1'.repeat(32), spanId: '2'.repeat(16) }]);
    assert.doesNotMatch(w.stdout, /^error /m);
  } finally {
    w.child.kill('SIGKILL');
  }
  // A reader given a hostile traceparent gets the context it passed.
  for (const t of bad) assert.equal(outputTraceContext({ traceparent: t }, ROOT_CONTEXT), ROOT_CONTEXT);
  assert.equal(outputTraceContext({}, ROOT_CONTEXT), ROOT_CONTEXT);
});

test('without a tracer provider, entries and outputs are as before: no trace field; with one but no active span, no field either', async () => {
  const name = fresh('untraced');
  // A producer process that registered no provider (a span context it made up is active).
  const script = `
    import { context, trace } from '@opentelemetry/api';
    import { createClient } from 'redis';
    import { redisProducer } from 'velo-stream/redis';
    const client = createClient({ url: ${JSON.stringify(redis.url)} });
    await client.connect();
    const producer = redisProducer({ client, name: ${JSON.stringify(name)}, partitions: 1 });
    const made = trace.setSpanContext(context.active(), { traceId: '${'1'.repeat(32)}', spanId: '${'2'.repeat(16)}', traceFlags: 1 });
    await context.with(made, () => producer.send('K', { n: 1 }));
    await producer.sendMany([['K', { n: 2 }]]);
    await client.close();
  `;
  await run(['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)) });
  // Here a provider is registered, but no span is active at this send.
  await context.with(ROOT_CONTEXT, () => redisProducer({ client, name, partitions: 1 }).send('K', { n: 3 }));
  for (const e of await inputEntries(name)) assert.deepEqual(Object.keys(e.fields), ['k', 'v']);
  // An untraced worker (TRACE=0: no provider) writes its outputs without the field.
  const w = tracedWorker(name, { env: { ...process.env, TRACE: '0' } });
  try {
    await eventually(async () => (await outputEntries(name)).length === 3, 'the outputs');
    for (const o of await outputEntries(name)) assert.deepEqual(Object.keys(o.fields), ['sid', 'seq', 'k', 'v']);
    const ac = new AbortController();
    for await (const item of redisOutputs({ client, name, partitions: 1, signal: ac.signal })) {
      assert.equal('traceparent' in item, false);
      break;
    }
    await stopChild(w);
    assert.equal(childSpans(w).length, 0);
  } finally {
    w.child.kill('SIGKILL');
  }
});

test('a session span links to at most 128 distinct producer spans (a span that sent many events once); velo.links_dropped counts the others', async () => {
  const name = fresh('links');
  const producer = redisProducer({ client, name, partitions: 1 });
  const contexts = [];
  for (let n = 0; n < 130; n++) contexts.push(await inSpan(`produce ${n}`, () => producer.send('K', { n })));
  // The first producer span again, with two events: no new link.
  await context.with(trace.setSpanContext(ROOT_CONTEXT, contexts[0]), () =>
    producer.sendMany([
      ['K', { n: 130 }],
      ['K', { n: 131 }],
    ]),
  );
  const w = tracedWorker(name);
  try {
    await eventually(() => childSpans(w).filter((s) => s.name === 'velo event').length === 132, 'every event handled');
    await stopChild(w);
    const [session] = childSpans(w).filter((s) => s.name === 'velo traced');
    assert.deepEqual(
      session.links,
      contexts.slice(0, 128).map((c) => ({ traceId: c.traceId, spanId: c.spanId })),
    );
    assert.equal(session.attributes['velo.links_dropped'], 2);
  } finally {
    w.child.kill('SIGKILL');
  }
});

test("onOutput items (local delivery) carry their session span's traceparent too (worker in this process)", async () => {
  const name = fresh('local');
  const delivered = [];
  const echo = streamFn(
    async function* localEcho(events) {
      for await (const e of events) yield e.n;
    },
    { idleTimeout: 200 },
  );
  const worker = redisWorker(echo, { client, name, partitions: 1, leaseTtl: 1500, onOutput: (o) => void delivered.push(o) });
  try {
    const producer = redisProducer({ client, name, partitions: 1 });
    const p = await inSpan('produce', () => producer.send('K', { n: 1 }));
    await eventually(() => exporter.getFinishedSpans().some((s) => s.name === 'velo localEcho'), 'the session ended');
    await eventually(() => delivered.length === 1, 'the output delivered');
    const [session] = exporter.getFinishedSpans().filter((s) => s.name === 'velo localEcho');
    assert.equal(delivered[0].traceparent, traceparentOf(session.spanContext()));
    assert.equal(delivered[0].traceparent, (await outputEntries(name))[0].fields.t);
    assert.ok(
      session.links.some((l) => l.context.spanId === p.spanId),
      'the session span links to the producer span',
    );
  } finally {
    await worker.close();
  }
});

test("the active span context's tracestate is written with its traceparent (field s); one over 512 characters is left out", async () => {
  const name = fresh('state');
  const producer = redisProducer({ client, name, partitions: 1 });
  const made = (state) => ({
    traceId: '3'.repeat(32),
    spanId: '4'.repeat(16),
    traceFlags: 1,
    traceState: createTraceState(state),
  });
  await context.with(trace.setSpanContext(ROOT_CONTEXT, made('vendor=abc,other=1')), () => producer.send('K', { n: 1 }));
  // (The API's own TraceState drops a long one itself: this one is another implementation's.)
  const long = { ...made(''), traceState: { serialize: () => `v=${'x'.repeat(600)}`, get: () => undefined } };
  await context.with(trace.setSpanContext(ROOT_CONTEXT, long), () => producer.send('K', { n: 2 }));
  const [first, second] = await inputEntries(name);
  assert.deepEqual(first.fields, {
    k: 'K',
    v: '{"n":1}',
    t: `00-${'3'.repeat(32)}-${'4'.repeat(16)}-01`,
    s: 'vendor=abc,other=1',
  });
  assert.deepEqual(Object.keys(second.fields), ['k', 'v', 't']);
});

test('a worker with a tracer provider but no context manager: its session span still links its producers, each event has its span, outputs carry the session span', async () => {
  const name = fresh('nocm');
  const producer = redisProducer({ client, name, partitions: 1 });
  const w = tracedWorker(name, { env: { ...process.env, TRACE_CM: '0' } });
  try {
    const p1 = await inSpan('produce 1', () => producer.send('K', { n: 1 }));
    await eventually(async () => (await outputEntries(name)).length === 1, 'the output written');
    await stopChild(w);
    const spans = childSpans(w);
    const [session] = spans.filter((s) => s.name === 'velo traced');
    assert.ok(session, 'the session span');
    assert.ok(linksTo(session, p1), 'linked to its producer span');
    assert.equal(session.attributes['velo.partition'], 0);
    const events = spans.filter((s) => s.name === 'velo event');
    assert.equal(events.length, 1);
    assert.equal(events[0].parent, session.spanId);
    const [out] = await outputEntries(name);
    assert.equal(out.fields.t, traceparentOf({ ...session, traceFlags: 1 }));
  } finally {
    w.child.kill('SIGKILL');
  }
});

test('a span context whose fields throw never makes a send fail (the entry goes untraced); a redisOutputs item carries a traceparent only when it is valid', async () => {
  const name = fresh('hostilectx');
  const producer = redisProducer({ client, name, partitions: 1 });
  const hostile = trace.wrapSpanContext({
    get traceId() {
      throw new Error('traceId getter');
    },
    spanId: '2'.repeat(16),
    traceFlags: 1,
  });
  await context.with(trace.setSpan(context.active(), hostile), () => producer.send('K', { n: 1 }));
  const [entry] = await inputEntries(name);
  assert.deepEqual(Object.keys(entry.fields), ['k', 'v']);
  // Outputs written by hand, with traceparents of the right length that are not valid.
  const valid = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
  for (const [i, t] of [valid, valid.toUpperCase(), `00-${'\xff'.repeat(32)}-${'b'.repeat(16)}-01`, `00-${'0'.repeat(32)}-${'b'.repeat(16)}-01`].entries())
    await client.sendCommand(['XADD', `velo:{${name}:p0}:out`, '*', 'sid', `K@${i}`, 'seq', '1', 'k', 'K', 'v', '1', 't', t]);
  const items = [];
  for await (const item of redisOutputs({ client, name, partitions: 1 })) {
    items.push(item.traceparent);
    if (items.length === 4) break;
  }
  assert.deepEqual(items, [valid, undefined, undefined, undefined]);
});
