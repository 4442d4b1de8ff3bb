// workerFn: stream functions whose handler runs on worker threads. Values
// crossing, order, placement, backpressure both ways, end/cancel/break/abort,
// idle timeout, limits, errors with their class and code, bad modules, thread
// crashes, process exit, GC, pipes and sessions, and a random stress with a
// leak check of the native lane pairs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamClosedError, StreamLimitError, WorkerCrashedError, streamFn, workerFn } from 'velo-stream';
import { collect } from './helpers/util.mjs';
import { run } from './helpers/child.mjs';

const require = createRequire(import.meta.url);
const { addon } = require('../dist/addon/addon.js');
const HANDLERS = new URL('./fixtures/worker-handlers.mjs', import.meta.url);
const handlers = (name, config = {}) => workerFn(HANDLERS, { export: name, threads: 2, ...config });

/** Messages a handler posts on a fresh BroadcastChannel; `next(pred)` waits for one that matches. */
function channel() {
  const name = `velo-test-${Math.random()}`;
  const bc = new BroadcastChannel(name);
  const seen = [];
  let waiter = null;
  bc.onmessage = ({ data }) => {
    seen.push(data);
    if (waiter && waiter.pred(data)) {
      const w = waiter;
      waiter = null;
      w.resolve(data);
    }
  };
  return {
    name,
    seen,
    next(pred) {
      const found = seen.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => (waiter = { pred, resolve }));
    },
    close: () => bc.close(),
  };
}

/** Waits until no lane pair is left open (the caller and the worker each release theirs). */
async function noPairsLeft() {
  for (let i = 0; i < 200 && addon.crossOpenPairs() > 0; i++) await sleep(10);
  assert.equal(addon.crossOpenPairs(), 0, 'lane pairs left open');
}

test('run() returns the handler outputs in order, the handler state lives on the thread, and stats count the stream', async () => {
  const fn = workerFn(HANDLERS, { threads: 1 });
  assert.deepEqual(await fn.run([1, 2, 3]), [2, 4, 6, { count: 3 }]);
  const n = 50_000;
  const out = await fn.run(Array.from({ length: n }, (_, i) => i));
  assert.equal(out.length, n + 1);
  for (let i = 0; i < n; i++) assert.equal(out[i], 2 * i);
  assert.deepEqual(out[n], { count: n });
  assert.deepEqual(fn.stats(), { open: 0, opened: 2, completed: 2, failed: 0, cancelled: 0, rejected: 0 });
  assert.equal(fn.name, 'worker-handlers.mjs');
  await noPairsLeft();
});

test('values cross by structured clone: Maps, Sets, Dates, RegExps, typed arrays, Buffers, nested objects, errors; identity is not kept', async () => {
  const fn = handlers('echo');
  const shared = { deep: [1, { x: 'y' }] };
  const values = [
    new Map([['a', 1]]),
    new Set([1, 2]),
    new Date(86_400_000),
    /ab+c/gi,
    new Float32Array([1.5, 2.5]),
    Buffer.from('hello'),
    { nested: shared, again: shared, big: 10n, nil: null, undef: undefined },
    new RangeError('as a value'),
    'text',
    -0,
    NaN,
    true,
  ];
  const out = await fn.run(values);
  assert.equal(out.length, values.length);
  assert.deepEqual(out[0], values[0]);
  assert.deepEqual(out[1], values[1]);
  assert.equal(out[2].getTime(), 86_400_000);
  assert.equal(out[3].source, 'ab+c');
  assert.equal(out[3].flags, 'gi');
  assert.deepEqual([...out[4]], [1.5, 2.5]);
  assert.ok(out[4] instanceof Float32Array);
  assert.ok(Buffer.isBuffer(out[5]));
  assert.equal(out[5].toString(), 'hello');
  assert.notEqual(out[6], values[6]);
  assert.equal(out[6].nested, out[6].again, 'shared references within one value stay shared');
  assert.equal(out[6].big, 10n);
  assert.ok('undef' in out[6]);
  assert.ok(out[7] instanceof RangeError);
  assert.equal(out[7].message, 'as a value');
  assert.deepEqual(out.slice(8, 12), ['text', -0, NaN, true]);
  assert.ok(Object.is(out[9], -0));
  // Numbers only (the fast format) keep -0, NaN and infinities exactly.
  assert.deepEqual(await fn.run([-0, NaN, Infinity, -Infinity, 2 ** 53, 5e-324]), [
    -0,
    NaN,
    Infinity,
    -Infinity,
    2 ** 53,
    5e-324,
  ]);
});

test('typed arrays and Buffers of any size and alignment cross intact; large ones travel beside the batch, and the sender keeps its own', async () => {
  const fn = handlers('echo', { threads: 1 });
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  const floats = new Float64Array(100_000).map((_, i) => i / 3);
  const backing = new ArrayBuffer(300_000);
  const offsetView = new Uint16Array(backing, 2, 100_000); // large, at an offset within a larger buffer
  offsetView.fill(513);
  const smallOdd = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]).subarray(1); // small, odd offset
  const values = [
    big,
    { frame: floats, meta: 'f' },
    offsetView,
    smallOdd,
    new Int32Array([-1, 2]),
    new DataView(new ArrayBuffer(70_000)),
    new BigInt64Array([-5n]),
  ];
  const out = await fn.run(values);
  assert.ok(Buffer.isBuffer(out[0]));
  assert.ok(out[0].equals(big));
  assert.ok(out[1].frame instanceof Float64Array);
  assert.deepEqual(out[1].frame, floats);
  assert.ok(out[2] instanceof Uint16Array);
  assert.equal(out[2].length, 100_000);
  assert.ok(out[2].every((x) => x === 513));
  assert.deepEqual([...out[3]], [2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([...out[4]], [-1, 2]);
  assert.ok(out[5] instanceof DataView);
  assert.equal(out[5].byteLength, 70_000);
  assert.deepEqual([...out[6]], [-5n]);
  // Copied, not moved: the sender's arrays are untouched.
  assert.equal(big.length, 1 << 20);
  assert.equal(floats[3], 1);
});

test('transfer: true moves large whole ArrayBuffers both ways (the sender ones are detached) and copies the rest; order and values are kept', async () => {
  const fn = handlers('echo', { threads: 1, transfer: true });
  const s = fn.open();
  const sent = [];
  for (let i = 0; i < 20; i++) {
    const big = Buffer.alloc(100_000, i); // whole buffer, large: moved
    const part = new Uint8Array(200_000).subarray(8); // not its whole buffer: copied
    const small = new Float64Array([i]); // small: copied
    sent.push({ big, part, small });
    await s.send({ i, big, part, small });
  }
  await s.end();
  const out = await collect(s);
  assert.equal(out.length, 20);
  out.forEach((o, i) => {
    assert.equal(o.i, i);
    assert.ok(Buffer.isBuffer(o.big));
    assert.equal(o.big.length, 100_000);
    assert.ok(o.big.every((b) => b === i));
    assert.equal(o.part.length, 199_992);
    assert.equal(o.small[0], i);
  });
  for (const { big, part, small } of sent) {
    assert.equal(big.byteLength, 0, 'moved: detached at the sender');
    assert.equal(part.byteLength, 199_992, 'copied: the sender keeps it');
    assert.equal(small.length, 1);
  }
  assert.throws(() => handlers('echo', { transfer: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  await noPairsLeft();
});

test('a CommonJS module serves too, by its module.exports', async () => {
  const fn = workerFn(new URL('./fixtures/worker-cjs.cjs', import.meta.url), { threads: 1 });
  assert.deepEqual(await fn.run([1, 2]), [2, 3]);
  // A path (absolute, or relative to the working directory) names the module as a URL does.
  assert.deepEqual(
    await workerFn(fileURLToPath(new URL('./fixtures/worker-cjs.cjs', import.meta.url)), { threads: 1 }).run([5]),
    [6],
  );
});

test("TypeScript's CommonJS output serves by its default export (exports.default) and by name", async () => {
  const module = new URL('./fixtures/worker-ts-cjs.cjs', import.meta.url);
  assert.deepEqual(await workerFn(module, { threads: 1 }).run([1, 2]), [2, 3]);
  assert.deepEqual(await workerFn(module, { threads: 1, export: 'doubled' }).run([1, 2]), [2, 4]);
  await assert.rejects(workerFn(module, { threads: 1, export: 'none' }).run([1]), { code: 'ERR_VELO_WORKER_MODULE' });
});

test('a cancelled handler that has not finished keeps its thread busy: new streams go to another', async () => {
  const fn = handlers('spinner', { threads: 2 });
  try {
    const a = fn.open();
    await a.send({ spin: 1000 });
    const { spinning } = await a.recv();
    // The handler now loops without an await: the cancel cannot stop it, and its thread is taken until it ends.
    await a.cancel();
    for (let i = 0; i < 3; i++) {
      const [{ threadId }] = await fn.run([{}]);
      assert.notEqual(threadId, spinning, `run ${i} went to the thread of the cancelled handler still running`);
    }
  } finally {
    await fn.close();
  }
});

test('a thread held by a cancelled handler that never ends is stopped: its streams fail, the next gets a new thread', async () => {
  const fn = handlers('spinner', { threads: 1 });
  try {
    const a = fn.open();
    // (A loop of a minute: for the caller, one that never ends.)
    await a.send({ spin: 60_000 });
    const { spinning } = await a.recv();
    // (Its loop begins 20 ms after that output.)
    await new Promise((resolve) => setTimeout(resolve, 200));
    await a.cancel();
    // The only thread: the stream goes there, and waits until the thread is found held and stopped.
    await assert.rejects(fn.run([{}]), (error) => {
      assert.equal(error.code, 'ERR_VELO_WORKER_CRASHED');
      assert.match(error.message, /did not answer .* \(a loop without an await\): the thread was stopped/);
      return true;
    });
    const [{ threadId }] = await fn.run([{}]);
    assert.notEqual(threadId, spinning);
    assert.deepEqual(fn.stats(), { open: 0, opened: 3, completed: 1, failed: 1, cancelled: 1, rejected: 0 });
  } finally {
    await fn.close();
  }
});

test('a thread whose cancelled handler waits for ever, its event loop running, is kept: its streams go on', async () => {
  const fn = handlers('lingering', { threads: 1 });
  try {
    const a = fn.open();
    await a.send({ linger: true });
    const { lingering } = await a.recv();
    await a.cancel();
    const b = fn.open();
    await b.send({});
    assert.deepEqual(await b.recv(), { threadId: lingering });
    // Past the time a held thread has to answer (twice 5 s): this one answered, and still serves.
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    await b.send({});
    assert.deepEqual(await b.recv(), { threadId: lingering });
    await b.end();
    assert.deepEqual(await fn.run([{}]), [{ threadId: lingering }]);
  } finally {
    await fn.close();
  }
});

test('a thread with a cancelled handler still running ranks after a thread as busy: a new stream goes to the other', async () => {
  const fn = handlers('spinner', { threads: 2 });
  try {
    const a = fn.open();
    await a.send({ spin: 1500 });
    const { spinning } = await a.recv();
    await a.cancel();
    // The other thread hosts a stream of its own: both threads have one handler running.
    const b = fn.open();
    await b.send({});
    const { threadId: other } = await b.recv();
    assert.notEqual(other, spinning);
    assert.deepEqual(fn[Symbol.for('velo-stream.threads')]().loads, [1, 1], 'one handler running on each thread');
    const c = fn.open();
    await c.send({});
    const { threadId } = await c.recv();
    assert.equal(threadId, other, 'the new stream went to the thread of the cancelled handler still running');
    await b.end();
    await c.end();
  } finally {
    await fn.close();
  }
});

test('each stream stays on one thread; streams spread over the threads, least loaded first, and threads are reused', async () => {
  const fn = handlers('where', { threads: 2 });
  const a = fn.open();
  const b = fn.open();
  const c = fn.open();
  const seen = [];
  for (const s of [a, b, c]) {
    for (let i = 0; i < 5; i++) await s.send(i);
    await s.end();
    const out = await collect(s);
    assert.equal(out.length, 5);
    assert.equal(new Set(out.map((o) => o.threadId)).size, 1, 'one thread per stream');
    seen.push(out[0].threadId);
  }
  assert.notEqual(seen[0], seen[1], 'the second stream went to the second thread');
  assert.equal(new Set(seen).size, 2, 'no third thread beyond threads: 2');
  assert.ok(!seen.includes(0), 'not the main thread');
});

test('live: send/recv one at a time, outputs come while the stream is open', async () => {
  const fn = workerFn(HANDLERS, { threads: 1 });
  const s = fn.open();
  for (let i = 0; i < 200; i++) {
    await s.send(i);
    assert.equal(await s.recv(), 2 * i);
  }
  await s.end();
  assert.deepEqual(await s.recv(), { count: 200 });
  await assert.rejects(s.recv(), StreamClosedError);
  assert.equal(s.state, 'done');
});

test('backpressure from the worker: a handler that yields forever stops at a bound while nobody reads', async () => {
  const ch = channel();
  const fn = handlers('endless', { buffer: 8 });
  const s = fn.open();
  await s.send(ch.name);
  await ch.next((m) => m.produced === 0);
  // Let it run as far as it can.
  let last = -1;
  for (;;) {
    await sleep(50);
    const produced = Math.max(...ch.seen.filter((m) => 'produced' in m).map((m) => m.produced));
    if (produced === last) break;
    last = produced;
  }
  // The caller's output buffer (8), a batch taken from the lane and being
  // emitted, two in the lane and one held back by the worker (8 each), and
  // the value of the yield waiting for room.
  assert.ok(last <= 8 + 4 * 8 + 1, `produced ${last} without a reader`);
  // Reading makes it go on, in order.
  const got = [];
  for (let i = 0; i < 100; i++) got.push(await s.recv());
  assert.deepEqual(
    got,
    Array.from({ length: 100 }, (_, i) => i),
  );
  await s.cancel();
  await ch.next((m) => m.finally);
  assert.ok(
    ch.seen.some((m) => m.aborted),
    'ctx.signal aborted on the worker',
  );
  ch.close();
  await noPairsLeft();
});

test('backpressure to the sender: send() waits while the worker does not read', async () => {
  const fn = handlers('slow', { buffer: 4, threads: 1 });
  const s = fn.open();
  // The handler sleeps 10 s on its first event: nothing else is read.
  await s.send(10_000);
  let accepted = 0;
  let blocked = false;
  for (let i = 0; i < 100; i++) {
    const sent = s.send(1);
    const settledNow = await Promise.race([sent.then(() => true), sleep(100).then(() => false)]);
    if (!settledNow) {
      blocked = true;
      break;
    }
    accepted++;
  }
  assert.ok(blocked, 'a send waited');
  // The caller's buffer (4), a batch held back, two in the lane and one
  // taken by the worker (4 each).
  assert.ok(accepted <= 4 + 4 * 4 + 1, `accepted ${accepted} events while the worker read none`);
  await s.cancel();
  await noPairsLeft();
});

test('cancel, break and an abort signal stop the handler on its thread (its read throws, finally runs, ctx.signal aborts)', async () => {
  const fn = handlers('reporter');
  // cancel()
  {
    const ch = channel();
    const s = fn.open();
    await s.send(ch.name);
    await s.send('a');
    assert.equal(await s.recv(), 'a');
    await s.cancel(new Error('enough'));
    assert.equal(s.state, 'cancelled');
    await ch.next((m) => m.finally);
    assert.ok(ch.seen.some((m) => m.aborted));
    // Its parked read threw, as in-process: its code after the loop did not run.
    assert.ok(
      ch.seen.some((m) => m.threw === 'ERR_VELO_STREAM_CLOSED' && m.cause === 'enough'),
      JSON.stringify(ch.seen),
    );
    assert.ok(!ch.seen.some((m) => m.ended), 'no end of input after a cancel');
    ch.close();
  }
  // break out of for await
  {
    const ch = channel();
    const s = fn.open();
    await s.send(ch.name);
    for (let i = 0; i < 5; i++) await s.send(i);
    for await (const v of s) if (v === 2) break;
    assert.equal(s.state, 'cancelled');
    await ch.next((m) => m.finally);
    assert.ok(!ch.seen.some((m) => m.ended), 'no end of input after a break');
    ch.close();
  }
  // an abort signal at open
  {
    const ch = channel();
    const ac = new AbortController();
    const s = fn.open({ signal: ac.signal });
    await s.send(ch.name);
    await s.send('a');
    // The handler has read its channel's name (an abort before that drops it with the queued input).
    assert.equal(await s.recv(), 'a');
    ac.abort(new Error('aborted by the caller'));
    await ch.next((m) => m.finally);
    assert.equal(s.state, 'cancelled');
    ch.close();
  }
  assert.equal(fn.stats().cancelled, 3);
  await noPairsLeft();
});

test('end(): the handler reads everything sent, then its loop ends; a handler that stops reading early refuses later sends', async () => {
  const fn = handlers('takeTwo', { threads: 1 });
  const s = fn.open();
  await s.send('a');
  await s.send('b');
  assert.deepEqual(await s.recv(), ['a', 'b']);
  await assert.rejects(s.recv(), StreamClosedError);
  assert.equal(s.state, 'done');
  await assert.rejects(s.send('c'), StreamClosedError);
  await noPairsLeft();
});

test('idle timeout ends the input on the caller side; the handler finishes with what it read', async () => {
  const fn = workerFn(HANDLERS, { threads: 1, idleTimeout: 50 });
  const s = fn.open();
  await s.send(1);
  const out = await collect(s);
  assert.deepEqual(out, [2, { count: 1 }]);
  assert.equal(s.state, 'done');
});

test('maxConcurrent limits worker streams as any others', async () => {
  const fn = workerFn(HANDLERS, { threads: 1, maxConcurrent: 2 });
  const a = fn.open();
  const b = fn.open();
  assert.throws(() => fn.open(), StreamLimitError);
  await a.cancel();
  const c = fn.open();
  await b.cancel();
  await c.cancel();
  assert.equal(fn.stats().rejected, 1);
});

test("a handler's error reaches the caller with its class name, message, stack and code; outputs before it arrive first", async () => {
  const fn = handlers('failing');
  const s = fn.open();
  await s.send('ok');
  await s.send('fail');
  assert.equal(await s.recv(), 'ok');
  const error = await s.recv().then(
    () => assert.fail('no error'),
    (e) => e,
  );
  assert.equal(error.name, 'QuotaError');
  assert.equal(error.message, 'over quota');
  assert.equal(error.code, 'E_QUOTA');
  assert.match(error.stack, /worker-handlers\.mjs/);
  assert.equal(s.state, 'failed');
  const range = await handlers('failing')
    .run(['range'])
    .catch((e) => e);
  assert.ok(range instanceof RangeError);
  assert.equal(range.message, 'out of range');
  assert.equal(fn.stats().failed, 1);
});

test('what a worker handler throws arrives as in-process: a value as its clone, causes and aggregated errors rebuilt', async () => {
  const thrown = async (event) =>
    handlers('failing')
      .run([event])
      .then(
        () => assert.fail('no error'),
        (e) => e,
      );
  // A thrown value that is not an error is its clone, as the same handler in-process would throw it.
  assert.equal(await thrown('string'), 'just a string');
  assert.deepEqual(await thrown('object'), { code: 'E_PLAIN', message: 'a plain object', at: [1, 2] });
  // One the clone algorithm refuses: a DataCloneError that says what was thrown.
  const fn = await thrown('function');
  assert.equal(fn.name, 'DataCloneError');
  assert.equal(fn.code, 'ERR_VELO_DATA_CLONE');
  assert.match(fn.message, /a function/);
  const aggregate = await thrown('aggregate');
  assert.ok(aggregate instanceof AggregateError);
  assert.equal(aggregate.message, 'both failed');
  assert.equal(aggregate.errors.length, 2);
  assert.equal(aggregate.errors[0].name, 'QuotaError');
  assert.equal(aggregate.errors[0].code, 'E_QUOTA');
  assert.ok(aggregate.errors[1] instanceof RangeError);
  const caused = await thrown('cause');
  assert.equal(caused.message, 'outer');
  assert.ok(caused.cause instanceof TypeError);
  assert.equal(caused.cause.message, 'inner');
  assert.equal(caused.cause.code, 'E_INNER');
});

test('a value the clone format refuses fails the stream with a DataCloneError, input or output', async () => {
  const inErr = await handlers('echo')
    .run([1, () => {}])
    .catch((e) => e);
  assert.equal(inErr.name, 'DataCloneError');
  // A string code, as every error of the library has (DOMException's own is the number 25).
  assert.equal(inErr.code, 'ERR_VELO_DATA_CLONE');
  const outErr = await handlers('badOutput')
    .run(['ok', 'bad'])
    .catch((e) => e);
  assert.equal(outErr.name, 'DataCloneError');
  assert.equal(outErr.code, 'ERR_VELO_DATA_CLONE');
  await noPairsLeft();
});

test('bad modules: a missing file throws at workerFn; a missing export, a non-generator export and a module that throws fail the first stream, each with code ERR_VELO_WORKER_MODULE', async () => {
  assert.throws(() => workerFn(new URL('./fixtures/no-such-file.mjs', import.meta.url)), {
    code: 'ERR_VELO_WORKER_MODULE',
    message: /no-such-file\.mjs/,
  });
  assert.throws(() => workerFn(42), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => workerFn(HANDLERS, { threads: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => workerFn(HANDLERS, { export: '' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => workerFn(HANDLERS, { bogus: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  for (const [fn, pattern] of [
    [handlers('nope'), /no export "nope"/],
    [handlers('notAFunction'), /no export "notAFunction" that is a function/],
    [handlers('notGenerator'), /must be an async generator function/],
    [workerFn(new URL('./fixtures/worker-throws-on-load.mjs', import.meta.url), { threads: 1 }), /refuses to load/],
  ]) {
    const error = await fn.run([1]).catch((e) => e);
    assert.equal(error.code, 'ERR_VELO_WORKER_MODULE', String(error));
    assert.match(error.message, pattern);
    // The thread survives: the next stream fails the same way, promptly.
    assert.equal((await fn.run([1]).catch((e) => e)).code, 'ERR_VELO_WORKER_MODULE');
  }
  await noPairsLeft();
});

test('a thread that exits or throws an uncaught error fails exactly the streams it hosted, and is replaced', async () => {
  for (const how of ['exit', 'throw']) {
    const fn = handlers('crash', { threads: 2 });
    const a = fn.open();
    const b = fn.open();
    await a.send(1);
    await b.send(1);
    const ta = (await a.recv()).threadId;
    const tb = (await b.recv()).threadId;
    assert.notEqual(ta, tb);
    await a.send(how);
    const error = await a
      .recv()
      .then(
        () => a.recv(),
        (e) => e,
      )
      .catch((e) => e);
    assert.ok(error instanceof WorkerCrashedError, String(error));
    assert.equal(error.code, 'ERR_VELO_WORKER_CRASHED');
    assert.match(error.message, how === 'exit' ? /exited with code 7/ : /uncaught on the worker/);
    assert.equal(a.state, 'failed');
    await assert.rejects(a.send(2), StreamClosedError);
    // The other thread's stream goes on.
    await b.send(2);
    assert.deepEqual((await b.recv()).e, 2);
    // A new stream gets a new thread.
    const c = fn.open();
    await c.send(3);
    const tc = (await c.recv()).threadId;
    assert.ok(tc !== ta);
    await b.end();
    await c.end();
    await collect(b);
    await collect(c);
  }
  await noPairsLeft();
});

test('a thread that runs out of memory (resourceLimits) fails its streams with WorkerCrashedError, and the function goes on with a new thread', async () => {
  if (typeof process.versions.bun === 'string') {
    // Bun's Worker ignores resourceLimits (the thread would never run out of memory): they are refused (docs/runtimes.md).
    assert.throws(() => handlers('hog', { threads: 1, resourceLimits: { maxOldGenerationSizeMb: 48 } }), {
      code: 'ERR_VELO_RUNTIME_UNSUPPORTED',
    });
    assert.throws(() => handlers('hog', { resourceLimits: 5 }), { code: 'ERR_INVALID_ARG_TYPE' });
    return;
  }
  const fn = handlers('hog', { threads: 1, resourceLimits: { maxOldGenerationSizeMb: 48 } });
  const error = await fn.run(Array.from({ length: 200 }, (_, i) => i)).catch((e) => e);
  assert.ok(error instanceof WorkerCrashedError, String(error));
  assert.match(error.message, /memory/i);
  assert.deepEqual(await fn.run([1]), [16]);
  assert.throws(() => handlers('hog', { resourceLimits: 5 }), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('metrics count a worker stream on the caller side', async () => {
  const fn = workerFn(HANDLERS, { threads: 1 });
  const s = fn.open();
  for (let i = 0; i < 10; i++) await s.send(i);
  await s.end();
  await collect(s);
  assert.equal(s.metrics.eventsIn, 10);
  assert.equal(s.metrics.eventsOut, 11);
});

test('worker threads never keep the process alive; a read waiting for a worker does', async () => {
  const url = HANDLERS.href;
  const { stdout } = await run(
    [
      '--input-type=module',
      '-e',
      `
      import { workerFn } from 'velo-stream';
      const fn = workerFn(new URL(${JSON.stringify(url)}), { export: 'slow', threads: 2 });
      const idle = fn.open(); // left open, never used
      const s = fn.open();
      await s.send(300);
      // Only the worker is busy here: the waiting read must keep the process alive.
      console.log('got', await s.recv());
    `,
    ],
    { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 30_000 },
  );
  assert.equal(stdout.trim(), 'got 300');
});

test(
  'GC: a read waiting on a worker stream nobody else holds still resolves; an abandoned stream is collected and its handler stopped',
  { skip: typeof globalThis.gc !== 'function' && 'needs --expose-gc' },
  async () => {
    const fn = handlers('slow', { threads: 1, idleTimeout: 0 });
    const pending = (() => {
      const s = fn.open();
      void s.send(200);
      return s.recv();
    })();
    for (let i = 0; i < 5; i++) {
      globalThis.gc();
      await sleep(20);
    }
    assert.equal(await pending, 200);

    const ch = channel();
    const rfn = handlers('reporter', { threads: 1, idleTimeout: 0 });
    await (async () => {
      const s = rfn.open();
      await s.send(ch.name);
      await s.send('x');
      assert.equal(await s.recv(), 'x');
    })();
    for (let i = 0; i < 50 && !ch.seen.some((m) => m.finally); i++) {
      globalThis.gc();
      await sleep(20);
    }
    assert.ok(
      ch.seen.some((m) => m.finally),
      'the abandoned stream was stopped on its thread',
    );
    ch.close();
    await noPairsLeft();
  },
);

test('pipes mix in-process and worker stages; sessions, feed and duplex-style use work unchanged', async () => {
  const inc = streamFn(async function* (events) {
    for await (const e of events) yield e + 1;
  });
  const doubler = workerFn(HANDLERS, { threads: 2 });
  const echo = handlers('echo');
  const piped = inc.pipe(echo).pipe(doubler);
  assert.deepEqual(await piped.run([1, 2, 3]), [4, 6, 8, { count: 3 }]);
  // feed
  const s = echo.open();
  assert.deepEqual(await collect(s.feed(['a', 'b'])), ['a', 'b']);
  // sessions: one stream per key
  const sessions = handlers('echo').sessions();
  await sessions.send('k1', 1);
  await sessions.send('k2', 2);
  await sessions.send('k1', 3);
  await sessions.close();
  const got = await collect(sessions);
  assert.deepEqual(got.map((x) => [x.key, x.value]).sort(), [
    ['k1', 1],
    ['k1', 3],
    ['k2', 2],
  ]);
});

test('random stress: many streams over three threads with random sends, ends, cancels and breaks; every output exact and no lane pair leaks', async () => {
  const fn = workerFn(HANDLERS, { threads: 3, buffer: 4 });
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const jobs = [];
  for (let k = 0; k < 150; k++) {
    const n = rand(200);
    const mode = rand(3);
    jobs.push(
      (async () => {
        const s = fn.open();
        const inputs = Array.from({ length: n }, (_, i) => i);
        if (mode === 0) {
          const out = await collect(s.feed(inputs));
          assert.deepEqual(out, [...inputs.map((i) => 2 * i), { count: n }]);
        } else if (mode === 1) {
          // Read some outputs, then leave (a cancel), while a sender goes on.
          const sending = (async () => {
            for (const i of inputs) await s.send(i);
            await s.end();
          })().catch((e) => assert.ok(e instanceof StreamClosedError, String(e)));
          const stopAt = 1 + rand(n + 1);
          let seen = 0;
          for await (const v of s) {
            if (seen < n) assert.equal(v, 2 * seen);
            if (++seen >= stopAt) break;
          }
          await sending;
        } else {
          // Sends in flight (some wait for room), then a cancel: every send settles.
          const sends = inputs.map((i) =>
            s.send(i).then(
              () => 'sent',
              (e) => assert.ok(e instanceof StreamClosedError, String(e)),
            ),
          );
          for (let t = rand(5); t > 0; t--) await sleep(1);
          await s.cancel();
          await Promise.all(sends);
        }
      })(),
    );
  }
  await Promise.all(jobs);
  const stats = fn.stats();
  assert.equal(stats.open, 0);
  assert.equal(stats.opened, 150);
  await noPairsLeft();
});

test('two copies of the module (as Jest loads it) run worker streams side by side', async () => {
  const copies = [];
  for (let i = 0; i < 2; i++) {
    for (const key of Object.keys(require.cache)) if (key.includes('/dist/')) delete require.cache[key];
    copies.push(require('../dist/index.js'));
  }
  assert.notEqual(copies[0].workerFn, copies[1].workerFn);
  const [a, b] = copies.map((m) => m.workerFn(HANDLERS, { threads: 1 }));
  const [ra, rb] = await Promise.all([a.run([1, 2]), b.run([3])]);
  assert.deepEqual(ra, [2, 4, { count: 2 }]);
  assert.deepEqual(rb, [6, { count: 1 }]);
});
