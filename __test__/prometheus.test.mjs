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
    const value = (line) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(line))
          ?.split(' ')
          .at(-1),
      );
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
  assert.throws(
    () => registerStreamMetrics({}, []),
    (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE',
  );
});

/** A scrape's samples by `name{labels}`; fails on a sample that appears twice (Prometheus rejects such a scrape). */
function samples(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    const key = line.slice(0, at);
    assert.ok(!out.has(key), `duplicate sample ${key}`);
    out.set(key, Number(line.slice(at + 1)));
  }
  return out;
}

async function* passOn(events) {
  for await (const e of events) yield e;
}

async function* twice(events) {
  for await (const e of events) {
    yield e;
    yield e;
  }
}

test("a pipe's figures are its own streams', whatever else its stage functions serve", async () => {
  const a = streamFn(passOn, { name: 'a' });
  const b = streamFn(twice, { name: 'b' });
  await a.run([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await b.run([1, 2, 3]);
  const p = a.pipe(b);
  assert.deepEqual(await p.run([1, 2]), [1, 1, 2, 2]);
  const registry = new Registry();
  registerStreamMetrics(registry, [a, b, p]);
  const m = samples(await registry.metrics());
  assert.equal(m.get('velo_events_in_total{fn="a|b"}'), 2);
  assert.equal(m.get('velo_events_out_total{fn="a|b"}'), 4);
  assert.equal(m.get('velo_queue_wait_seconds_count{fn="a|b"}'), 2);
  assert.equal(m.get('velo_queue_wait_seconds_bucket{fn="a|b",le="+Inf"}'), 2);
  assert.equal(m.get('velo_streams_opened_total{fn="a|b"}'), 1);
  assert.equal(m.get('velo_streams_completed_total{fn="a|b"}'), 1);
  assert.equal(m.get('velo_streams_open{fn="a|b"}'), 0);
  // Each stage function's own figures count every stream of it, the pipe's included.
  assert.equal(m.get('velo_events_in_total{fn="a"}'), 12);
  assert.equal(m.get('velo_events_out_total{fn="a"}'), 12);
  assert.equal(m.get('velo_queue_wait_seconds_count{fn="a"}'), 12);
  assert.equal(m.get('velo_events_in_total{fn="b"}'), 5);
  assert.equal(m.get('velo_events_out_total{fn="b"}'), 10);
  assert.equal(m.get('velo_streams_opened_total{fn="b"}'), 2);
  // Another pipe of the same stages has figures of its own (and the same name: another registry).
  const q = a.pipe(b);
  await q.run([5]);
  const registry2 = new Registry();
  registerStreamMetrics(registry2, [q]);
  const m2 = samples(await registry2.metrics());
  assert.deepEqual([m2.get('velo_events_in_total{fn="a|b"}'), m2.get('velo_events_out_total{fn="a|b"}')], [1, 2]);
  const again = samples(await registry.metrics());
  assert.deepEqual([again.get('velo_events_in_total{fn="a|b"}'), again.get('velo_events_in_total{fn="a"}')], [2, 13]);
});

test('one series per function: the same function twice is one series, two functions with one name are refused', async () => {
  // Anonymous handlers are all named "anonymous".
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const other = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  assert.equal(fn.name, other.name);
  const refusedAt = (code) => (e) => e instanceof TypeError && e.code === code && /"anonymous"/.test(e.message);
  assert.throws(() => registerStreamMetrics(new Registry(), [fn, other]), refusedAt('ERR_INVALID_ARG_VALUE'));

  // Sessions without settings of their own run on the function itself: the same series.
  const registry = new Registry();
  registerStreamMetrics(registry, [fn, fn.sessions().fn, fn]);
  await fn.run([1, 2]);
  const text = await registry.metrics();
  const m = samples(text);
  assert.equal(m.get('velo_events_in_total{fn="anonymous"}'), 2);
  assert.equal(text.split('\n').filter((l) => l.startsWith('velo_streams_opened_total')).length, 1);

  // Sessions with settings of their own are another function: they need their own name.
  assert.throws(
    () => registerStreamMetrics(new Registry(), [fn, fn.sessions({ idleTimeout: 5 }).fn]),
    refusedAt('ERR_INVALID_ARG_VALUE'),
  );
  const named = new Registry();
  registerStreamMetrics(named, [fn, fn.sessions({ idleTimeout: 5, name: 'fn-sessions' }).fn]);
  assert.equal(samples(await named.metrics()).get('velo_streams_opened_total{fn="fn-sessions"}'), 0);

  // A function returning the list is read at every scrape: a duplicate there
  // rejects the scrape, and no sample of it is exported.
  const listed = [fn];
  const live = new Registry();
  registerStreamMetrics(live, () => listed);
  assert.equal(samples(await live.metrics()).get('velo_events_in_total{fn="anonymous"}'), 2);
  listed.push(other);
  await assert.rejects(live.metrics(), refusedAt('ERR_INVALID_RETURN_VALUE'));
  listed.pop();
  assert.equal(samples(await live.metrics()).get('velo_events_in_total{fn="anonymous"}'), 2);
});

test('names that are not well-formed text are refused: a lone surrogate is U+FFFD on the wire, one name with others', async () => {
  const named = (name) =>
    streamFn(
      async function* (events) {
        for await (const e of events) yield e;
      },
      { name },
    );
  const refusedAt = (code, name) => (e) =>
    e instanceof TypeError &&
    e.code === code &&
    e.message.startsWith(`The stream function name ${JSON.stringify(name)} has a lone surrogate`);
  for (const name of ['pay\uD800', 'pay\uDC00', '\uDC00\uD800'])
    assert.throws(
      () => registerStreamMetrics(new Registry(), [named('pay'), named(name)]),
      refusedAt('ERR_INVALID_ARG_VALUE', name),
    );
  // Well-formed names are taken, U+FFFD and a pair of surrogates (one character) included: each is one series.
  const registry = new Registry();
  registerStreamMetrics(registry, [named('pay'), named('pay\uFFFD'), named('pay\uD83D\uDE00')]);
  const wire = Buffer.from(await registry.metrics(), 'utf8').toString('utf8');
  assert.deepEqual(
    wire.split('\n').filter((l) => l.startsWith('velo_streams_open{')),
    ['velo_streams_open{fn="pay"} 0', 'velo_streams_open{fn="pay\uFFFD"} 0', 'velo_streams_open{fn="pay\uD83D\uDE00"} 0'],
  );
  // Listed by a function: the scrape that meets one is rejected.
  const listed = [named('pay')];
  const live = new Registry();
  registerStreamMetrics(live, () => listed);
  listed.push(named('pay\uD800'));
  await assert.rejects(live.metrics(), refusedAt('ERR_INVALID_RETURN_VALUE', 'pay\uD800'));
});

test('a registry that holds one of the names already: refused with a code, and none of the metrics is registered', async () => {
  const { Counter } = await import('prom-client');
  const { limiter } = await import('velo-stream');
  const { registerLimiterMetrics, registerRedisWorkerMetrics, registerWorkerMetrics } = await import('velo-stream/prometheus');
  const fn = streamFn(async function* f(events) {
    for await (const e of events) yield e;
  });
  const registry = new Registry();
  new Counter({ name: 'velo_events_in_total', help: 'mine', registers: [registry] });
  const names = async () => (await registry.getMetricsAsJSON()).map((m) => m.name);
  assert.throws(() => registerStreamMetrics(registry, [fn]), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_VALUE',
    message:
      'registerStreamMetrics(): the registry holds a metric named "velo_events_in_total" already: nothing was registered. Give another opts.prefix, or a registry without those names',
  });
  assert.deepEqual(await names(), ['velo_events_in_total']);
  // Once the name is free, the same call registers them all.
  registry.removeSingleMetric('velo_events_in_total');
  registerStreamMetrics(registry, [fn]);
  const registered = await names();
  assert.ok(registered.includes('velo_events_in_total') && registered.includes('velo_queue_wait_seconds'));
  // Called twice: the second call is refused and the first's metrics stay as they were.
  assert.throws(() => registerStreamMetrics(registry, [fn]), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /"velo_streams_open", "velo_streams_opened_total",/,
  });
  assert.deepEqual(await names(), registered);
  const l = limiter({ concurrency: 1, name: 'l' });
  registerLimiterMetrics(registry, [l]);
  const withLimiters = await names();
  assert.throws(() => registerLimiterMetrics(registry, [l]), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /^registerLimiterMetrics\(\): the registry holds a metric named "velo_limiter_in_use",/,
  });
  assert.deepEqual(await names(), withLimiters);
  // Both worker register functions on one registry: the second is refused whole (its velo_redis_* names too).
  registerWorkerMetrics(registry, []);
  const withWorkers = await names();
  assert.throws(() => registerRedisWorkerMetrics(registry, []), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /^registerRedisWorkerMetrics\(\): the registry holds a metric named "velo_worker_partitions_owned",/,
  });
  assert.deepEqual(await names(), withWorkers);
});

test('fns must list stream functions', async () => {
  const fn = streamFn(passOn);
  const isType = (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE';
  assert.throws(() => registerStreamMetrics(new Registry(), 42), isType);
  assert.throws(() => registerStreamMetrics(new Registry(), [fn, { name: 'x' }]), isType);
  assert.throws(() => registerStreamMetrics(new Registry(), [fn.sessions()]), isType, 'the sessions, not their fn');
  const registry = new Registry();
  registerStreamMetrics(registry, () => [fn, null]);
  await assert.rejects(registry.metrics(), (e) => e instanceof TypeError && e.code === 'ERR_INVALID_RETURN_VALUE');
  // A list given as a one-shot iterable is read once, at registration: every scrape still has it.
  const once = new Registry();
  registerStreamMetrics(once, [fn].values());
  await fn.run([1]);
  assert.equal(samples(await once.metrics()).get('velo_events_in_total{fn="passOn"}'), 1);
  assert.equal(samples(await once.metrics()).get('velo_events_in_total{fn="passOn"}'), 1);
});

test('task and batch stages export their calls: in flight, retries, skipped, and a duration histogram', async () => {
  const { task } = await import('velo-stream');
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const fetchDoc = task(
    async function fetchDoc(x, ctx) {
      if (x === 'flaky' && ctx.attempt === 1) throw new Error('once');
      if (x === 'bad') throw new Error('always');
      if (x === 'slow') await gate;
      return x;
    },
    { retry: { attempts: 2, delay: 0 }, onError: 'skip' },
  );
  const echo = streamFn(async function* plain(events) {
    for await (const e of events) yield e;
  });
  const registry = new Registry();
  registerStreamMetrics(registry, [fetchDoc, echo]);
  assert.deepEqual(await fetchDoc.run(['a', 'flaky', 'bad']), ['a', 'flaky']);
  const s = fetchDoc.open();
  await s.send('slow');
  await new Promise((r) => setImmediate(r));
  const text = await registry.metrics();
  const value = (line) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(line))
        ?.split(' ')
        .at(-1),
    );
  assert.equal(value('velo_task_in_flight{fn="fetchDoc"}'), 1);
  // flaky and bad were each retried once; bad was then skipped.
  assert.equal(value('velo_task_retries_total{fn="fetchDoc"}'), 2);
  assert.equal(value('velo_task_skipped_total{fn="fetchDoc"}'), 1);
  // Attempts: a, flaky x2, bad x2.
  assert.equal(value('velo_task_duration_seconds_count{fn="fetchDoc"}'), 5);
  assert.match(text, /# TYPE velo_task_duration_seconds histogram/);
  assert.ok(!text.includes('velo_task_in_flight{fn="plain"}'), 'generator functions have no task samples');
  // A cancel drops the call in flight from the gauge once it settles.
  const cancelled = s.cancel();
  release();
  await cancelled;
  assert.equal(
    Number(
      (await registry.metrics())
        .split('\n')
        .find((l) => l.startsWith('velo_task_in_flight{fn="fetchDoc"}'))
        .split(' ')
        .at(-1),
    ),
    0,
  );
});

test('options of the register functions are checked: unknown keys, bad buckets and prefixes are refused with a code', async () => {
  const { Registry } = await import('prom-client');
  const { registerStreamMetrics, registerRedisWorkerMetrics } = await import('velo-stream/prometheus');
  const { streamFn } = await import('velo-stream');
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const refused = (opts, code, pattern) =>
    assert.throws(
      () => registerStreamMetrics(new Registry(), [fn], opts),
      (e) => e.code === code && pattern.test(e.message),
      JSON.stringify(opts, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)),
    );
  refused({ bukets: [1, 2] }, 'ERR_INVALID_ARG_VALUE', /unknown option "bukets"\. Known options: prefix, buckets/);
  refused({ buckets: [2, 1] }, 'ERR_OUT_OF_RANGE', /strictly increasing order; item 1 is type number \(1\)/);
  refused({ buckets: [1, 1] }, 'ERR_OUT_OF_RANGE', /item 1/);
  refused({ buckets: [NaN] }, 'ERR_OUT_OF_RANGE', /item 0/);
  refused({ buckets: [1, Infinity] }, 'ERR_OUT_OF_RANGE', /item 1/);
  refused({ buckets: [0, 1] }, 'ERR_OUT_OF_RANGE', /item 0/);
  refused({ buckets: [] }, 'ERR_INVALID_ARG_TYPE', /non-empty array/);
  // A hole is no number: refused where it is, as registerLimiterMetrics refuses it.
  // eslint-disable-next-line no-sparse-arrays
  refused({ buckets: [0.001, , 1] }, 'ERR_OUT_OF_RANGE', /strictly increasing order; item 1 is a hole$/);
  // eslint-disable-next-line no-sparse-arrays
  refused({ buckets: [0.001, 1, ,] }, 'ERR_OUT_OF_RANGE', /item 2 is a hole$/);
  const { registerLimiterMetrics } = await import('velo-stream/prometheus');
  const { limiter } = await import('velo-stream');
  // eslint-disable-next-line no-sparse-arrays
  assert.throws(() => registerLimiterMetrics(new Registry(), [limiter({ concurrency: 1 })], { buckets: [0.001, , 1] }), {
    code: 'ERR_OUT_OF_RANGE',
    message: /^registerLimiterMetrics\(\): opts\.buckets must be .*; item 1 is a hole$/,
  });
  refused({ prefix: 'my-app.' }, 'ERR_INVALID_ARG_VALUE', /valid Prometheus metric names/);
  refused({ prefix: '1x_' }, 'ERR_INVALID_ARG_VALUE', /valid Prometheus metric names/);
  refused({ prefix: 5 }, 'ERR_INVALID_ARG_TYPE', /opts\.prefix must be a string/);
  refused({ prefix: Symbol('p') }, 'ERR_INVALID_ARG_TYPE', /opts\.prefix must be a string/);
  assert.throws(() => registerStreamMetrics(new Registry(), [fn], null), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => registerRedisWorkerMetrics(new Registry(), [], { buckets: [1] }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "buckets"\. Known options: prefix/,
  });
  assert.throws(() => registerRedisWorkerMetrics(new Registry(), [], { prefix: 'a b' }), { code: 'ERR_INVALID_ARG_VALUE' });
  // Accepted: an empty prefix, a custom one, increasing buckets; and the exposition uses them.
  const registry = new Registry();
  registerStreamMetrics(registry, [fn], { prefix: 'app:', buckets: [0.001, 0.5] });
  assert.match(await registry.metrics(), /app:queue_wait_seconds_bucket\{[^}]*le="0\.5"/);
  registerStreamMetrics(new Registry(), [fn], { prefix: '' });
});
