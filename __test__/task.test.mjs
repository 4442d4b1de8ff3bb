// Task stages: task() and batch(). Concurrency bound, order, filtering,
// memory bound and backpressure, batching rules, retries, error policies,
// cancel, timers and process exit, metrics, and composition with the rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batch, streamFn, task } from 'velo-stream';
import { collect, deferred, echo, isSettled, settle } from './helpers/util.mjs';
import { run } from './helpers/child.mjs';

/** A task fn whose calls the test settles by hand: `calls[i]` is the i-th call, with its item and deferred. */
function manual() {
  const calls = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fn = (item, ctx) => {
    const d = deferred();
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    calls.push({ item, ctx, ...d });
    return d.promise.finally(() => inFlight--);
  };
  return {
    fn,
    calls,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
  };
}

test('at most `concurrency` calls are in flight, never one more, and calls start in input order', async () => {
  for (const ordered of [true, false]) {
    const m = manual();
    const s = task(m.fn, { concurrency: 3, ordered }).open();
    const outputs = collect(s.feed(Array.from({ length: 20 }, (_, i) => i)));
    await settle();
    assert.equal(m.calls.length, 3);
    // Settle them in a scrambled order, one at a time.
    for (let k = 0; k < 20; k++) {
      const pending = m.calls.filter((c) => !c.done);
      const c = pending[(k * 7) % pending.length];
      c.done = true;
      c.resolve(c.item * 10);
      await settle();
      assert.ok(m.inFlight <= 3);
    }
    const out = await outputs;
    assert.equal(m.maxInFlight, 3);
    assert.deepEqual(
      m.calls.map((c) => c.item),
      Array.from({ length: 20 }, (_, i) => i),
      'started in input order',
    );
    if (ordered)
      assert.deepEqual(
        out,
        Array.from({ length: 20 }, (_, i) => i * 10),
      );
    else
      assert.deepEqual(
        [...out].sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i * 10),
      );
  }
});

test('ordered: each result goes the moment every earlier item finished; a slow item holds back only later ones', async () => {
  const m = manual();
  const s = task(m.fn, { concurrency: 8 }).open();
  const it = s.feed([0, 1, 2, 3, 4, 5, 6, 7])[Symbol.asyncIterator]();
  const seen = [];
  const reading = (async () => {
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      seen.push(r.value);
    }
  })();
  await settle();
  assert.equal(m.calls.length, 8);
  // Conveyor's timeline: items finish in order 0..4, then 6, 7, and 5 last.
  for (const i of [0, 1, 2, 3, 4]) {
    m.calls[i].resolve(i);
    await settle();
    assert.deepEqual(
      seen,
      Array.from({ length: i + 1 }, (_, k) => k),
      `after item ${i}`,
    );
  }
  m.calls[6].resolve(6);
  m.calls[7].resolve(7);
  await settle();
  assert.deepEqual(seen, [0, 1, 2, 3, 4], '6 and 7 wait for 5');
  m.calls[5].resolve(5);
  await reading;
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('ordered: false delivers in completion order', async () => {
  const m = manual();
  const out = collect(task(m.fn, { concurrency: 8, ordered: false }).open().feed([0, 1, 2, 3, 4, 5, 6, 7]));
  await settle();
  for (const i of [0, 1, 2, 3, 4, 6, 7, 5]) {
    m.calls[i].resolve(i);
    await settle();
  }
  assert.deepEqual(await out, [0, 1, 2, 3, 4, 6, 7, 5]);
});

test('a result of undefined (returned or resolved) filters the item out; sync results work', async () => {
  assert.deepEqual(await task((x) => (x % 2 ? x : undefined)).run([1, 2, 3, 4, 5]), [1, 3, 5]);
  assert.deepEqual(await task(async (x) => (x > 2 ? x : undefined), { ordered: false }).run([1, 2, 3, 4]), [3, 4]);
  assert.deepEqual(await task((x) => x * 2).run([]), []);
});

test('memory is bounded: a slow head item stops the stage taking input, and backpressure reaches the sender', async () => {
  const m = manual();
  // concurrency 2, buffer 4: at most 4 calls in flight or results held.
  const s = task(m.fn, { concurrency: 2, buffer: 4 }).open();
  const sends = [];
  for (let i = 0; i < 20; i++) sends.push(s.send(i));
  await settle();
  assert.equal(m.calls.length, 2);
  // Items 1, 2, 3 finish while 0 is slow: their results are held.
  m.calls[1].resolve(1);
  await settle();
  m.calls[2].resolve(2);
  await settle();
  assert.equal(m.calls.length, 4, 'in flight + held reached the window (4)');
  m.calls[3].resolve(3);
  await settle();
  assert.equal(m.calls.length, 4, 'no new call while 3 results are held and 1 runs');
  // The input buffer (4) filled up behind the stage (plus one item it took), and the other sends wait.
  const settled = await Promise.all(sends.map(isSettled));
  assert.ok(settled.includes(false), 'some sends wait: backpressure reached the sender');
  assert.ok(settled.filter(Boolean).length <= 4 + 4 + 1);
  m.calls[0].resolve(0);
  await settle();
  assert.deepEqual([await s.recv(), await s.recv(), await s.recv(), await s.recv()], [0, 1, 2, 3]);
  s.end();
  const rest = collect(s);
  // Settle each call as it comes, until every output was read.
  while (!(await isSettled(rest))) for (const c of m.calls) c.resolve(c.item);
  assert.deepEqual(
    await rest,
    Array.from({ length: 16 }, (_, i) => i + 4),
  );
  assert.equal(m.maxInFlight, 2);
  await Promise.all(sends);
});

test('an unread output stops the stage too: results wait for output room, then the stage takes no input', async () => {
  let calls = 0;
  const s = task(
    async (x) => {
      calls++;
      return x;
    },
    { concurrency: 2, buffer: 2 },
  ).open();
  for (let i = 0; i < 30; i++) void s.send(i).catch(() => {});
  await settle(10);
  // Output buffer (2) full, 2 results held, nothing read: no more calls.
  assert.ok(calls <= 2 + 2 + 2, `${calls} calls`);
  const before = calls;
  await settle(10);
  assert.equal(calls, before);
  await s.cancel();
});

test('batch: groups in input order up to maxSize, one call and one output per batch, the last partial batch always', async () => {
  const seen = [];
  const sum = batch(
    async (xs, ctx) => {
      seen.push([...xs, `#${ctx.index}`]);
      return xs.reduce((a, b) => a + b, 0);
    },
    { maxSize: 3, concurrency: 2 },
  );
  assert.deepEqual(await sum.run([1, 2, 3, 4, 5, 6, 7]), [6, 15, 7]);
  assert.deepEqual(seen, [
    [1, 2, 3, '#0'],
    [4, 5, 6, '#1'],
    [7, '#2'],
  ]);
  assert.deepEqual(await batch((xs) => (xs.length > 1 ? xs : undefined), { maxSize: 2 }).run([1, 2, 3]), [[1, 2]]);
});

test('batch: maxWait flushes a batch holding minSize items without waiting for it to fill or for the end', async () => {
  const calls = [];
  const s = batch(
    (xs) => {
      calls.push(xs);
      return xs;
    },
    { maxSize: 10, minSize: 2, maxWait: 20 },
  ).open();
  await s.send(1);
  // Below minSize: maxWait passing does not flush it.
  await new Promise((r) => setTimeout(r, 60));
  await settle();
  assert.deepEqual(calls, []);
  await s.send(2);
  // Reaching minSize after maxWait passed: due at once.
  assert.deepEqual(await s.recv(), [1, 2]);
  await s.send(3);
  await s.send(4);
  // A full second batch is not there yet: maxWait (20 ms) flushes it, the input still open.
  assert.deepEqual(await s.recv(), [3, 4]);
  assert.equal(s.state, 'open');
  s.end();
  assert.deepEqual(await collect(s), []);
});

test('errors are retried with ctx.attempt counting from 1, then succeed; retries are counted', async () => {
  const attempts = [];
  const t = task(
    async (x, ctx) => {
      attempts.push(`${x}:${ctx.attempt}:${ctx.index}`);
      if (ctx.attempt < 3) throw new Error(`try ${ctx.attempt}`);
      return x;
    },
    { retry: { attempts: 3, delay: 1, factor: 2 } },
  );
  const s = t.open();
  assert.deepEqual(await collect(s.feed(['a', 'b'])), ['a', 'b']);
  assert.deepEqual(attempts.sort(), ['a:1:0', 'a:2:0', 'a:3:0', 'b:1:1', 'b:2:1', 'b:3:1']);
  assert.equal(s.metrics.retries, 4);
});

test("onError 'fail' (default): the earliest failing item in input order is the stream's error, after the earlier results; in-flight calls see their signal abort", async () => {
  const m = manual();
  const s = task(m.fn, { concurrency: 4 }).open();
  const out = [];
  const reading = (async () => {
    for await (const v of s.feed([0, 1, 2, 3])) out.push(v);
  })();
  await settle();
  m.calls[3].reject(new Error('three'));
  await settle();
  m.calls[2].reject(new Error('two'));
  await settle();
  m.calls[0].resolve('zero');
  await settle();
  assert.equal(m.calls[1].ctx.signal.aborted, false);
  m.calls[1].resolve('one');
  await assert.rejects(reading, { message: 'two' });
  assert.deepEqual(out, ['zero', 'one']);
  assert.equal(s.state, 'failed');

  // Unordered: at once; the calls still in flight are aborted with the error and their results dropped.
  const u = manual();
  const us = task(u.fn, { concurrency: 3, ordered: false }).open();
  const failed = collect(us.feed([0, 1, 2]));
  await settle();
  u.calls[1].reject(new Error('one'));
  await settle();
  assert.equal(u.calls[0].ctx.signal.aborted, true);
  assert.equal(u.calls[0].ctx.signal.reason.message, 'one');
  assert.equal(await isSettled(failed), false, 'the stream fails once the calls in flight settled');
  u.calls[0].resolve('dropped');
  u.calls[2].resolve('dropped');
  await assert.rejects(failed, { message: 'one' });
});

test('ordered: false: a result ready before a later item fails in the same burst of promise jobs is delivered before the error, in task() and batch(), for every way to fail', async () => {
  const boom = new Error('item 2 failed');
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const failures = {
    'sync throw': () => {
      throw boom;
    },
    'async throw': async () => {
      throw boom;
    },
    'then getter throws': () => revoked.proxy,
    'onError function rethrows': () => {
      throw boom;
    },
  };
  for (const [how, fail] of Object.entries(failures)) {
    const onError = how === 'onError function rethrows' ? (e) => Promise.reject(e) : 'fail';
    const item = (x) => (x === 2 ? fail() : x);
    const stages = {
      task: task(item, { ordered: false, concurrency: 2, onError }),
      batch: batch((xs) => (xs[0] === 2 ? fail() : xs), { maxSize: 1, ordered: false, concurrency: 2, onError }),
      'gen|task': streamFn(echo).pipe(task(item, { ordered: false, concurrency: 2, onError })),
    };
    for (const [name, fn] of Object.entries(stages)) {
      const out = [];
      let error;
      try {
        for await (const v of fn.open().feed([1, 2])) out.push(v);
      } catch (e) {
        error = e;
      }
      assert.deepEqual(out, name === 'batch' ? [[1]] : [1], `${how}, ${name}: the result ready first is delivered`);
      assert.ok(error !== undefined, `${how}, ${name}: then the error`);
    }
  }
});

test("onError 'skip' drops the item and counts it; a function replaces the output (undefined drops it, a throw fails)", async () => {
  const flaky = async (x) => {
    if (x % 2 === 0) throw new Error(`bad ${x}`);
    return x;
  };
  const s = task(flaky, { onError: 'skip' }).open();
  assert.deepEqual(await collect(s.feed([1, 2, 3, 4, 5])), [1, 3, 5]);
  assert.equal(s.metrics.skipped, 2);
  const seen = [];
  const replaced = task(flaky, {
    onError: (error, item, ctx) => {
      seen.push([error.message, item, ctx.index, ctx.attempt]);
      return item === 4 ? undefined : `replaced ${item}`;
    },
    retry: { attempts: 2, delay: 0 },
  });
  assert.deepEqual(await replaced.run([1, 2, 3, 4]), [1, 'replaced 2', 3]);
  assert.deepEqual(seen, [
    ['bad 2', 2, 1, 2],
    ['bad 4', 4, 3, 2],
  ]);
  await assert.rejects(
    task(flaky, {
      onError: async () => {
        throw new Error('handler');
      },
    }).run([2]),
    { message: 'handler' },
  );
});

test('cancel(): in-flight calls see ctx.signal abort, waiting retries are dropped, and cancel resolves once the calls settled', async () => {
  const m = manual();
  let retried = 0;
  const s = task(
    async (x, ctx) => {
      if (x === 'retry') {
        retried++;
        throw new Error('again');
      }
      return m.fn(x, ctx);
    },
    { concurrency: 3, retry: { attempts: 5, delay: 50 } },
  ).open();
  void s.send('a');
  void s.send('retry');
  await settle();
  assert.equal(retried, 1);
  const cancelled = s.cancel('stop');
  assert.equal(m.calls[0].ctx.signal.aborted, true);
  assert.equal(m.calls[0].ctx.signal.reason, 'stop');
  assert.equal(await isSettled(cancelled), false, 'a call is still in flight');
  m.calls[0].resolve('late');
  await cancelled;
  assert.equal(s.state, 'cancelled');
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(retried, 1, 'the waiting retry never ran');
});

test('break out of a for await over a task stream cancels it; an abort signal too; idle timeout ends its input', async () => {
  const m = manual();
  const s = task(m.fn, { concurrency: 2 }).open();
  const it = s.feed([1, 2, 3])[Symbol.asyncIterator]();
  const first = it.next();
  await settle();
  m.calls[0].resolve(1);
  assert.deepEqual(await first, { value: 1, done: false });
  // What `break` does.
  const left = it.return();
  await settle();
  assert.equal(m.calls[1].ctx.signal.aborted, true);
  assert.equal(await isSettled(left), false, 'leaving waits for the calls in flight');
  for (const c of m.calls) c.resolve(c.item);
  await left;
  await settle();
  assert.equal(s.state, 'cancelled');

  const controller = new AbortController();
  const a = task(async (x) => x).open({ signal: controller.signal });
  controller.abort(new Error('gone'));
  assert.equal(a.state, 'cancelled');

  const idle = task(async (x) => x * 2, { idleTimeout: 20 }).open();
  await idle.send(1);
  assert.deepEqual(await collect(idle), [2], 'the idle timeout ended the input');
});

test('a retry timer does not keep the process alive by itself, but a pending read of its stream does', async () => {
  const script = (read) => `
    const { task } = require('velo-stream');
    const t = task(async (x, ctx) => { if (ctx.attempt === 1) throw new Error('once'); return x; }, { retry: { attempts: 2, delay: ${read ? 300 : 600_000} } });
    const s = t.open();
    s.send(42).then(() => { ${read ? "s.recv().then((v) => console.log('got', v));" : "console.log('sent');"} });
  `;
  const quiet = await run(['-e', script(false)], { code: 0, timeout: 20_000 });
  assert.equal(quiet.stdout, 'sent\n');
  const reading = await run(['-e', script(true)], { code: 0, timeout: 20_000 });
  assert.equal(reading.stdout, 'got 42\n');
  // A batch waiting for maxWait: the same rule.
  const waiting = await run(
    [
      '-e',
      `
    const { batch } = require('velo-stream');
    const s = batch((xs) => xs, { maxSize: 10, maxWait: 600000 }).open();
    s.send(1).then(() => console.log('sent'));
  `,
    ],
    { code: 0, timeout: 20_000 },
  );
  assert.equal(waiting.stdout, 'sent\n');
});

test('a task stream dropped while a retry and a read wait still delivers (GC during the wait)', async () => {
  let got;
  (() => {
    const s = task(
      async (x, ctx) => {
        if (ctx.attempt === 1) throw new Error('once');
        return x;
      },
      { retry: { attempts: 2, delay: 30 } },
    ).open();
    void s.send('kept');
    got = s.recv();
  })();
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 15));
  }
  assert.equal(await got, 'kept');
});

test('metrics: inFlight, retries, skipped and call latency', async () => {
  const m = manual();
  const s = task(m.fn, { concurrency: 4 }).open();
  void s.send(1);
  void s.send(2);
  await settle();
  assert.equal(s.metrics.inFlight, 2);
  m.calls[0].resolve(1);
  m.calls[1].resolve(2);
  await settle();
  const metrics = s.metrics;
  assert.equal(metrics.inFlight, 0);
  assert.equal(metrics.retries, 0);
  assert.equal(metrics.skipped, 0);
  assert.equal(typeof metrics.taskP50Us, 'number');
  assert.ok(metrics.taskP99Us >= metrics.taskP50Us);
  assert.equal(streamFn(echo).open().metrics.inFlight, undefined, 'generator streams have no task metrics');
});

test('a done task stage frees its native state at once and keeps its window counters in its metrics', async () => {
  const { nativeStreams } = await import('#testing');
  const t = task(
    async (x, ctx) => {
      if (x === 3 || (x === 2 && ctx.attempt === 1)) throw new Error(`no ${x}`);
      return x;
    },
    { retry: { attempts: 2, delay: 1 }, onError: 'skip' },
  );
  const before = nativeStreams();
  const s = t.open();
  assert.deepEqual(await collect(s.feed([1, 2, 3, 4])), [1, 2, 4]);
  assert.equal(s.state, 'done');
  // (Not left to the finalizer of the next turn: freed when its last output was read.)
  assert.equal(nativeStreams(), before, 'the done stage holds no native state');
  const m = s.metrics;
  assert.deepEqual(
    { eventsIn: m.eventsIn, eventsOut: m.eventsOut, inFlight: m.inFlight, retries: m.retries, skipped: m.skipped },
    { eventsIn: 4, eventsOut: 3, inFlight: 0, retries: 2, skipped: 1 },
  );
  assert.ok(m.taskP50Us > 0 && m.taskP99Us >= m.taskP50Us, JSON.stringify(m));
  assert.deepEqual(s.metrics, m, 'a done stage answers the same every time');
});

test('task stages compose: pipes on either side of generator stages, sessions, feed, recv, duplex', async () => {
  const words = streamFn(async function* (events) {
    for await (const line of events) yield* line.split(' ');
  });
  const upper = task(async (w) => w.toUpperCase(), { concurrency: 4 });
  const pairs = batch(async (ws) => ws.join('-'), { maxSize: 2 });
  const pipeline = words
    .pipe(upper)
    .pipe(pairs)
    .pipe(async function* (events) {
      for await (const e of events) yield `[${e}]`;
    });
  assert.deepEqual(await pipeline.run(['a b c', 'd e']), ['[A-B]', '[C-D]', '[E]']);

  const sessions = task(async (x) => x * 10).sessions();
  await sessions.send('k1', 1);
  await sessions.send('k2', 2);
  await sessions.send('k1', 3);
  const closed = sessions.close();
  const items = await collect(sessions);
  await closed;
  assert.deepEqual(
    items.filter((i) => i.key === 'k1').map((i) => i.value),
    [10, 30],
  );
  assert.deepEqual(
    items.filter((i) => i.key === 'k2').map((i) => i.value),
    [20],
  );
  const s = upper.open();
  await s.send('x');
  assert.equal(await s.recv(), 'X');
  s.end();

  const { Readable, Writable } = await import('node:stream');
  const { pipeline: pump } = await import('node:stream/promises');
  const got = [];
  await pump(
    Readable.from(['p', 'q']),
    upper.open().duplex(),
    new Writable({
      objectMode: true,
      write(v, _e, cb) {
        got.push(v);
        cb();
      },
    }),
  );
  assert.deepEqual(got, ['P', 'Q']);
});

test('bad settings are refused at the call with the codes the library uses', () => {
  const cases = [
    [() => task('nope'), 'ERR_INVALID_ARG_TYPE'],
    [() => task((x) => x, { concurrency: 0 }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { concurrency: 1.5 }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { ordered: 'yes' }), 'ERR_INVALID_ARG_TYPE'],
    [() => task((x) => x, { retry: { attempts: 0 } }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { retry: { delay: -1 } }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { retry: { delay: Infinity } }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { retry: { maxDelay: NaN } }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { retry: { factor: 0.5 } }), 'ERR_OUT_OF_RANGE'],
    [() => task((x) => x, { retry: { tries: 3 } }), 'ERR_INVALID_ARG_VALUE'],
    [() => task((x) => x, { onError: 'ignore' }), 'ERR_INVALID_ARG_VALUE'],
    [() => task((x) => x, { onError: null }), 'ERR_INVALID_ARG_VALUE'],
    [
      () =>
        task(async function* (x) {
          yield x;
        }),
      'ERR_INVALID_ARG_TYPE',
    ],
    [
      () =>
        batch(
          function* (xs) {
            yield xs;
          },
          { maxSize: 2 },
        ),
      'ERR_INVALID_ARG_TYPE',
    ],
    [() => task((x) => x, { maxSize: 3 }), 'ERR_INVALID_ARG_VALUE'],
    [() => task((x) => x, { buffer: 0 }), 'ERR_OUT_OF_RANGE'],
    [() => batch((x) => x), 'ERR_INVALID_ARG_TYPE'],
    [() => batch((x) => x, {}), 'ERR_OUT_OF_RANGE'],
    [() => batch((x) => x, { maxSize: 0 }), 'ERR_OUT_OF_RANGE'],
    [() => batch((x) => x, { maxSize: 2, minSize: 3 }), 'ERR_OUT_OF_RANGE'],
    [() => batch((x) => x, { maxSize: 2, minSize: 0 }), 'ERR_OUT_OF_RANGE'],
    [() => batch((x) => x, { maxSize: 2, maxWait: -5 }), 'ERR_OUT_OF_RANGE'],
  ];
  for (const [make, code] of cases) assert.throws(make, { code }, make.toString());
});

test('calls in flight may each listen on ctx.signal (as fetch does) without a leak warning, up to the concurrency', async () => {
  const { stderr, stdout } = await run(
    [
      '-e',
      `
    const { task } = require('velo-stream');
    const { setTimeout: sleep } = require('node:timers/promises');
    task(async (x, ctx) => { await sleep(5, undefined, { signal: ctx.signal }); return x; }, { concurrency: 64 })
      .run(Array.from({ length: 200 }, (_, i) => i)).then((out) => console.log(out.length));
  `,
    ],
    { code: 0, timeout: 20_000 },
  );
  assert.equal(stdout, '200\n');
  assert.equal(stderr, '');
});

test('the largest settings are usable: nothing is allocated per slot up front (concurrency 2^32-1 ran out of memory)', async () => {
  const huge = 2 ** 32 - 1;
  assert.deepEqual(await task(async (x) => x, { concurrency: huge, buffer: huge }).run([1, 2, 3]), [1, 2, 3]);
  assert.deepEqual(await batch((xs) => xs, { maxSize: huge, concurrency: huge }).run([1, 2, 3]), [[1, 2, 3]]);
});

test('thenables that are not promises are adopted: a then() that throws fails the attempt, one that calls back twice counts once', async () => {
  const once = { then: (resolve) => resolve('ok') };
  const twice = {
    then: (resolve, reject) => {
      resolve('first');
      resolve('second');
      reject(new Error('late'));
    },
  };
  const throwing = {
    then: () => {
      throw new Error('then threw');
    },
  };
  const s = task((x) => (x === 1 ? once : x === 2 ? twice : throwing), { concurrency: 3, onError: (e) => e.message }).open();
  assert.deepEqual(await collect(s.feed([1, 2, 3])), ['ok', 'first', 'then threw']);
  assert.equal(s.metrics.inFlight, 0);
});

test('a result whose then getter throws (a revoked Proxy) is a failed call, as await would make it, in task() and batch(), for every onError', async () => {
  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const skip = task((n) => (n === 2 ? revoked() : n), { onError: 'skip' });
  assert.deepEqual(await skip.run([1, 2, 3]), [1, 3]);
  const skipping = skip.open();
  await skipping.send(2);
  skipping.end();
  for await (const _ of skipping);
  assert.equal(skipping.metrics.skipped, 1);
  const failing = task((n) => (n === 2 ? revoked() : n), { onError: 'fail' });
  await assert.rejects(failing.run([1, 2, 3]), (e) => e instanceof TypeError && /revoked/.test(e.message));
  const replaced = task((n) => (n === 2 ? revoked() : n), { onError: (error) => `replaced: ${error.constructor.name}` });
  assert.deepEqual(await replaced.run([1, 2, 3]), [1, 'replaced: TypeError', 3]);
  const retried = task((n, ctx) => (n === 2 && ctx.attempt === 1 ? revoked() : n), {
    retry: { attempts: 2, delay: 1 },
    onError: 'fail',
  });
  assert.deepEqual(await retried.run([1, 2, 3]), [1, 2, 3]);
  const batched = batch((items) => (items.includes(2) ? revoked() : items), { maxSize: 1, onError: 'skip' });
  assert.deepEqual(await batched.run([1, 2, 3]), [[1], [3]]);
  // A call started from a microtask (a send right after an await): no uncaught exception, nothing thrown out of send().
  const live = task((n) => (n === 2 ? revoked() : n), { onError: 'skip' }).open();
  await Promise.resolve();
  await live.send(1);
  await live.send(2);
  await live.send(3);
  live.end();
  const outs = [];
  for await (const v of live) outs.push(v);
  assert.deepEqual(outs, [1, 3]);
});

test('a Promise subclass or thenable whose then calls back twice, or resolves then rejects, settles once (the first wins, as with await)', async () => {
  class Twice extends Promise {
    then(ok, err) {
      ok?.('second');
      return super.then(ok, err);
    }
  }
  for (const concurrency of [1, 4]) {
    const subclass = task((n) => (n === 2 ? Twice.resolve(n) : n), { concurrency });
    assert.deepEqual(await subclass.run([1, 2, 3, 4, 5]), [1, 'second', 3, 4, 5]);
    const flip = task((n) => (n === 2 ? { then: (ok, err) => (ok('ok'), err(new Error('late'))) } : n), { concurrency });
    assert.deepEqual(await flip.run([1, 2, 3, 4, 5]), [1, 'ok', 3, 4, 5]);
    const throwsAfter = task(
      (n) =>
        n === 2
          ? {
              then: (ok) => {
                ok('kept');
                throw new Error('after');
              },
            }
          : n,
      { concurrency },
    );
    assert.deepEqual(await throwsAfter.run([1, 2, 3, 4, 5]), [1, 'kept', 3, 4, 5]);
    const batched = batch((items) => (items[0] === 2 ? Twice.resolve(items) : items), { maxSize: 1, concurrency });
    assert.deepEqual(await batched.run([1, 2, 3]), [[1], 'second', [3]]);
  }
});

test('a native promise with a then of its own is followed as await follows it (the native then), in task() and batch()', async () => {
  const owned = (value) => {
    const p = Promise.resolve(value);
    p.then = (ok) => ok('own then');
    return p;
  };
  const viaAwait = await (async () => await owned(2))();
  assert.equal(viaAwait, 2, 'await ignores the own then');
  for (const concurrency of [1, 4]) {
    assert.deepEqual(await task((n) => (n === 2 ? owned(n) : n), { concurrency }).run([1, 2, 3]), [1, 2, 3]);
    assert.deepEqual(await batch((items) => owned(items), { maxSize: 1, concurrency }).run([1, 2]), [[1], [2]]);
  }
  // An own `then` that is not a function, or a getter that throws, and a rejected one: as await follows them.
  const withThen = (p, then) => Object.defineProperty(p, 'then', then);
  const notCallable = () => withThen(Promise.resolve(7), { value: 5 });
  const throwingGetter = () =>
    withThen(Promise.resolve(1), {
      get() {
        throw new Error('then getter');
      },
    });
  const rejected = () => withThen(Promise.reject(Object.assign(new Error('rejected'), { code: 'E_REJECTED' })), { value: 5 });
  assert.equal(await notCallable(), 7);
  assert.equal(await throwingGetter(), 1);
  for (const make of [task, (fn) => batch((items) => fn(items[0]), { maxSize: 1 })]) {
    assert.deepEqual(await make((n) => (n === 1 ? notCallable() : n === 2 ? throwingGetter() : n)).run([1, 2, 3]), [7, 1, 3]);
    await assert.rejects(make(() => rejected()).run([1]), { code: 'E_REJECTED' });
  }
  // So is what an `onError` function returns.
  const never = () => withThen(Promise.resolve(6), { value: () => {} });
  for (const [replace, expected] of [
    [() => withThen(Promise.resolve(6), { value: 5 }), 6],
    [never, 6],
    [
      () =>
        withThen(Promise.resolve(6), {
          get: () => {
            throw new Error('getter');
          },
        }),
      6,
    ],
  ]) {
    assert.equal(await replace(), expected);
    assert.deepEqual(
      await task(
        () => {
          throw new Error('x');
        },
        { onError: replace },
      ).run([1]),
      [expected],
    );
    assert.deepEqual(
      await batch(
        () => {
          throw new Error('x');
        },
        { maxSize: 1, onError: replace },
      ).run([1]),
      [expected],
    );
  }
  await assert.rejects(
    task(
      () => {
        throw new Error('x');
      },
      { onError: rejected },
    ).run([1]),
    { code: 'E_REJECTED' },
  );
  // Its `constructor` read throwing fails the call, as await would.
  const hostile = () => {
    const p = Promise.resolve(1);
    p.then = () => {};
    Object.defineProperty(p, 'constructor', {
      get() {
        throw new Error('constructor getter');
      },
    });
    return p;
  };
  await assert.rejects((async () => await hostile())(), /constructor getter/);
  await assert.rejects(task(() => hostile()).run([1]), /constructor getter/);
});

test('the bound, exactly: with nobody reading, at most 2 x buffer + max(buffer, concurrency) + 2 sends resolve (all of them when fn answers at once)', async () => {
  const { setImmediate: turn } = await import('node:timers/promises');
  /** Sends resolved before they stop, with nobody reading. */
  async function resolvedWithoutReader(fn) {
    const s = fn.open();
    let resolved = 0;
    const sending = (async () => {
      for (let i = 0; i < 10_000; i++) {
        await s.send(i);
        resolved++;
      }
    })().catch(() => {});
    for (let last = -1, still = 0; still < 20;) {
      await turn();
      still = resolved === last ? still + 1 : 0;
      last = resolved;
    }
    await s.cancel();
    await sending;
    return resolved;
  }
  for (const [buffer, concurrency] of [
    [4, 16],
    [16, 4],
    [1, 1],
    [8, 8],
    [2, 5],
    [5, 2],
    [3, 1],
    [1, 3],
  ]) {
    for (const ordered of [true, false]) {
      const bound = 2 * buffer + Math.max(buffer, concurrency) + 2;
      const what = `buffer ${buffer}, concurrency ${concurrency}, ordered ${ordered}`;
      assert.equal(await resolvedWithoutReader(task((x) => x, { buffer, concurrency, ordered })), bound, what);
      assert.ok((await resolvedWithoutReader(task(async (x) => x, { buffer, concurrency, ordered }))) <= bound, what);
    }
  }
});
