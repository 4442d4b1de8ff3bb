// feed() and run(): bulk sources with backpressure, any kind of iterable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { StreamClosedError, streamFn } from 'velo-stream';
import { collect, echo, settle, unhandledDuring } from './helpers/util.mjs';
import { run } from './helpers/child.mjs';

const double = streamFn(
  async function* double(events) {
    for await (const e of events) yield e * 2;
  },
  { buffer: 4 },
);

test('run() accepts arrays, sync iterables, generators, async generators and Readables', async () => {
  const expected = [2, 4, 6, 8, 10];
  assert.deepEqual(await double.run([1, 2, 3, 4, 5]), expected);
  assert.deepEqual(await double.run(new Set([1, 2, 3, 4, 5])), expected);
  assert.deepEqual(
    await double.run(
      (function* () {
        yield* [1, 2, 3, 4, 5];
      })(),
    ),
    expected,
  );
  assert.deepEqual(
    await double.run(
      (async function* () {
        yield* [1, 2, 3, 4, 5];
      })(),
    ),
    expected,
  );
  assert.deepEqual(await double.run(Readable.from([1, 2, 3, 4, 5])), expected);
  assert.deepEqual(await double.run([]), []);
});

test('feed() yields outputs while it sends, then ends the input', async () => {
  const fn = streamFn(
    async function* (events) {
      let n = 0;
      for await (const e of events) {
        n++;
        yield e;
      }
      yield `n=${n}`;
    },
    { buffer: 2 },
  );
  const s = fn.open();
  let maxAhead = 0;
  let produced = 0;
  async function* source() {
    for (let i = 0; i < 50; i++) {
      produced++;
      yield i;
    }
  }
  const out = [];
  for await (const v of s.feed(source())) {
    out.push(v);
    maxAhead = Math.max(maxAhead, produced - out.length);
    await settle(1);
  }
  assert.deepEqual(out, [...Array.from({ length: 50 }, (_, i) => i), 'n=50']);
  assert.ok(maxAhead <= 2 + 2 + 3, `source ran ${maxAhead} ahead of the consumer`);
  assert.equal(s.state, 'done');
});

test('a source that throws cancels the stream and the iteration rejects with its error', async () => {
  const bad = new Error('source broke');
  let finalized = false;
  const fn = streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
    } finally {
      finalized = true;
    }
  });
  async function* source() {
    yield 1;
    yield 2;
    throw bad;
  }
  const s = fn.open();
  await assert.rejects(collect(s.feed(source())), (e) => e === bad);
  assert.equal(s.state, 'cancelled');
  assert.ok(finalized);
  function* syncSource() {
    yield 1;
    throw bad;
  }
  await assert.rejects(fn.run(syncSource()), (e) => e === bad);
  assert.equal(fn.stats().open, 0);
});

test('breaking out of feed() cancels the stream and closes the source', async () => {
  let closed = false;
  async function* source() {
    try {
      for (let i = 0; ; i++) yield i;
    } finally {
      closed = true;
    }
  }
  const s = streamFn(echo, { buffer: 4 }).open();
  for await (const v of s.feed(source())) {
    if (v === 10) break;
  }
  await settle();
  assert.equal(s.state, 'cancelled');
  assert.ok(closed, 'the source iterator was closed');
});

test('run() includes outputs yielded after the input loop', async () => {
  const fn = streamFn(async function* (events) {
    const all = [];
    for await (const e of events) all.push(e);
    yield all.reverse().join('');
    yield 'done';
  });
  assert.deepEqual(await fn.run('abc'.split('')), ['cba', 'done']);
});

test('10,000 concurrent streams with random event counts: every output accounted for', async () => {
  const fn = streamFn(
    async function* (events, ctx) {
      let sum = 0;
      for await (const e of events) {
        sum += e;
        yield [ctx.id, e];
      }
      yield [ctx.id, 'sum', sum];
    },
    { maxConcurrent: 10_000, buffer: 8 },
  );
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const counts = Array.from({ length: 10_000 }, () => Math.floor(rand() * 20));
  const results = await Promise.all(counts.map((n) => fn.run(Array.from({ length: n }, (_, i) => i))));
  results.forEach((out, k) => {
    const n = counts[k];
    assert.equal(out.length, n + 1);
    assert.deepEqual(
      out.slice(0, n).map((o) => o[1]),
      Array.from({ length: n }, (_, i) => i),
    );
    assert.equal(out[n][2], (n * (n - 1)) / 2 + 0); // + 0: the empty sum is 0, not -0
    assert.ok(
      out.every((o) => o[0] === out[0][0]),
      'all outputs from one instance',
    );
  });
  assert.deepEqual(fn.stats(), { open: 0, opened: 10_000, completed: 10_000, failed: 0, cancelled: 0, rejected: 0 });
});

test('feed() on a stream whose input is closed rejects as send() does, and does not read the source', async () => {
  const fn = streamFn(echo);
  const cases = {
    ended: (s) => s.end(),
    cancelled: (s) => void s.cancel(),
    'handler returned': null,
  };
  for (const [name, close] of Object.entries(cases)) {
    const s = close ? fn.open() : streamFn(async function* () {}).open();
    if (close) close(s);
    await settle();
    const sendError = await s.send(0).catch((e) => e);
    let pulled = 0;
    const source = (function* () {
      for (;;) yield ++pulled;
    })();
    await assert.rejects(collect(s.feed(source)), (e) => e instanceof StreamClosedError && e.message === sendError.message, name);
    assert.equal(pulled, 0, `${name}: the source was not read`);
  }
  const piped = fn.pipe(echo).open();
  piped.end();
  await assert.rejects(collect(piped.feed([1, 2])), { code: 'ERR_VELO_STREAM_CLOSED' });
});

test('a source that will never be read is closed at once: a Readable destroyed, an iterator returned', async () => {
  const fn = streamFn(echo, { maxConcurrent: 1 });
  /** A source of each shape, and whether it was closed. */
  const sources = () => {
    const readable = new Readable({ objectMode: true, read() {} });
    const iterator = {
      closed: 0,
      read: 0,
      [Symbol.asyncIterator]() {
        return this;
      },
      next() {
        this.read++;
        return new Promise(() => {});
      },
      return() {
        this.closed++;
        return Promise.resolve({ done: true, value: undefined });
      },
    };
    return [
      [readable, () => readable.destroyed],
      [iterator, () => iterator.closed === 1 && iterator.read === 0],
    ];
  };
  const ways = {
    'refused at the call (input closed)': async (source) => {
      const s = fn.open();
      s.end();
      await assert.rejects(collect(s.feed(source)), { code: 'ERR_VELO_STREAM_CLOSED' });
    },
    'refused at its first read (the stream cancelled meanwhile)': async (source) => {
      const s = fn.open();
      const feed = s.feed(source);
      await s.cancel();
      await assert.rejects(feed[Symbol.asyncIterator]().next(), { code: 'ERR_VELO_STREAM_CLOSED' });
    },
    'return() before its first read': async (source) => {
      const s = fn.open();
      await s.feed(source)[Symbol.asyncIterator]().return();
      assert.equal(s.state, 'cancelled');
    },
    "the feed's cancel() before its first read (an HTTP writer whose client left)": async (source) => {
      const s = fn.open();
      await s.feed(source).cancel();
      assert.equal(s.state, 'cancelled');
    },
    'run() refused by maxConcurrent': async (source) => {
      const held = fn.open();
      await assert.rejects(fn.run(source), { code: 'ERR_VELO_STREAM_LIMIT' });
      await held.cancel();
    },
    'run() with a signal aborted before the call': async (source) => {
      const reason = new Error('gone');
      await assert.rejects(fn.run(source, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    },
    'run() with options it refuses (a cost from a request, say)': async (source) => {
      await assert.rejects(fn.run(source, { cost: -1 }), { code: 'ERR_OUT_OF_RANGE' });
    },
  };
  for (const [way, act] of Object.entries(ways)) {
    for (const [source, closed] of sources()) {
      await act(source);
      await settle();
      assert.ok(closed(), `${way}: ${source instanceof Readable ? 'a Readable' : 'an iterator'} closed`);
    }
  }
  assert.equal(fn.stats().open, 0);
});

test("a feed() whose source stalls past the idle timeout calls the source's return() and fails after the outputs", async () => {
  let returned = 0;
  const source = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next: () => (i++ === 0 ? Promise.resolve({ value: 'a', done: false }) : new Promise(() => {})),
        return: () => {
          returned++;
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
  const fn = streamFn(echo, { idleTimeout: 30 });
  const out = [];
  await assert.rejects(
    async () => {
      for await (const v of fn.open().feed(source)) out.push(v);
    },
    { name: 'SourceStalledError', code: 'ERR_VELO_SOURCE_STALLED', status: 504 },
  );
  assert.deepEqual(out, ['a']);
  assert.equal(returned, 1);
  await assert.rejects(fn.run(source), { code: 'ERR_VELO_SOURCE_STALLED' });
  assert.equal(returned, 2);
});

test('feed() delivers the outputs made before a handler error, then the error (as recv() and iteration do)', async () => {
  const boom = new Error('boom');
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      if (e === 3) throw boom;
      yield e;
    }
  });
  const out = [];
  await assert.rejects(
    async () => {
      for await (const v of fn.open().feed([1, 2, 3, 4, 5])) out.push(v);
    },
    (e) => e === boom,
  );
  assert.deepEqual(out, [1, 2]);
});

test('cancel() ends a feed() iteration at once, also for outputs the feed already took from the stream', async () => {
  // buffer 16: the feed took every output, so the stream is done (and its own
  // cancel() a no-op); feed.cancel() still ends the feed.
  for (const [buffer, ways] of [
    [2, ['feed.cancel()', 'stream.cancel()']],
    [16, ['feed.cancel()']],
  ]) {
    for (const how of ways) {
      const s = streamFn(echo, { buffer }).open();
      const feed = s.feed([1, 2, 3, 4, 5, 6, 7, 8]);
      const it = feed[Symbol.asyncIterator]();
      assert.deepEqual(await it.next(), { value: 1, done: false });
      await (how === 'feed.cancel()' ? feed.cancel() : s.cancel());
      assert.deepEqual(await it.next(), { value: undefined, done: true }, `buffer ${buffer}, ${how}`);
    }
  }
});

test('feed() reads as for await does: an output counts as read only once the feed yielded it', async () => {
  const s = streamFn(
    async function* (events) {
      for await (const e of events) yield* [e, e, e];
    },
    { buffer: 8 },
  ).open();
  const it = s.feed([1])[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await settle();
  // The other two outputs were made, and are not read yet: still buffered,
  // and the stream is not done.
  assert.equal(s.metrics.bufferedOut, 2);
  assert.equal(s.state, 'ending');
  assert.deepEqual(await it.next(), { value: 1, done: false });
  assert.deepEqual(await it.next(), { value: 1, done: false });
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  assert.equal(s.state, 'done');
  assert.equal(s.metrics.bufferedOut, 0);
});

test('leaving a feed() early destroys a Readable source that waits for data, at once (as leaving for await over it does)', async () => {
  for (const leave of ['break', 'feed.cancel()', 'the handler returns']) {
    let pushed = 0;
    const source = new Readable({
      objectMode: true,
      read() {
        if (pushed++ === 0) this.push(1); // then no more data, and no end
      },
    });
    const fn = streamFn(async function* (events) {
      for await (const e of events) {
        yield e;
        if (leave === 'the handler returns') return;
      }
    });
    const feed = fn.open().feed(source);
    for await (const v of feed) {
      assert.equal(v, 1);
      if (leave === 'break') break;
      if (leave === 'feed.cancel()') await feed.cancel();
    }
    await settle();
    assert.equal(source.destroyed, true, leave);
  }
});

test('feed() whose stream was ended before its iteration started rejects as a send would, and reads nothing', async () => {
  const s = streamFn(echo).open();
  let read = 0;
  const source = {
    *[Symbol.iterator]() {
      read++;
      yield 1;
    },
  };
  const feed = s.feed(source);
  s.end();
  await assert.rejects(collect(feed), { code: 'ERR_VELO_STREAM_CLOSED' });
  assert.equal(read, 0);
});

test('a source whose destroy() rejects (an async destroy) is closed all the same, with no unhandled rejection', async () => {
  const fn = streamFn(echo);
  let destroyed = 0;
  const source = () => ({
    destroy() {
      destroyed++;
      return Promise.reject(new Error('destroy failed'));
    },
    async *[Symbol.asyncIterator]() {
      yield 1;
      yield 2;
    },
  });
  const unhandled = await unhandledDuring(async () => {
    // Never read: refused by a closed input, cancelled before its first read.
    const ended = fn.open();
    ended.end();
    await assert.rejects(collect(ended.feed(source())), { code: 'ERR_VELO_STREAM_CLOSED' });
    await fn.open().feed(source()).cancel();
    // Read, then left.
    for await (const _ of fn.open().feed(source())) break;
  });
  assert.deepEqual(unhandled, []);
  assert.equal(destroyed, 3);
  assert.equal(fn.stats().open, 0);
});

test('closing a source fails quietly and never waits: a Readable whose destroy fails, a return() that never settles or rejects, a sync source with destroy()', async () => {
  // In a child: an unheard 'error' event or an unhandled rejection would end it with code 1, and a refusal that
  // waited on the source's return() would leave run() pending (exit code 13 under ESM's top-level await).
  const { stdout } = await run(
    [
      '--input-type=module',
      '-e',
      `
      import { Readable } from 'node:stream';
      import { streamFn } from 'velo-stream';
      const fn = streamFn(async function* (events) { for await (const e of events) yield e; }, { maxConcurrent: 1 });
      const failingReadable = () => new Readable({ objectMode: true, read() { this.push(null); }, destroy(error, cb) { cb(new Error('close failed')); } });
      const held = fn.open();
      const out = [];
      // Never read: run() refused, then a feed cancelled before its first read.
      out.push(await fn.run(failingReadable()).catch((e) => e.code));
      const hanging = { [Symbol.asyncIterator]: () => ({ next: async () => ({ value: 1, done: false }), return: () => new Promise(() => {}) }) };
      out.push(await fn.run(hanging).catch((e) => e.code));
      await held.cancel();
      await fn.open().feed(failingReadable()).cancel();
      // Read, then left: a sync source whose return() rejects, and one with destroy().
      let i = 0;
      const rejecting = { [Symbol.iterator]: () => ({ next: () => ({ value: i++, done: false }), return: () => Promise.reject(new Error('async close failed')) }) };
      for await (const v of fn.open().feed(rejecting)) if (v >= 2) break;
      let destroyed = 0;
      const destroyable = { destroy() { destroyed++; }, *[Symbol.iterator]() { for (let k = 0; ; k++) yield k; } };
      for await (const v of fn.open().feed(destroyable)) if (v >= 2) break;
      // A function with an iterator method is a source, as for for-await.
      const fnSource = Object.assign(() => {}, { async *[Symbol.asyncIterator]() { yield 'f'; } });
      out.push((await fn.run(fnSource)).join());
      await new Promise((resolve) => setTimeout(resolve, 50));
      console.log(out.join(' '), destroyed, fn.stats().open);
      `,
    ],
    { timeout: 20_000 },
  );
  assert.equal(stdout, 'ERR_VELO_STREAM_LIMIT ERR_VELO_STREAM_LIMIT f 1 0\n');
});

test("a second feed's cancel(), refused or not started while the first reads, ends it alone: the stream and both sources go on", async () => {
  const fn = streamFn(echo, { idleTimeout: 0 });
  for (const started of [true, false]) {
    const s = fn.open();
    const first = new Readable({ objectMode: true, read() {} });
    first.push(1);
    first.push(2);
    const reading = s.feed(first)[Symbol.asyncIterator]();
    assert.deepEqual(await reading.next(), { value: 1, done: false });
    const second = new Readable({ objectMode: true, read() {} });
    const feed = s.feed(second);
    if (started) await assert.rejects(feed[Symbol.asyncIterator]().next(), { code: 'ERR_INVALID_STATE' });
    await feed.cancel();
    // Left by return() or throw() before a read, a second feed ends alone too.
    await s.feed(second)[Symbol.asyncIterator]().return();
    await assert.rejects(s.feed(second)[Symbol.asyncIterator]().throw(new Error('left')), { message: 'left' });
    assert.equal(s.state, 'open', `started ${started}`);
    assert.ok(!first.destroyed && !second.destroyed, `started ${started}: both sources left alone`);
    assert.deepEqual(await reading.next(), { value: 2, done: false });
    first.push(null);
    assert.deepEqual(await reading.next(), { value: undefined, done: true });
    assert.equal(s.state, 'done');
    second.destroy();
  }
});

test('a source whose iterator is not an object with a next() method fails run() and feed() with ERR_INVALID_ARG_TYPE', async () => {
  const fn = streamFn(echo);
  const sources = {
    'async, a number': { [Symbol.asyncIterator]: () => 5 },
    'async, a function without next()': { [Symbol.asyncIterator]: () => () => {} },
    'async, no next()': { [Symbol.asyncIterator]: () => ({}) },
    'async, next not a function': { [Symbol.asyncIterator]: () => ({ next: 1 }) },
    'sync, null': { [Symbol.iterator]: () => null },
    'sync, no next()': { [Symbol.iterator]: () => ({}) },
  };
  const refused = (name) => (error) => {
    assert.equal(error.code, 'ERR_INVALID_ARG_TYPE', name);
    assert.match(error.message, /iterator must be an object with a next\(\) method/, name);
    return true;
  };
  for (const [name, source] of Object.entries(sources)) {
    await assert.rejects(fn.run(source), refused(name));
    const s = fn.open();
    await assert.rejects(collect(s.feed(source)), refused(name));
    assert.equal(s.state, 'cancelled', name);
  }
  // A function with a next() method is an iterator, as for `for await`.
  let n = 0;
  const fnIterator = Object.assign(() => {}, { next: async () => ({ done: n >= 3, value: n++ }) });
  assert.deepEqual(await fn.run({ [Symbol.asyncIterator]: () => fnIterator }), [0, 1, 2]);
  await settle();
  assert.equal(fn.stats().open, 0);
});

test('a source whose next() resolves to a non-object fails the feed with a TypeError (ERR_INVALID_RETURN_VALUE), as for await would', async () => {
  const source = {
    [Symbol.asyncIterator]() {
      return { next: async () => 42 };
    },
  };
  const s = streamFn(echo).open();
  await assert.rejects(collect(s.feed(source)), (error) => error instanceof TypeError && error.code === 'ERR_INVALID_RETURN_VALUE' && /not an object/.test(error.message));
  assert.equal(s.state, 'cancelled');
});

test('a sync source whose next() returns a non-object fails run() and feed() with a TypeError (ERR_INVALID_RETURN_VALUE) instead of sending forever', async () => {
  for (const bad of [5, null, undefined, 'x']) {
    for (const drive of ['run', 'feed', 'run, buffer full']) {
      let calls = 0;
      const source = {
        [Symbol.iterator]() {
          return {
            next: () => {
              // A regression would loop here forever: fail loudly instead.
              if (++calls > 10_000) throw new Error('next() called 10,000 times');
              // With a full buffer the first answers are good ones, so the bad one is read one at a time.
              return drive === 'run, buffer full' && calls <= 3 ? { value: calls, done: false } : bad;
            },
          };
        },
      };
      const fn = streamFn(echo, { buffer: 2 });
      const outcome = drive === 'feed' ? collect(fn.open().feed(source)) : fn.run(source);
      await assert.rejects(
        outcome,
        (error) => error instanceof TypeError && error.code === 'ERR_INVALID_RETURN_VALUE' && /not an object/.test(error.message),
        `${drive} ${String(bad)}`,
      );
      assert.ok(calls <= 4, `${drive} ${String(bad)}: next() called ${calls} times`);
    }
  }
});

test('cancelling a stream destroys a Readable source its feed waits on, even while nobody iterates the feed', async () => {
  for (const how of ['feed.cancel()', 'stream.cancel()', 'abort signal']) {
    let pushed = 0;
    const source = new Readable({
      objectMode: true,
      read() {
        if (pushed++ === 0) this.push(1); // then no more data, and no end
      },
    });
    const controller = new AbortController();
    const s = streamFn(echo).open({ signal: controller.signal });
    const feed = s.feed(source);
    const it = feed[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { value: 1, done: false });
    await settle();
    assert.equal(source.destroyed, false, how);
    if (how === 'feed.cancel()') await feed.cancel();
    else if (how === 'stream.cancel()') await s.cancel();
    else controller.abort();
    await settle();
    assert.equal(source.destroyed, true, how);
    assert.equal(s.state, 'cancelled', how);
  }
});

test('cancelling a pipe destroys a Readable source its feed waits on', async () => {
  let pushed = 0;
  const source = new Readable({
    objectMode: true,
    read() {
      if (pushed++ === 0) this.push(1);
    },
  });
  const s = streamFn(echo).pipe(streamFn(echo)).open();
  const it = s.feed(source)[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await s.cancel();
  await settle();
  assert.equal(source.destroyed, true);
});

test("a handler whose own iterator's next() answers what is not an object fails the stream with a TypeError (ERR_INVALID_RETURN_VALUE), as for await would (run, recv)", async () => {
  for (const bad of [5, 'x', null, undefined, Promise.resolve(5)]) {
    let calls = 0;
    const fn = streamFn(() => ({
      [Symbol.asyncIterator]() {
        return {
          next: () => {
            // A regression would yield `undefined` forever: fail loudly instead.
            if (++calls > 10_000) throw new Error('next() called 10,000 times');
            return bad;
          },
        };
      },
    }));
    const notObject = (error) => error instanceof TypeError && error.code === 'ERR_INVALID_RETURN_VALUE' && /not an object/.test(error.message);
    await assert.rejects(fn.run([1]), notObject, `run ${String(bad)}`);
    const s = fn.open();
    await assert.rejects(s.recv(), notObject, `recv ${String(bad)}`);
    assert.ok(calls <= 2, `${String(bad)}: next() called ${calls} times`);
  }
});
