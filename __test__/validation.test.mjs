// Bad input gets a clear error with a stable code, at the call, and nothing is left open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batch, streamFn, task, workerFn } from 'velo-stream';
import { echo, settle } from './helpers/util.mjs';

const WORKER_MODULE = new URL('./conformance/handlers.mjs', import.meta.url);
const echoItem = (x) => x;

const is = (Class, code, field) => (e) => e instanceof Class && e.code === code && (!field || e.message.includes(field));

test('streamFn with a non-function or a sync generator function -> TypeError ERR_INVALID_ARG_TYPE', () => {
  for (const bad of [undefined, null, 1, 'f', {}, [], Symbol('x')]) {
    assert.throws(() => streamFn(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE'), String(bad));
  }
  assert.throws(() => streamFn(function* () {}), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'sync generator'));
});

test('buffer and maxConcurrent must be positive integers -> RangeError ERR_OUT_OF_RANGE naming the field', () => {
  for (const field of ['buffer', 'maxConcurrent']) {
    for (const bad of [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 32, '4', null, true, 10n]) {
      assert.throws(() => streamFn(echo, { [field]: bad }), is(RangeError, 'ERR_OUT_OF_RANGE', field), `${field}=${String(bad)}`);
    }
  }
});

test('idleTimeout must be a non-negative finite number -> RangeError ERR_OUT_OF_RANGE', () => {
  for (const bad of [-1, NaN, Infinity, '10', null, 2 ** 31]) {
    assert.throws(() => streamFn(echo, { idleTimeout: bad }), is(RangeError, 'ERR_OUT_OF_RANGE', 'idleTimeout'), String(bad));
  }
  assert.equal(streamFn(echo, { idleTimeout: 0.5 }).config.idleTimeout, 0.5);
});

test('unknown config keys and non-object configs -> TypeError; a non-string name -> TypeError', () => {
  assert.throws(() => streamFn(echo, { bufer: 4 }), is(TypeError, 'ERR_INVALID_ARG_VALUE', 'bufer'));
  for (const bad of [null, 5, 'x', [], () => {}]) {
    assert.throws(() => streamFn(echo, bad), is(TypeError, 'ERR_INVALID_ARG_TYPE'), String(bad));
  }
  assert.throws(() => streamFn(echo, { name: 5 }), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'name'));
});

test('run() and feed() with a non-iterable -> TypeError; the stream feed() refused it for is cancelled, nothing is left open', async () => {
  const kinds = {
    generator: () => streamFn(echo, { maxConcurrent: 1 }),
    pipe: () => streamFn(echo, { maxConcurrent: 1 }).pipe(streamFn(echo)),
    task: () => task(async (e) => e, { maxConcurrent: 1 }),
  };
  for (const [kind, make] of Object.entries(kinds)) {
    const fn = make();
    // eslint-disable-next-line no-new-wrappers
    for (const bad of [undefined, null, 5, 'abc', new String('abc'), {}, () => {}, async () => [1], () => 42]) {
      await assert.rejects(fn.run(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE'), String(bad));
      // As a route writes it: fn.open().feed(source), the stream held by nothing else.
      assert.throws(() => fn.open().feed(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE'), `${kind}: ${String(bad)}`);
      const s = fn.open();
      assert.throws(() => s.feed(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE'));
      assert.equal(s.state, 'cancelled', `${kind}: ${String(bad)}`);
      await assert.rejects(s.send(1), { code: 'ERR_VELO_STREAM_CLOSED' });
    }
    await settle();
    assert.equal(fn.stats().open, 0, kind);
    assert.deepEqual(await fn.run([1]), [1], `${kind}: its slot is free`);
  }
});

test('open()/run() options: bad signal or unknown keys -> TypeError before anything opens', async () => {
  const fn = streamFn(echo);
  assert.throws(() => fn.open({ signal: {} }), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'signal'));
  assert.throws(() => fn.open({ sig: 1 }), is(TypeError, 'ERR_INVALID_ARG_VALUE'));
  assert.throws(() => fn.open(5), is(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await assert.rejects(fn.run([1], { signal: 'no' }), is(TypeError, 'ERR_INVALID_ARG_TYPE'));
  assert.equal(fn.stats().opened, 0);
});

test('pipe() with something that is neither a function nor a stream function -> TypeError', () => {
  assert.throws(() => streamFn(echo).pipe(5), is(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

test('open(signal) instead of open({ signal }), and built-ins as options or config -> TypeError, nothing opened', async () => {
  const fn = streamFn(echo);
  const { signal } = new AbortController();
  const builtIns = [signal, new Map([['signal', signal]]), new Set(), new Date(), Promise.resolve(), /x/, new Error('e')];
  for (const bad of builtIns) {
    assert.throws(() => fn.open(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'options'), String(bad));
    await assert.rejects(fn.run([1], bad), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'options'), String(bad));
    assert.throws(() => fn.pipe(echo).open(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'options'), String(bad));
  }
  assert.throws(
    () => fn.open(signal),
    (e) => e.message.includes('{ signal }'),
  );
  for (const bad of [new Map([['buffer', 1]]), signal, new Date()]) {
    assert.throws(() => streamFn(echo, bad), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'config'), String(bad));
    assert.throws(() => fn.sessions(bad), is(TypeError, 'ERR_INVALID_ARG_TYPE', 'config'), String(bad));
  }
  assert.equal(fn.stats().opened, 0);
  // Options objects of other shapes still work: no prototype, a class instance.
  const bare = Object.assign(Object.create(null), { buffer: 3 });
  assert.equal(streamFn(echo, bare).config.buffer, 3);
  class Options {
    signal = signal;
  }
  await fn.open(new Options()).cancel();
});

test('an unknown option of task(), batch() or workerFn() is refused naming every option that entry point knows, its own first', () => {
  const known = (own) =>
    new RegExp(
      `^Unknown option "typo"\\. Known options: ${[...own, 'buffer', 'idleTimeout', 'maxConcurrent', 'name'].join(', ')}$`,
    );
  const code = (own) => (e) => e.code === 'ERR_INVALID_ARG_VALUE' && known(own).test(e.message);
  assert.throws(() => task(echoItem, { typo: 1 }), code(['concurrency', 'ordered', 'retry', 'onError', 'limiter']));
  assert.throws(
    () => batch(echoItem, { maxSize: 2, typo: 1 }),
    code(['concurrency', 'ordered', 'retry', 'onError', 'limiter', 'maxSize', 'minSize', 'maxWait']),
  );
  assert.throws(
    () => workerFn(WORKER_MODULE, { typo: 1 }),
    code(['threads', 'export', 'transfer', 'resourceLimits', 'loadTimeout', 'threadIdleTimeout']),
  );
});

test("workerFn's resourceLimits are checked at the call: an options object of new Worker()'s four fields, each a positive number", () => {
  const refused = (resourceLimits, code) =>
    assert.throws(
      () => workerFn(WORKER_MODULE, { resourceLimits }),
      (e) => e.code === code,
      JSON.stringify(resourceLimits),
    );
  refused({ bogus: 1 }, 'ERR_INVALID_ARG_VALUE');
  refused({ maxOldGenerationSizeMb: -1 }, 'ERR_OUT_OF_RANGE');
  refused({ maxOldGenerationSizeMb: 0 }, 'ERR_OUT_OF_RANGE');
  refused({ stackSizeMb: 'x' }, 'ERR_OUT_OF_RANGE');
  refused({ codeRangeSizeMb: NaN }, 'ERR_OUT_OF_RANGE');
  refused([], 'ERR_INVALID_ARG_TYPE');
  refused(5, 'ERR_INVALID_ARG_TYPE');
  // Inherited fields too: new Worker() reads them.
  refused(Object.create({ maxOldGenerationSizeMb: -5 }), 'ERR_OUT_OF_RANGE');
  const valid = { resourceLimits: { maxOldGenerationSizeMb: 64, stackSizeMb: 4, maxYoungGenerationSizeMb: undefined } };
  if (typeof process.versions.bun === 'string') {
    // Bun's Worker ignores resourceLimits: valid ones are refused there, after the checks above (docs/runtimes.md).
    assert.throws(
      () => workerFn(WORKER_MODULE, valid),
      (e) => e.code === 'ERR_VELO_RUNTIME_UNSUPPORTED' && /Bun/.test(e.message),
    );
    return undefined;
  }
  return workerFn(WORKER_MODULE, valid).close();
});

test('a revoked Proxy as a config or options object is refused with a code, as any object that is not an options object', async () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  const refusal = (e) => e.code === 'ERR_INVALID_ARG_TYPE' && /revoked Proxy/.test(e.message);
  assert.throws(() => streamFn(echo, proxy), refusal);
  assert.throws(() => task(echoItem, proxy), refusal);
  assert.throws(() => workerFn(WORKER_MODULE, proxy), refusal);
  assert.throws(() => streamFn(echo).open(proxy), refusal);
});

test("a handler, a pipe stage, a module, a signal or metrics arguments that cannot be read are ERR_INVALID_ARG_TYPE, the trap's error as cause", async () => {
  const { Registry } = await import('prom-client');
  const { registerStreamMetrics } = await import('velo-stream/prometheus');
  const trapped = () => {
    const error = new Error('trap');
    const proxy = new Proxy(
      {},
      {
        get() {
          throw error;
        },
        has() {
          throw error;
        },
        getPrototypeOf() {
          throw error;
        },
        ownKeys() {
          throw error;
        },
      },
    );
    return { proxy, error };
  };
  const fn = streamFn(echo);
  const calls = [
    ['streamFn(handler)', (p) => streamFn(p)],
    ['pipe(next)', (p) => fn.pipe(p)],
    ['workerFn(module)', (p) => workerFn(p)],
    ['open({ signal })', (p) => fn.open({ signal: p })],
    ['registerStreamMetrics(registry)', (p) => registerStreamMetrics(p, [fn])],
    ['registerStreamMetrics(fns)', (p) => registerStreamMetrics(new Registry(), p)],
    ['registerStreamMetrics(opts)', (p) => registerStreamMetrics(new Registry(), [fn], p)],
  ];
  for (const [what, call] of calls) {
    const { proxy, error } = trapped();
    assert.throws(
      () => call(proxy),
      (e) => e.code === 'ERR_INVALID_ARG_TYPE' && e.cause === error,
      what,
    );
  }
  assert.equal(fn.stats().opened, 0);
});

test("options given as a Proxy whose every get throws are ERR_INVALID_ARG_TYPE, the trap's error as cause", async () => {
  const error = new Error('trap');
  const options = new Proxy(
    {},
    {
      get() {
        throw error;
      },
    },
  );
  const fn = streamFn(echo);
  for (const [what, call] of [
    ['streamFn', () => streamFn(echo, options)],
    ['workerFn', () => workerFn(WORKER_MODULE, options)],
    ['open', () => fn.open(options)],
  ]) {
    assert.throws(call, (e) => e.code === 'ERR_INVALID_ARG_TYPE' && e.cause === error, what);
  }
  await assert.rejects(fn.run([1], options), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && e.cause === error);
  assert.equal(fn.stats().opened, 0);
});

test('options whose getter throws, or a Proxy whose trap throws, are ERR_INVALID_ARG_TYPE with that error as cause, at every entry point; nothing opened', async () => {
  const thrown = new Error('getter failed');
  const getter = (key) =>
    Object.defineProperty({}, key, {
      enumerable: true,
      get: () => {
        throw thrown;
      },
    });
  const trap = () =>
    new Proxy(
      {},
      {
        ownKeys: () => {
          throw thrown;
        },
      },
    );
  const fn = streamFn(echo);
  for (const make of [() => getter('buffer'), () => getter('idleTimeout'), trap]) {
    const calls = {
      streamFn: () => streamFn(echo, make()),
      'streamFn limiter': () => streamFn(echo, getter('limiter')),
      task: () => task(echoItem, make()),
      'task retry': () => task(echoItem, { retry: getter('attempts') }),
      batch: () => batch(echoItem, Object.assign(make(), {})),
      sessions: () => fn.sessions(make()),
      'sessions traceKeys': () => fn.sessions(getter('traceKeys')),
      open: () => fn.open(getter('signal')),
      'open trap': () => fn.open(trap()),
      workerFn: () => workerFn(WORKER_MODULE, getter('threads')),
    };
    for (const [what, call] of Object.entries(calls)) {
      assert.throws(
        call,
        (e) => e.code === 'ERR_INVALID_ARG_TYPE' && e.cause === thrown && /could not be read/.test(e.message),
        what,
      );
    }
    await assert.rejects(fn.run([1], getter('key')), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && e.cause === thrown);
  }
  assert.equal(fn.stats().opened, 0);
});

test('the HTTP writers refuse a res, outputs or options that cannot be read, or a res without on(), with a code', async () => {
  const { sendNdjson, sendSse, toReadable } = await import('velo-stream/http');
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const thrown = new Error('getter failed');
  const throwingEvent = {
    get event() {
      throw thrown;
    },
  };
  const fakeRes = { write() {}, setHeader() {}, on() {}, once() {}, off() {}, end() {} };
  const refusal = (e) => e.code === 'ERR_INVALID_ARG_TYPE';
  const none = async function* () {};
  await assert.rejects(sendNdjson(revoked, none()), refusal, 'a revoked res');
  await assert.rejects(sendSse({ write() {}, setHeader() {} }, none()), refusal, 'a res without on()');
  await assert.rejects(sendNdjson(fakeRes, revoked), refusal, 'revoked outputs');
  assert.throws(() => toReadable(revoked, 'ndjson'), refusal, 'toReadable of revoked outputs');
  const stream = streamFn(echo).open();
  assert.throws(
    () => toReadable(stream, 'sse', throwingEvent),
    (e) => refusal(e) && e.cause === thrown && /could not be read/.test(e.message),
    'an option whose getter throws',
  );
  await stream.cancel();
});

test('an argument whose getter, iterator or Proxy trap throws: ERR_INVALID_ARG_TYPE with its error as cause (streamFn, dashboard, registerStreamMetrics)', async () => {
  const { dashboard } = await import('velo-stream/dashboard');
  const { registerStreamMetrics } = await import('velo-stream/prometheus');
  const { Registry } = await import('prom-client');
  const thrown = new Error('trap');
  const trap = () => {
    throw thrown;
  };
  const handler = new Proxy(echo, { get: trap });
  const cases = {
    'streamFn(a Proxy handler)': () => streamFn(handler),
    'dashboard(a Proxy)': () => dashboard(new Proxy({}, { get: trap, ownKeys: trap })),
    'dashboard(a throwing getter)': () =>
      dashboard({
        get functions() {
          return trap();
        },
      }),
    'registerStreamMetrics(an iterator that throws)': () => registerStreamMetrics(new Registry(), { [Symbol.iterator]: trap }),
  };
  for (const [what, call] of Object.entries(cases))
    assert.throws(
      call,
      (e) => e.code === 'ERR_INVALID_ARG_TYPE' && (e.cause === thrown || /must be an options object/.test(e.message)),
      what,
    );
});
