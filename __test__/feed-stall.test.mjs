// A source given to feed() or run() that gives no event for the stream's idleTimeout while the stream waits on it
// has stalled: the stream fails with SourceStalledError after the outputs so far, the source is closed, and the
// signal of feed((signal) => source) aborts. A source that ends and an explicit end() stay clean ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SourceStalledError, batch, streamFn, task, workerFn } from 'velo-stream';

const IDLE = 60;

/** `values`, then nothing for ever; counts its iterator's `return()` calls. */
function stalling(values) {
  const state = { returned: 0 };
  let i = 0;
  state.source = {
    [Symbol.asyncIterator]() {
      return this;
    },
    next: () => (i < values.length ? Promise.resolve({ value: values[i++], done: false }) : new Promise(() => {})),
    return() {
      state.returned++;
      return Promise.resolve({ value: undefined, done: true });
    },
  };
  return state;
}

/** Echoes, then yields 'after' once its input ended; records its `finally`. */
function echoing(config = { idleTimeout: IDLE }) {
  const log = { finally: 0 };
  const fn = streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
      yield 'after';
    } finally {
      log.finally++;
    }
  }, config);
  return { fn, log };
}

async function readAll(outputs) {
  const out = [];
  try {
    for await (const v of outputs) out.push(v);
  } catch (error) {
    return { out, error };
  }
  return { out, error: undefined };
}

test('SourceStalledError is exported, with its code and status', () => {
  const error = new SourceStalledError('m');
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'SourceStalledError');
  assert.equal(error.code, 'ERR_VELO_SOURCE_STALLED');
  assert.equal(error.status, 504);
});

test('a generator handler: its input loop throws after the events, the feed rejects after the outputs, the source is closed', async () => {
  const { fn, log } = echoing();
  const s = stalling([1, 2, 3]);
  const { out, error } = await readAll(fn.open().feed(s.source));
  assert.deepEqual(out, [1, 2, 3]);
  assert.ok(error instanceof SourceStalledError);
  assert.equal(s.returned, 1);
  assert.equal(log.finally, 1);
  assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 1, cancelled: 0, rejected: 0 });
});

test('a handler that catches the stall yields a last output; the feed still rejects after it', async () => {
  const fn = streamFn(
    async function* (events) {
      try {
        for await (const e of events) yield e;
      } catch (error) {
        yield `caught ${error.code}`;
      }
    },
    { idleTimeout: IDLE },
  );
  const { out, error } = await readAll(fn.open().feed(stalling(['a']).source));
  assert.deepEqual(out, ['a', 'caught ERR_VELO_SOURCE_STALLED']);
  assert.equal(error?.code, 'ERR_VELO_SOURCE_STALLED');
});

test('a stream that reads ahead (a task stage, a traced-like sender path): the outputs, then the error', async () => {
  const double = task(async (x) => x * 2, { idleTimeout: IDLE });
  const s = stalling([1, 2, 3]);
  const { out, error } = await readAll(double.open().feed(s.source));
  assert.deepEqual(out, [2, 4, 6]);
  assert.equal(error?.code, 'ERR_VELO_SOURCE_STALLED');
  assert.equal(s.returned, 1);
  const r = stalling([1]);
  await assert.rejects(double.run(r.source), { code: 'ERR_VELO_SOURCE_STALLED' });
  assert.equal(r.returned, 1);
});

test('a task, a batch and a worker stream fail with the stall as a generator does: state, stats() and the error alike', async () => {
  const worker = workerFn(new URL('./fixtures/worker-handlers.mjs', import.meta.url), {
    export: 'echo',
    threads: 1,
    idleTimeout: IDLE,
  });
  try {
    for (const [fn, outputs] of [
      [task(async (x) => x * 2, { idleTimeout: IDLE }), [2, 4]],
      [batch(async (xs) => xs.length, { maxSize: 10, idleTimeout: IDLE }), [2]],
      [worker, [1, 2]],
    ]) {
      const stream = fn.open();
      const { out, error } = await readAll(stream.feed(stalling([1, 2]).source));
      assert.deepEqual(out, outputs);
      assert.equal(error?.code, 'ERR_VELO_SOURCE_STALLED');
      assert.equal(stream.state, 'failed');
      assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 1, cancelled: 0, rejected: 0 });
    }
  } finally {
    await worker.close();
  }
});

test('a pipe: the first stage stalls, the outputs of every stage come first, then the error', async () => {
  const { fn } = echoing();
  const piped = fn.pipe(async function* (events) {
    for await (const e of events) yield [e];
  });
  const s = stalling([1, 2]);
  const { out, error } = await readAll(piped.open().feed(s.source));
  assert.deepEqual(out, [[1], [2]]);
  assert.equal(error?.code, 'ERR_VELO_SOURCE_STALLED');
  assert.equal(s.returned, 1);
});

test('clean ends stay clean: a source that ends, an end() while the source waits, a live stream idling out', async () => {
  const { fn } = echoing();
  assert.deepEqual(
    await fn.run(
      (async function* () {
        yield 1;
      })(),
    ),
    [1, 'after'],
  );
  const s = fn.open();
  const src = stalling([1]);
  const out = [];
  for await (const v of s.feed(src.source)) {
    out.push(v);
    if (v === 1) s.end();
  }
  assert.deepEqual(out, [1, 'after']);
  const live = fn.open();
  await live.send('x');
  const got = [];
  for await (const v of live) got.push(v);
  assert.deepEqual(got, ['x', 'after']);
});

test('feed((signal) => source): the signal aborts with the stall, and the source is closed', async () => {
  const { fn } = echoing();
  let signal;
  let made = 0;
  const s = stalling([1]);
  const { out, error } = await readAll(
    fn.open().feed((given) => {
      made++;
      signal = given;
      return s.source;
    }),
  );
  assert.equal(made, 1);
  assert.deepEqual(out, [1]);
  assert.equal(error?.code, 'ERR_VELO_SOURCE_STALLED');
  assert.ok(signal instanceof AbortSignal);
  assert.equal(signal.aborted, true);
  assert.equal(signal.reason, error);
  assert.equal(s.returned, 1);
});

test('feed((signal) => source): not aborted after the source ended; aborted by a cancel, a break, a handler that returned', async () => {
  const { fn } = echoing({ idleTimeout: 0 });
  let signal;
  const out = [];
  for await (const v of fn.open().feed((given) => ((signal = given), [1, 2]))) out.push(v);
  assert.deepEqual(out, [1, 2, 'after']);
  assert.equal(signal.aborted, false);

  const feed = fn.open().feed((given) => ((signal = given), stalling([1]).source));
  assert.deepEqual(await feed[Symbol.asyncIterator]().next(), { value: 1, done: false });
  await feed.cancel();
  assert.equal(signal.aborted, true);

  for await (const v of fn.open().feed((given) => ((signal = given), stalling([1, 2]).source))) if (v === 1) break;
  assert.equal(signal.aborted, true);

  const first = streamFn(async function* (events) {
    for await (const e of events) {
      yield e;
      return;
    }
  });
  assert.deepEqual(await first.run([0]), [0]);
  const only = [];
  for await (const v of first.open().feed((given) => ((signal = given), stalling([1, 2]).source))) only.push(v);
  assert.deepEqual(only, [1]);
  assert.equal(signal.aborted, true);
});

test('feed((signal) => source): refused input, a throwing function, and a function that returns no iterable', async () => {
  const { fn } = echoing({ idleTimeout: 0 });
  const ended = fn.open();
  ended.end();
  let called = 0;
  await assert.rejects(
    readAll(ended.feed(() => (called++, [1]))).then((r) => {
      if (r.error) throw r.error;
    }),
    { code: 'ERR_VELO_STREAM_CLOSED' },
  );
  assert.equal(called, 0, 'a refused feed does not make its source');

  const boom = new Error('boom');
  const { error } = await readAll(
    fn.open().feed(() => {
      throw boom;
    }),
  );
  assert.equal(error, boom);

  let aborted;
  const open = fn.open();
  assert.throws(
    () =>
      open.feed(async (signal) => {
        signal.addEventListener('abort', () => (aborted = true));
        return [1];
      }),
    { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /must return an iterable/ },
  );
  assert.equal(aborted, true, "the made source's signal aborts when it is refused");
  // (Refused at the call, the stream is left open, as for any bad source: cancel it.)
  await open.cancel();
  assert.equal(fn.stats().open, 0);
});
