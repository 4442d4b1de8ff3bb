// OpenTelemetry traces (docs/tracing.md): a span per stream, child of the context active at its open; the handler
// runs in its span's context at every step; a task stage's calls have spans of their own; a pipe's stages are
// children of the pipe's span. Without a registered tracer provider nothing is traced (a child process, where
// no provider was ever registered).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { trace, SpanStatusCode } from '@opentelemetry/api';
import { batch, streamFn, task, workerFn } from 'velo-stream';
import { run } from './helpers/child.mjs';
import { useTracing } from './helpers/tracing.mjs';

const exporter = useTracing();
const tracer = () => trace.getTracer('test');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const spans = () => exporter.getFinishedSpans();
const named = (name) => spans().filter((s) => s.name === name);
const parentOf = (span) => span.parentSpanContext?.spanId;
const idOf = (span) => span.spanContext().spanId;

/** Runs `fn` inside a span named `root` and returns the span's id. */
async function underRoot(fn) {
  return tracer().startActiveSpan('root', async (root) => {
    try {
      await fn();
    } finally {
      root.end();
    }
    return root.spanContext().spanId;
  });
}

test("a stream's span is a child of the context active at open(); the handler's own spans, after awaits and yields, are its children", async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) {
        await sleep(1);
        tracer().startSpan(`step ${e}`).end();
        yield e;
        await sleep(1);
        tracer().startSpan(`after yield ${e}`).end();
      }
    },
    { name: 'echo' },
  );
  const rootId = await underRoot(async () => {
    const s = echo.open();
    // Events sent from elsewhere (a timer's context): the handler's steps still run in the stream's span.
    setTimeout(async () => {
      await s.send(1);
      await s.send(2);
      await s.end();
    }, 1);
    for await (const _ of s);
  });
  const [stream] = named('velo echo');
  assert.ok(stream, 'a span for the stream');
  assert.equal(parentOf(stream), rootId);
  for (const name of ['step 1', 'step 2', 'after yield 1', 'after yield 2']) {
    const [child] = named(name);
    assert.ok(child, name);
    assert.equal(parentOf(child), idOf(stream), `${name} is a child of the stream's span`);
  }
  assert.equal(stream.attributes['velo.outcome'], 'completed');
  assert.equal(stream.attributes['velo.function'], 'echo');
  assert.equal(stream.attributes['velo.kind'], 'generator');
  assert.equal(stream.attributes['velo.events_in'], 2);
  assert.equal(stream.attributes['velo.events_out'], 2);
});

test("run() and feed() too; a failed stream's span records the error with status ERROR; a cancelled one its reason", async () => {
  const fails = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e === 2) throw new Error('boom');
        yield e;
      }
    },
    { name: 'fails' },
  );
  await assert.rejects(fails.run([1, 2, 3]), /boom/);
  const [failed] = named('velo fails');
  assert.equal(failed.attributes['velo.outcome'], 'failed');
  assert.equal(failed.status.code, SpanStatusCode.ERROR);
  assert.equal(failed.status.message, 'boom');
  assert.equal(failed.events.find((e) => e.name === 'exception')?.attributes['exception.message'], 'boom');

  exporter.reset();
  const waits = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { name: 'waits' },
  );
  const s = waits.open();
  await s.send(1);
  await s.cancel(new Error('user left'));
  const [cancelled] = named('velo waits');
  assert.equal(cancelled.attributes['velo.outcome'], 'cancelled');
  assert.equal(cancelled.events.find((e) => e.name === 'cancelled')?.attributes['velo.reason'], 'user left');
});

test("a task stage: a span per call attempt, a child of the stage's span, in whose context fn runs; retries are attempts; a failed call is ERROR", async () => {
  let tries = 0;
  const fetchy = task(
    async (x) => {
      await sleep(1);
      tracer().startSpan(`inside ${x}`).end();
      if (x === 2 && tries++ === 0) throw new Error('flaky');
      return x * 10;
    },
    { name: 'fetchy', concurrency: 2, retry: { attempts: 2, delay: 1 } },
  );
  const rootId = await underRoot(() => fetchy.run([1, 2, 3]));
  const [stage] = named('velo fetchy');
  assert.equal(parentOf(stage), rootId);
  assert.equal(stage.attributes['velo.kind'], 'task');
  assert.equal(stage.attributes['velo.task.retries'], 1);
  const calls = named('velo task call');
  assert.equal(calls.length, 4, 'three items, one retried');
  for (const call of calls) assert.equal(parentOf(call), idOf(stage));
  const item2 = calls
    .filter((c) => c.attributes['velo.task.index'] === 1)
    .sort((a, b) => a.attributes['velo.task.attempt'] - b.attributes['velo.task.attempt']);
  assert.deepEqual(
    item2.map((c) => [c.attributes['velo.task.attempt'], c.status.code]),
    [
      [1, SpanStatusCode.ERROR],
      [2, SpanStatusCode.UNSET],
    ],
  );
  for (const x of [1, 2, 3]) {
    for (const inside of named(`inside ${x}`)) {
      assert.ok(
        calls.some((c) => idOf(c) === parentOf(inside)),
        `fn's span for item ${x} is a child of its call's span`,
      );
    }
  }
});

test("batch() calls have spans too; a pipe's stages are children of the pipe's span", async () => {
  const grouped = batch(async (xs) => xs.length, { name: 'grouped', maxSize: 2 });
  const doubled = streamFn(
    async function* (events) {
      for await (const e of events) {
        tracer().startSpan('in stage 2').end();
        yield e * 2;
      }
    },
    { name: 'doubled' },
  );
  const rootId = await underRoot(async () => assert.deepEqual(await grouped.pipe(doubled).run([1, 2, 3]), [4, 2]));
  const [pipe] = named('velo grouped|doubled');
  assert.ok(pipe, 'a span for the pipe');
  assert.equal(parentOf(pipe), rootId);
  assert.equal(pipe.attributes['velo.kind'], 'pipe');
  assert.equal(pipe.attributes['velo.outcome'], 'completed');
  const [first] = named('velo grouped');
  const [second] = named('velo doubled');
  assert.equal(parentOf(first), idOf(pipe));
  assert.equal(parentOf(second), idOf(pipe));
  assert.equal(first.attributes['velo.kind'], 'batch');
  assert.equal(named('velo batch call').length, 2);
  for (const inStage of named('in stage 2')) assert.equal(parentOf(inStage), idOf(second));
});

test('without a registered tracer provider nothing is traced, and the handler sees the context of its open()', async () => {
  const { stdout } = await run([
    '--input-type=module',
    '-e',
    `import { context, trace } from '@opentelemetry/api';
     import { streamFn } from 'velo-stream';
     const echo = streamFn(async function* (events) { for await (const e of events) yield [e, trace.getActiveSpan()]; });
     console.log(JSON.stringify(await echo.run([1])));`,
  ]);
  assert.equal(stdout, '[[1,null]]\n');
});

test('a tracer provider registered after streams opened untraced is seen by the next open, in the same turn too; disabled or reset, as the API left it', async () => {
  const { stdout } = await run([
    '--input-type=module',
    '-e',
    `import { streamFn } from 'velo-stream';
     const { trace } = await import('@opentelemetry/api');
     const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
     const exporter = new InMemorySpanExporter();
     const register = () => trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
     const echo = streamFn(async function* (events) { for await (const e of events) yield e; }, { name: 'echo' });
     const spans = () => exporter.getFinishedSpans().filter((s) => s.name === 'velo echo').length;
     const seen = [];
     await echo.run([1]);
     seen.push(spans());
     register();
     await echo.run([1]);
     seen.push(spans());
     trace.disable();
     await echo.run([1]);
     seen.push(spans());
     // Opened untraced, a provider registered, opened again: all in one turn.
     const untraced = echo.open();
     register();
     const traced = echo.open();
     for (const s of [untraced, traced]) { s.send(1); s.end(); for await (const _ of s); }
     seen.push(spans());
     // A test's reset of the API's globals, then a provider registered again.
     trace.disable();
     delete globalThis[Symbol.for('opentelemetry.js.api.1')];
     await echo.run([1]);
     seen.push(spans());
     register();
     await echo.run([1]);
     seen.push(spans());
     console.log(JSON.stringify(seen));`,
  ]);
  assert.equal(stdout, '[0,1,1,2,2,3]\n');
});

test("a workerFn's handler runs, on its thread, as a child of the stream's span on the caller's", async () => {
  const traced = workerFn(new URL('./fixtures/traced-worker.mjs', import.meta.url), { threads: 1, name: 'traced' });
  try {
    const outputs = await traced.run([1, 2]);
    const [stream] = named('velo traced');
    assert.equal(stream.attributes['velo.kind'], 'worker');
    assert.deepEqual(
      outputs,
      [1, 2].map((e) => ({ e, traceId: stream.spanContext().traceId, parent: idOf(stream) })),
    );
  } finally {
    await traced.close();
  }
});

test("sessions: each session's stream has its span, a child of the send that opened it; its key only with traceKeys: true", async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { name: 'per-user' },
  );
  const pipe = echo.pipe(
    streamFn(
      async function* (events) {
        for await (const e of events) yield e;
      },
      { name: 'after' },
    ),
  );
  for (const [fn, traceKeys, spanName] of [
    [echo, undefined, 'velo per-user'],
    [echo, true, 'velo per-user'],
    [pipe, true, 'velo per-user|after'],
  ]) {
    exporter.reset();
    const sessions = fn.sessions(traceKeys === undefined ? undefined : { traceKeys });
    if (traceKeys !== undefined) assert.equal(sessions.fn, fn, 'traceKeys alone: the sessions run on the function itself');
    const rootId = await underRoot(async () => {
      await sessions.send('alice', 1);
      await sessions.send('bob', 2);
      await sessions.close();
    });
    const sessionSpans = named(spanName);
    assert.equal(sessionSpans.length, 2, spanName);
    for (const span of sessionSpans) assert.equal(parentOf(span), rootId);
    assert.deepEqual(
      sessionSpans.map((s) => s.attributes['velo.session.key']).sort(),
      traceKeys ? ['alice', 'bob'] : [undefined, undefined],
    );
  }
  assert.throws(() => echo.sessions({ traceKeys: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => echo.sessions({ traceKey: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /Known options: traceKeys, debounce, singleton, buffer/ });
});

test('hostile thrown values and cancel reasons: the stream still fails or cancels, its span ends with what could be read; long texts are cut', async () => {
  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const getterThrows = (field) => {
    const error = new Error('readable');
    Object.defineProperty(error, field, {
      get() {
        throw new Error(`${field} getter`);
      },
    });
    return error;
  };
  const throwing = (make) =>
    streamFn(
      async function* (events) {
        for await (const _ of events) throw make();
      },
      { name: 'hostile' },
    );
  for (const [what, make, message] of [
    ['a revoked proxy', revoked, 'an unprintable value'],
    ['a message getter that throws', () => getterThrows('message'), 'an unprintable value'],
    ['a name getter that throws', () => getterThrows('name'), 'readable'],
    ['a stack getter that throws', () => getterThrows('stack'), 'readable'],
    ['a 5 MB message', () => new Error('x'.repeat(5_000_000)), `${'x'.repeat(1023)}…`],
    // Cut to 1,024 UTF-16 units with the ellipsis, never between the two halves of a character.
    ['a long message of emoji', () => new Error('\u{1F600}'.repeat(600)), `${'\u{1F600}'.repeat(511)}…`],
  ]) {
    exporter.reset();
    // (Not assert.rejects: it reads fields of the rejection, which a revoked proxy refuses.)
    const rejected = await throwing(make)
      .run([1])
      .then(
        () => false,
        () => true,
      );
    assert.ok(rejected, `${what}: run() rejects`);
    const [span] = named('velo hostile');
    assert.ok(span, `${what}: the span ended`);
    assert.equal(span.attributes['velo.outcome'], 'failed', what);
    assert.deepEqual(span.status, { code: SpanStatusCode.ERROR, message }, what);
  }
  for (const [what, reason, text] of [
    ['a revoked proxy', revoked(), 'an unprintable value'],
    ['a 5 MB reason', 'y'.repeat(5_000_000), `${'y'.repeat(1023)}…`],
  ]) {
    exporter.reset();
    const s = throwing(() => new Error('unused')).open();
    await s.cancel(reason);
    const [span] = named('velo hostile');
    assert.equal(span.events.find((e) => e.name === 'cancelled')?.attributes['velo.reason'], text, what);
  }
  exporter.reset();
  const sessions = throwing(() => new Error('unused')).sessions({ traceKeys: true });
  await sessions.send('k'.repeat(100_000), 1).catch(() => {});
  await sessions.send(revoked(), 1).catch(() => {});
  await sessions.close().catch(() => {});
  assert.deepEqual(named('velo hostile').map((s) => s.attributes['velo.session.key']).sort(), ['an unprintable value', `${'k'.repeat(1023)}…`]);
});

test("a failure's exception is cut to the bounds docs/tracing.md states: its message to one, its stack to the other", async () => {
  const doc = readFileSync(new URL('../docs/tracing.md', import.meta.url), 'utf8');
  const stated = /texts are cut to ([\d,]+) characters, the stack \(`exception\.stacktrace`\) to ([\d,]+)/.exec(doc);
  assert.ok(stated, 'docs/tracing.md states the bound of texts and of the stack');
  const [textBound, stackBound] = stated.slice(1).map((n) => Number(n.replaceAll(',', '')));
  assert.deepEqual([textBound, stackBound], [1024, 4096]);
  exporter.reset();
  const failing = streamFn(
    async function* (events) {
      for await (const _ of events) throw new Error('x'.repeat(5000));
    },
    { name: 'long-failure' },
  );
  await assert.rejects(failing.run([1]), /^Error: x{5000}$/);
  const [span] = named('velo long-failure');
  const exception = span.events.find((e) => e.name === 'exception')?.attributes;
  assert.equal(exception['exception.message'], `${'x'.repeat(textBound - 1)}…`);
  const stack = exception['exception.stacktrace'];
  assert.equal(stack.length, stackBound);
  assert.equal(stack, `Error: ${'x'.repeat(stackBound - 'Error: '.length - 1)}…`);
});
