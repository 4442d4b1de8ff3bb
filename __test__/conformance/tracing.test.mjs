// Contract, for every cell (cells.mjs), with a tracer provider registered (docs/tracing.md): the cell's span is a
// child of the context active at its open; a pipe's stages are children of the pipe's span and a task stage's
// calls of their stage's; the user's function runs in its stage's span (a call's, for a task stage), on a worker
// thread too; the outcome (completed, failed with the error, cancelled with the reason) is on the span; and every
// span the cell started is ended, however it ended: read to the end, failed, cancelled, under sessions, or
// abandoned and collected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { context, trace, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { cells } from './cells.mjs';

// Worker threads started from now on register a context manager (handlers.mjs).
process.env.VELO_CONFORMANCE_TRACING = '1';

/** Every span started, and which have ended: a span processor sees both. */
class Recorder {
  started = [];
  ended = new Set();
  onStart(span) {
    this.started.push(span);
  }
  onEnd(span) {
    this.ended.add(span);
  }
  forceFlush() {
    return Promise.resolve();
  }
  shutdown() {
    return Promise.resolve();
  }
}
const recorder = new Recorder();

before(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [recorder] }));
});
after(() => {
  trace.disable();
  context.disable();
});

const idOf = (span) => span.spanContext().spanId;
const parentOf = (span) => span.parentSpanContext?.spanId;

/**
 * Runs `fn` in a new root span; once every span of its trace has ended (a worker's, a cancelled call's may end
 * a few turns after the stream settles), the trace: its root's id and its velo spans, in the order they started.
 */
async function traced(fn) {
  const root = trace.getTracer('contract').startSpan('root');
  let result;
  try {
    result = await context.with(trace.setSpan(context.active(), root), fn);
  } finally {
    root.end();
  }
  const traceId = root.spanContext().traceId;
  const spans = () => recorder.started.filter((s) => s.spanContext().traceId === traceId && s.name.startsWith('velo '));
  await until(() => spans().every((s) => recorder.ended.has(s)), () => `spans not ended: ${names(spans().filter((s) => !recorder.ended.has(s)))}`);
  return { rootId: idOf(root), spans: spans(), result };
}

/** Waits, a turn and 10 ms at a time (forcing collections), until `check()` holds; fails after 300 rounds. */
async function until(check, what) {
  for (let i = 0; i < 300; i++) {
    if (check()) return;
    globalThis.gc();
    await turn();
    await sleep(10);
  }
  assert.fail(what());
}

/** The trace of a stream of `fn` opened, sent one event, and dropped: once it was collected. */
function abandonedTrace(fn) {
  return traced(async () => {
    await (async () => {
      await fn.open().send({ i: 0 });
    })();
    await until(
      () => fn.stats().open === 0,
      () => `not collected: ${JSON.stringify(fn.stats())}`,
    );
  });
}

const names = (spans) => spans.map((s) => `${s.name} (${s.attributes['velo.kind'] ?? ''})`).join(', ');

/**
 * The shape every cell's trace has: one top span (the cell's) under the root; for a pipe, its stages under it, as
 * many as the cell has; each task or batch call under a stage of that kind. Returns the top span and the stages.
 */
function shapeOf(cell, { rootId, spans }) {
  const top = spans.filter((s) => parentOf(s) === rootId);
  assert.equal(top.length, 1, `one span under the root: ${names(top)}`);
  const [cellSpan] = top;
  const stageCount = cell.name.split(' | ').length;
  const stages = stageCount === 1 ? [cellSpan] : spans.filter((s) => parentOf(s) === idOf(cellSpan));
  if (stageCount > 1) assert.equal(cellSpan.attributes['velo.kind'], 'pipe');
  assert.equal(stages.length, stageCount, `its stages: ${names(stages)}`);
  for (const stage of stages) assert.notEqual(stage.attributes['velo.kind'], 'pipe');
  const calls = spans.filter((s) => s.name === 'velo task call' || s.name === 'velo batch call');
  for (const call of calls) {
    const stage = stages.find((s) => idOf(s) === parentOf(call));
    assert.ok(stage, `${call.name} is a child of a stage`);
    assert.equal(`velo ${stage.attributes['velo.kind']} call`, call.name);
  }
  assert.equal(spans.length, 1 + (stageCount > 1 ? stageCount : 0) + calls.length, `no other spans: ${names(spans)}`);
  return { cellSpan, stages, calls };
}

for (const cell of cells()) {
  test(`${cell.name}: spans under the open's context; the function runs in its stage's span; all ended, completed`, async () => {
    const t = await traced(async () => {
      const s = cell.make({ buffer: 8 }).open();
      for (const e of [{ i: 0 }, { make: 'span' }, { i: 2 }]) await s.send(e);
      s.end();
      const out = [];
      for await (const v of s) out.push(v);
      return out;
    });
    const { cellSpan, stages, calls } = shapeOf(cell, t);
    assert.equal(t.result.length, 3);
    // The first stage made the output for { make: 'span' }: in its own span, or a call's of it.
    const seen = t.result[1].span;
    const first = stages[0];
    assert.ok(
      seen === idOf(first) || calls.some((c) => idOf(c) === seen && parentOf(c) === idOf(first)),
      `the function ran in span ${seen}: the first stage is ${idOf(first)} (${first.attributes['velo.kind']})`,
    );
    for (const span of [cellSpan, ...stages]) {
      assert.equal(span.attributes['velo.outcome'], 'completed', span.name);
      assert.equal(span.status.code, SpanStatusCode.UNSET, span.name);
    }
    assert.equal(stages[0].attributes['velo.events_in'], 3);
    assert.equal(stages.at(-1).attributes['velo.events_out'], 3);
  });

  test(`${cell.name}: a failure is on the failing stage's span and the cell's, with its error; all spans ended`, async () => {
    const t = await traced(() =>
      assert.rejects(cell.make({ buffer: 8 }).run([{ i: 0 }, { fail: true }, { i: 2 }]), { code: 'E_CONTRACT' }),
    );
    const { cellSpan, stages } = shapeOf(cell, t);
    // Every stage fails at { fail: true }: the first to see it, the first stage, fails (the stages after it
    // finish what it made before; the last carries the error to the reader).
    for (const span of new Set([cellSpan, stages[0], stages.at(-1)])) {
      assert.equal(span.attributes['velo.outcome'], 'failed', span.name);
      assert.deepEqual(span.status, { code: SpanStatusCode.ERROR, message: 'contract failure' }, span.name);
    }
  });

  test(`${cell.name}: a cancel is on every stage's span with its reason; all spans ended`, async () => {
    const t = await traced(async () => {
      const s = cell.make({ buffer: 8 }).open();
      await s.send({ i: 0 });
      assert.deepEqual(await s.recv(), { i: 0 });
      await s.send({ i: 1 });
      await s.cancel(new Error('user left'));
    });
    const { cellSpan, stages } = shapeOf(cell, t);
    assert.equal(cellSpan.attributes['velo.outcome'], 'cancelled');
    assert.equal(cellSpan.events.find((e) => e.name === 'cancelled')?.attributes['velo.reason'], 'user left');
    for (const stage of stages) assert.equal(stage.attributes['velo.outcome'], 'cancelled', stage.name);
  });

  test(`${cell.name}: sessions: each session's span is under the send that opened it; all ended at close()`, async () => {
    const t = await traced(async () => {
      const sessions = cell.make({ buffer: 8 }).sessions();
      await sessions.send('a', { i: 0 });
      await sessions.send('b', { i: 1 });
      await sessions.close();
    });
    const top = t.spans.filter((s) => parentOf(s) === t.rootId);
    assert.equal(top.length, 2, `a span per session: ${names(top)}`);
    for (const span of top) assert.equal(span.attributes['velo.outcome'], 'completed');
  });

  test(`${cell.name}: an abandoned stream, once collected, ends its spans as cancelled`, async () => {
    const fn = cell.make({ idleTimeout: 0 });
    const t = await abandonedTrace(fn);
    const { cellSpan } = shapeOf(cell, t);
    assert.equal(cellSpan.attributes['velo.outcome'], 'cancelled');
  });
}

test('a task stage abandoned with a call that never settles, once collected, ends the call span as cancelled too', async () => {
  const { task } = await import('velo-stream');
  for (const make of [
    () => task(() => new Promise(() => {}), { idleTimeout: 0 }),
    () => task(() => new Promise(() => {}), { idleTimeout: 0 }).pipe(task((x) => x, { idleTimeout: 0 })),
  ]) {
    const fn = make();
    const t = await abandonedTrace(fn);
    const calls = t.spans.filter((s) => s.name === 'velo task call');
    assert.equal(calls.length, 1, names(t.spans));
    assert.equal(calls[0].attributes['velo.outcome'], 'cancelled');
    for (const span of t.spans) assert.ok(recorder.ended.has(span), `${span.name} ended`);
  }
});
