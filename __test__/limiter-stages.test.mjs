// Limiters used by task and batch stages (a permit per call attempt) and by stream functions' admission (a permit
// per stream), by counting: an auditor inside the calls, the limiter's own stats, the order handlers start in.
// Needs --expose-gc (a stream dropped while it waits for admission must be collected).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { batch, limiter, streamFn, task } from 'velo-stream';
import { collect, collectUntil, countedSource, deferred, settle } from './helpers/util.mjs';
import { run } from './helpers/child.mjs';

/** A call body that counts calls in flight across every stage it is used by; fails above `max`. */
function audited(max) {
  const a = { now: 0, peak: 0, calls: 0 };
  a.fn = async (x) => {
    a.now++;
    a.calls++;
    a.peak = Math.max(a.peak, a.now);
    assert.ok(a.now <= max, `${a.now} calls at once, limit ${max}`);
    for (let i = x % 4; i >= 0; i--) await null;
    a.now--;
    return x * 2;
  };
  return a;
}

test('one limiter shared by two task stages (and an array of two limiters): at no instant more than N calls in all', async () => {
  const shared = limiter({ concurrency: 3, name: 'shared' });
  const wide = limiter({ concurrency: 100, name: 'wide' });
  const a = audited(3);
  const one = task(a.fn, { concurrency: 16, limiter: shared });
  const two = task(a.fn, { concurrency: 16, limiter: [wide, shared] });
  const xs = Array.from({ length: 300 }, (_, i) => i);
  const [r1, r2] = await Promise.all([collect(one.open().feed(xs)), collect(two.open().feed(xs))]);
  assert.deepEqual(
    r1,
    xs.map((x) => x * 2),
  );
  assert.deepEqual(r2, r1);
  assert.equal(a.peak, 3);
  assert.equal(shared.stats().admitted, 600);
  assert.equal(wide.stats().admitted, 300);
  assert.deepEqual([shared.stats().inUse, wide.stats().inUse], [0, 0], 'all released together when calls settle');
});

test('each retry attempt waits for a permit of its own; a sync result and a sync throw release at once', async () => {
  const l = limiter({ concurrency: 1 });
  let attempts = 0;
  const flaky = task(
    (x, ctx) => {
      attempts++;
      if (ctx.attempt < 3) throw new Error('again');
      return x;
    },
    { retry: { attempts: 3, delay: 0 }, limiter: l },
  );
  assert.deepEqual(await flaky.run([1, 2]), [1, 2]);
  assert.equal(attempts, 6);
  assert.equal(l.stats().admitted, 6);
  assert.equal(l.stats().inUse, 0);
});

test("a task call refused ('reject' mode) fails its attempt: retry and onError apply, and the refusal is counted", async () => {
  const l = limiter({ concurrency: 1, mode: 'reject' });
  const held = await l.acquire();
  const stage = task((x) => x, { limiter: l, onError: (e) => e.code });
  assert.deepEqual(await stage.run([1]), ['ERR_VELO_RATE_LIMITED']);
  assert.equal(l.stats().rejected, 1);
  held.release();
  assert.deepEqual(await stage.run([1]), [1]);
});

test("a task call refused by a later limiter takes nothing from the earlier ones' rates: the call never ran", async () => {
  const rate = limiter({ rate: { limit: 2, period: 60_000 }, name: 'rate' });
  const gate = limiter({ concurrency: 1, mode: 'reject', name: 'gate' });
  const held = await gate.acquire();
  const stage = task((x) => x, { limiter: [rate, gate], onError: (e) => e.code });
  assert.deepEqual(await stage.run([1, 2, 3]), ['ERR_VELO_RATE_LIMITED', 'ERR_VELO_RATE_LIMITED', 'ERR_VELO_RATE_LIMITED']);
  assert.deepEqual([rate.stats().admitted, rate.stats().refunded, rate.stats().inUse], [3, 3, 0]);
  held.release();
  // The rate's two units are both there.
  assert.deepEqual(await stage.run([1, 2]), [1, 2]);
  assert.deepEqual([rate.stats().admitted, rate.stats().refunded], [5, 3]);
});

test('cancelling a stream: calls waiting for a permit leave the line; calls running release theirs when they settle', async () => {
  const l = limiter({ concurrency: 2 });
  const gate = deferred();
  const stage = task(
    async (x, ctx) => {
      await Promise.race([gate.promise, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
      return x;
    },
    { concurrency: 8, limiter: l },
  );
  const s = stage.open();
  for (let i = 0; i < 6; i++) await s.send(i);
  await settle();
  assert.deepEqual([l.stats().inUse, l.stats().waiting], [2, 4]);
  await s.cancel();
  await settle();
  assert.deepEqual([l.stats().inUse, l.stats().waiting], [0, 0]);
  assert.equal(l.stats().admitted, 2);
});

test('batch stages: key/cost get the batch (cost = its length here); a batch costing more than the burst fails with ERR_VELO_LIMIT_COST', async () => {
  const l = limiter({ rate: { limit: 1000, period: 1000, burst: 10 }, cost: (items) => items.length });
  const sizes = batch(async (items) => items.length, { maxSize: 5, limiter: l });
  assert.deepEqual(await sizes.run(Array.from({ length: 12 }, (_, i) => i)), [5, 5, 2]);
  assert.equal(l.stats().admitted, 3);
  const tooBig = batch(async (items) => items.length, { maxSize: 11, limiter: l });
  await assert.rejects(tooBig.run(Array.from({ length: 11 }, (_, i) => i)), { code: 'ERR_VELO_LIMIT_COST' });
});

test('the limiter option is checked at the call', () => {
  for (const bad of [5, {}, [], [limiter({ concurrency: 1 }), 'x'], { acquire() {} }]) {
    assert.throws(() => task((x) => x, { limiter: bad }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => streamFn(async function* () {}, { limiter: bad }), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  assert.throws(() => streamFn(async function* () {}, { typo: 1 }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: 'Unknown option "typo". Known options: limiter, buffer, idleTimeout, maxConcurrent, name',
  });
  // Any object with the Limiter interface plugs in (the Redis limiter does).
  const foreign = { name: 'f', acquire: async () => ({ release() {} }), tryAcquire: () => undefined, stats: () => ({}) };
  task((x) => x, { limiter: foreign });
});

test('the same limiter twice in one stage is refused (a call would wait for a permit it holds itself)', () => {
  const l = limiter({ concurrency: 1 });
  for (const make of [
    (limiterOption) => task((x) => x, { limiter: limiterOption }),
    (limiterOption) => batch((xs) => xs, { maxSize: 2, limiter: limiterOption }),
    (limiterOption) => streamFn(async function* () {}, { limiter: limiterOption }),
  ]) {
    assert.throws(() => make([l, l]), { code: 'ERR_INVALID_ARG_VALUE', message: /the same limiter is given twice/ });
    make([l, limiter({ concurrency: 1 })]);
  }
});

test('a limiter of another make that answers no permit fails the call with ERR_INVALID_RETURN_VALUE; a release that throws or rejects counts as given back', async () => {
  const foreign = (tryAcquire, acquire = async () => ({ release() {} })) => ({
    name: 'foreign',
    tryAcquire,
    acquire,
    stats: () => ({}),
  });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    for (const answer of [{}, null, 5, revoked.proxy, { release: 'x' }]) {
      const viaTry = task(async (x) => x, { limiter: foreign(() => answer) });
      await assert.rejects(viaTry.run([1]), { code: 'ERR_INVALID_RETURN_VALUE' });
      // (An async acquire resolving to a revoked Proxy rejects by itself: resolving reads its `then`.)
      if (answer !== revoked.proxy) {
        const viaAcquire = task(async (x) => x, {
          limiter: foreign(
            () => undefined,
            async () => answer,
          ),
        });
        await assert.rejects(viaAcquire.run([1]), { code: 'ERR_INVALID_RETURN_VALUE' });
      }
      const admitted = streamFn(
        async function* (events) {
          for await (const e of events) yield e;
        },
        { limiter: foreign(() => answer) },
      );
      assert.throws(() => admitted.open(), { code: 'ERR_INVALID_RETURN_VALUE' });
    }
    // A permit whose release() throws: the calls' results stand, nothing is left unhandled.
    const throwing = foreign(() => ({
      release() {
        throw new Error('release broke');
      },
    }));
    assert.deepEqual(await task(async (x) => x * 2, { limiter: throwing }).run([1, 2, 3]), [2, 4, 6]);
    assert.deepEqual(await task((x) => x * 2, { limiter: throwing }).run([1, 2]), [2, 4]);
    // One whose release() is async and rejects, or returns a thenable whose then throws: the same, for task calls
    // and for a stream's admission.
    for (const release of [
      async () => {
        throw new Error('async release broke');
      },
      () => ({
        then() {
          throw new Error('then broke');
        },
      }),
    ]) {
      const rejecting = () => foreign(() => ({ release }));
      assert.deepEqual(await task(async (x) => x * 2, { limiter: rejecting() }).run([1, 2]), [2, 4]);
      const admitted = streamFn(
        async function* (events) {
          for await (const e of events) yield e;
        },
        { limiter: rejecting() },
      );
      assert.deepEqual(await admitted.run([1, 2]), [1, 2]);
    }
    await settle();
    await sleep(10);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a bad fairness.by or priority is refused also when the permit is free (task stages and stream admission try first)', async () => {
  const boom = () => {
    throw new Error('boom');
  };
  for (const options of [
    { fairness: { by: boom } },
    { fairness: { by: () => '' } },
    { priority: () => NaN },
    { priority: boom },
  ]) {
    const code = 'fairness' in options ? 'ERR_VELO_LIMIT_TENANT' : 'ERR_VELO_LIMIT_PRIORITY';
    const l = limiter({ concurrency: 4, ...options });
    await assert.rejects(task(async (x) => x, { limiter: l }).run([1]), { code });
    assert.throws(() => l.tryAcquire({}), { code });
    const fn = streamFn(async function* () {}, { limiter: l });
    assert.throws(() => fn.open(), { code });
    assert.equal(l.stats().inUse, 0, 'nothing held');
    await l.close();
  }
});

// ----- stream admission -----

const echoFn = (l, options = {}) => {
  const started = [];
  const fn = streamFn(
    async function* (events, ctx) {
      started.push(ctx.id);
      for await (const e of events) yield e;
    },
    { limiter: l, ...options },
  );
  return { fn, started };
};

test('throttle: open() returns at once, the stream takes sends into its buffer, and its handler starts when admitted (FIFO)', async () => {
  const l = limiter({ concurrency: 1 });
  const { fn, started } = echoFn(l, { buffer: 4 });
  const a = fn.open();
  const b = fn.open();
  const c = fn.open();
  for (let i = 0; i < 4; i++) await b.send(i);
  await settle();
  assert.deepEqual(started, [a.id]);
  assert.deepEqual([b.state, l.stats().waiting, b.metrics.bufferedIn], ['open', 2, 4]);
  a.end();
  await collect(a);
  await settle();
  assert.deepEqual(started, [a.id, b.id], 'b, first in line, starts when a ends');
  b.end();
  assert.deepEqual(await collect(b), [0, 1, 2, 3]);
  c.end();
  await collect(c);
  assert.deepEqual(started, [a.id, b.id, c.id]);
  assert.equal(l.stats().inUse, 0);
});

test('the idle clock is held while a stream waits for admission: it is not ended by it, and runs once admitted', async () => {
  const l = limiter({ concurrency: 1 });
  const { fn, started } = echoFn(l, { idleTimeout: 40 });
  const a = fn.open();
  const b = fn.open();
  // a stays busy (a send every 10 ms) for 10 of b's idle timeouts while b waits.
  for (let i = 0; i < 40; i++) {
    await a.send(i);
    await a.recv();
    await sleep(10);
  }
  assert.equal(b.state, 'open', 'b waited for admission only: its input was not ended');
  await b.send('kept');
  a.end();
  await collect(a);
  // Admitted now: b's idle clock runs and ends its input.
  assert.deepEqual(await collect(b), ['kept']);
  assert.deepEqual(started, [a.id, b.id]);
});

test("'reject' mode: open() throws ERR_VELO_RATE_LIMITED synchronously, counted by the limiter and the function, and takes no maxConcurrent slot", async () => {
  const l = limiter({ concurrency: 1, mode: 'reject', name: 'gate' });
  const { fn } = echoFn(l, { maxConcurrent: 5 });
  const a = fn.open();
  assert.throws(() => fn.open(), { code: 'ERR_VELO_RATE_LIMITED', limiter: 'gate' });
  assert.equal(l.stats().rejected, 1);
  assert.deepEqual([fn.stats().open, fn.stats().opened, fn.stats().rejected], [1, 1, 1]);
  // run() is refused the same way, and counted.
  await assert.rejects(fn.run([1]), { code: 'ERR_VELO_RATE_LIMITED' });
  assert.equal(fn.stats().rejected, 2);
  a.end();
  await collect(a);
  const b = fn.open();
  b.end();
  await collect(b);
});

test("an open refused at maxConcurrent spends no limiter's budget: a rate's tokens are kept for the next open", async () => {
  const l = limiter({ rate: { limit: 2, period: 60_000 }, mode: 'reject', name: 'rate' });
  const { fn } = echoFn(l, { maxConcurrent: 1 });
  const a = fn.open();
  for (let i = 0; i < 3; i++) assert.throws(() => fn.open(), { code: 'ERR_VELO_STREAM_LIMIT' });
  await assert.rejects(fn.run([1]), { code: 'ERR_VELO_STREAM_LIMIT' });
  assert.deepEqual([l.stats().admitted, l.stats().rejected, fn.stats().rejected], [1, 0, 4]);
  a.end();
  await collect(a);
  // The second token is still there; the third open is the rate's refusal.
  const b = fn.open();
  b.end();
  await collect(b);
  assert.throws(() => fn.open(), { code: 'ERR_VELO_RATE_LIMITED', limiter: 'rate' });
});

test("an open refused by a later 'reject' limiter spends none of the earlier limiters' rates", async () => {
  const rate = limiter({ rate: { limit: 3, period: 60_000 }, mode: 'reject', name: 'rate' });
  const perKey = limiter({ rate: { limit: 5, period: 60_000 }, key: (item) => item.key, cost: (item) => item.cost ?? 1 });
  const conc = limiter({ concurrency: 1, mode: 'reject', name: 'conc' });
  const { fn } = echoFn([rate, perKey, conc]);
  const a = fn.open({ key: 't', cost: 2 });
  for (let i = 0; i < 4; i++)
    assert.throws(() => fn.open({ key: 't', cost: 2 }), { code: 'ERR_VELO_RATE_LIMITED', limiter: 'conc' });
  assert.deepEqual(
    [rate.stats().admitted, rate.stats().refunded, rate.stats().inUse, perKey.stats().admitted, perKey.stats().refunded],
    [5, 4, 1, 5, 4],
  );
  assert.equal(conc.stats().rejected, 4);
  a.end();
  await collect(a);
  // Two of the rate's three units left, and three of the key's five (cost 2 each: one open more).
  const b = fn.open({ key: 't', cost: 2 });
  b.end();
  await collect(b);
  const c = fn.open({ key: 'u' });
  c.end();
  await collect(c);
  assert.throws(() => fn.open({ key: 'v' }), { code: 'ERR_VELO_RATE_LIMITED', limiter: 'rate' });
  assert.deepEqual([rate.stats().admitted - rate.stats().refunded, perKey.stats().admitted - perKey.stats().refunded], [3, 3]);
});

test('a stream refused or cancelled after waiting for an earlier limiter gives its units back: its handler never ran', async () => {
  for (const how of ['refused', 'cancelled']) {
    const rate = limiter({ concurrency: 1, rate: { limit: 2, period: 60_000 }, name: 'rate' });
    const conc = limiter({ concurrency: 1, mode: how === 'refused' ? 'reject' : 'throttle', name: 'conc' });
    const { fn, started } = echoFn([rate, conc]);
    const held = await rate.acquire();
    const heldConc = await conc.acquire();
    const s = fn.open();
    const read = collect(s).then(
      () => 'ended',
      (error) => error.code,
    );
    await settle();
    held.release();
    await settle();
    // Granted by the rate, the stream waits for (or is refused by) the next limiter.
    const granted = rate.stats().admitted;
    if (how === 'cancelled') {
      assert.equal(conc.stats().waiting, 1, how);
      assert.equal(granted, 2, how);
      await s.cancel();
    }
    assert.equal(await read, how === 'refused' ? 'ERR_VELO_RATE_LIMITED' : 'ended', how);
    assert.deepEqual(started, [], how);
    // The rate's second unit is there; the stream's grant stays counted (a counter never goes down) and is refunded.
    assert.deepEqual([rate.stats().admitted, rate.stats().refunded], [granted, 1], how);
    const second = rate.tryAcquire();
    assert.ok(second !== undefined, `${how}: the rate's second unit`);
    assert.deepEqual([rate.stats().admitted, rate.stats().refunded, rate.stats().inUse], [3, 1, 1], how);
    second.release();
    heldConc.release();
  }
});

test('cancel of a stream waiting for admission leaves the line', async () => {
  const l = limiter({ concurrency: 1 });
  const { fn, started } = echoFn(l);
  const a = fn.open();
  const b = fn.open();
  await settle();
  assert.equal(l.stats().waiting, 1);
  await b.cancel();
  assert.equal(l.stats().waiting, 0);
  a.end();
  await collect(a);
  assert.deepEqual(started, [a.id]);
  assert.equal(l.stats().inUse, 0);
});

test('a stream waiting for admission and dropped is collected, and its place in line given up', async () => {
  const l = limiter({ concurrency: 1 });
  const { fn } = echoFn(l);
  const a = fn.open();
  (() => {
    const dropped = fn.open();
    void dropped.send('x');
  })();
  await settle();
  assert.equal(l.stats().waiting, 1);
  await collectUntil(() => l.stats().waiting === 0, 'the dropped stream leaves the line');
  a.end();
  await collect(a);
  assert.equal(l.stats().inUse, 0);
});

for (const [where, dropAdmitted, idleTimeout] of [
  [
    'paused at a yield behind a read feed',
    async (fn) => {
      const feed = fn.open().feed(countedSource(100).source);
      assert.equal((await feed.next()).value, 0);
    },
  ],
  [
    'paused at a full output buffer, never read',
    async (fn) => {
      const s = fn.open();
      for (let i = 0; i < 10; i++) s.send(i).catch(() => {});
      await settle();
    },
  ],
  [
    // (With no idle clock, which would hold it until its idle end.)
    'waiting for input',
    async (fn) => {
      fn.open();
      await settle();
    },
    0,
  ],
]) {
  test(`a stream admitted and dropped with its handler ${where} is collected and gives its permit back`, async () => {
    const l = limiter({ concurrency: 1 });
    const { fn, started } = echoFn(l, { buffer: 2, ...(idleTimeout === undefined ? {} : { idleTimeout }) });
    await dropAdmitted(fn);
    assert.equal(started.length, 1);
    assert.equal(l.stats().inUse, 1);
    await collectUntil(() => l.stats().inUse === 0, 'the dropped stream gives its permit back');
    // The next stream is admitted and runs.
    assert.deepEqual(await fn.run([1, 2, 3]), [1, 2, 3]);
    assert.equal(l.stats().inUse, 0);
  });
}

for (const read of ['run()', 'feed()', 'recv()', 'for await']) {
  test(`a stream waiting for admission while ${read} waits on it is not collected: the read settles once admitted`, async () => {
    // (Only the read's promise is referenced here, as in \`await fn.run(events)\`: the limiter holds a waiting
    // stream weakly, and a read must hold it.)
    const l = limiter({ concurrency: 1 });
    const fn = streamFn(
      async function* (events) {
        for await (const e of events) yield e * 10;
      },
      { limiter: l },
    );
    const held = await l.acquire();
    const reading = (() => {
      if (read === 'run()') return fn.run([1, 2, 3]);
      if (read === 'feed()') return collect(fn.open().feed([1, 2, 3]));
      const s = fn.open();
      for (const e of [1, 2, 3]) void s.send(e);
      s.end();
      if (read === 'recv()') return Promise.all([s.recv(), s.recv(), s.recv()]);
      return collect(s);
    })();
    await settle();
    assert.equal(l.stats().waiting, 1);
    for (let i = 0; i < 20; i++) {
      global.gc();
      await sleep(2);
    }
    assert.equal(l.stats().waiting, 1, 'still in line');
    held.release();
    assert.deepEqual(await reading, [10, 20, 30]);
    await settle();
    assert.equal(l.stats().inUse, 0);
    assert.equal(fn.stats().completed, 1);
  });
}

for (const position of [0, 1, 2]) {
  test(`a three-stage pipe dropped after one read, its stage ${position + 1} limited: collected, it gives the permit back`, async () => {
    const l = limiter({ concurrency: 1 });
    const stage = (k) =>
      streamFn(
        async function* (events) {
          for await (const e of events) yield e + k;
        },
        { buffer: 2, idleTimeout: 0, ...(k === position ? { limiter: l } : {}) },
      );
    const pipe = stage(0).pipe(stage(1)).pipe(stage(2));
    await (async () => {
      const feed = pipe.open().feed(countedSource(100).source);
      assert.equal((await feed.next()).value, 3);
    })();
    assert.equal(l.stats().inUse, 1);
    await collectUntil(() => l.stats().inUse === 0, 'the dropped pipe gives its permit back');
    assert.deepEqual(await pipe.run([0, 1]), [3, 4]);
    assert.equal(l.stats().inUse, 0);
  });
}

test('sessions: a live session keeps its permit through collections; a sessions object dropped with it gives it back', async () => {
  const l = limiter({ concurrency: 1 });
  const { fn } = echoFn(l, { idleTimeout: 0 });
  const kept = fn.sessions();
  await kept.send('a', 1);
  await settle();
  for (let i = 0; i < 50; i++) {
    global.gc();
    await sleep(2);
  }
  assert.equal(l.stats().inUse, 1, 'a live session of a referenced sessions object keeps its permit');
  await kept.close();
  assert.equal(l.stats().inUse, 0);
  await (async () => {
    const dropped = fn.sessions();
    await dropped.send('b', 1);
    await settle();
  })();
  assert.equal(l.stats().inUse, 1);
  await collectUntil(() => l.stats().inUse === 0, 'the dropped sessions object gives its permit back');
  assert.deepEqual(await fn.run([1, 2]), [1, 2]);
});

for (const shape of ['a stream function', 'a pipe']) {
  test(`sessions of ${shape}: a sessions object dropped with more sessions than permits (idleTimeout 0) is collected and gives every permit back`, async () => {
    const l = limiter({ concurrency: 2 });
    const { fn } = echoFn(l, { idleTimeout: 0 });
    const sessionsOf =
      shape === 'a pipe'
        ? fn.pipe(async function* (events) {
            for await (const e of events) yield e;
          })
        : fn;
    await (async () => {
      const dropped = sessionsOf.sessions();
      // Two sessions take the permits and wait for input for good; three wait for a permit, read only by the
      // sessions object's own forwarders.
      for (const key of ['a', 'b', 'c', 'd', 'e']) await dropped.send(key, 1);
      await settle();
    })();
    assert.deepEqual([l.stats().inUse, l.stats().waiting], [2, 3]);
    await collectUntil(
      () => l.stats().inUse === 0 && l.stats().waiting === 0,
      'the dropped sessions give every permit and place back',
    );
    assert.deepEqual(await fn.run([1, 2]), [1, 2]);
  });
}

test('sessions dropped with more sessions than permits (idleTimeout 0): the process exits by itself', async () => {
  const { stdout } = await run(
    [
      '--expose-gc',
      '-e',
      `
      const { limiter, streamFn } = require('velo-stream');
      const l = limiter({ concurrency: 1 });
      const fn = streamFn(async function* (events) { for await (const e of events) yield e; }, { limiter: l, idleTimeout: 0 });
      (async () => {
        await (async () => {
          const sessions = fn.sessions();
          await sessions.send('a', 1);
          await sessions.send('b', 1);
        })();
        for (let i = 0; i < 20 && l.stats().inUse > 0; i++) { global.gc(); await new Promise((r) => setTimeout(r, 5)); }
        process.on('exit', () => console.log('exit', l.stats().inUse, l.stats().waiting));
      })();`,
    ],
    { timeout: 20_000 },
  );
  assert.equal(stdout, 'exit 0 0\n');
});

test('a pipe whose first stage waits for admission: run() under collections settles; dropped unread, it gives up its place', async () => {
  const l = limiter({ concurrency: 1 });
  const limited = streamFn(
    async function* (events) {
      for await (const e of events) yield e * 10;
    },
    { limiter: l },
  );
  const p = limited.pipe(async function* (events) {
    for await (const e of events) yield e + 1;
  });
  const held = await l.acquire();
  const reading = p.run([1, 2, 3]);
  (() => {
    const dropped = p.open();
    void dropped.send(9);
  })();
  await settle();
  assert.equal(l.stats().waiting, 2);
  await collectUntil(() => l.stats().waiting <= 1, 'the dropped pipe leaves the line');
  held.release();
  assert.deepEqual(await reading, [11, 21, 31]);
  await settle();
  assert.equal(l.stats().inUse, 0);
  assert.equal(l.stats().waiting, 0);
});

/**
 * Sessions of a function admitted by `l`: each takes one event ({ tenant }) and ends. `plan` lists the keys' tenants
 * in the order their sends are made, before the first session ends; returns the tenants in the order their
 * sessions' handlers started, and what the limiter's functions were given.
 */
async function sessionStarts(l, plan) {
  const order = [];
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        order.push(e.tenant);
        yield e;
        return;
      }
    },
    { limiter: l },
  );
  await runSessions(fn, plan);
  return order;
}

/** Sends `{ tenant }` to a session of key `<tenant>:<i>` for each of `plan`, all at once; reads one output each. */
async function runSessions(fn, plan) {
  const sessions = fn.sessions({ idleTimeout: 0 });
  await Promise.all(plan.map((tenant, i) => sessions.send(`${tenant}:${i}`, { tenant })));
  let outputs = 0;
  for await (const item of sessions) {
    assert.equal(item.error, undefined);
    if (++outputs === plan.length) break;
  }
  await sessions.close();
}

test("sessions: a stream function's limiters get each session's key ({ id, key }), so fairness by tenant spreads admissions across tenants", async () => {
  const plan = [...Array(30).fill('hot'), 'calm', 'calm', 'calm'];
  const seen = [];
  const fair = limiter({
    concurrency: 1,
    fairness: {
      by: (item) => {
        seen.push(item);
        return String(item.key).split(':')[0];
      },
    },
  });
  const order = await sessionStarts(fair, plan);
  assert.equal(order.length, plan.length);
  // Asked at open() ({ id: '', key }), then while the stream waits for admission ({ id, key }).
  assert.ok(
    seen.length > 0 && seen.every((item) => typeof item.id === 'string' && /^(hot|calm):\d+$/.test(item.key)),
    JSON.stringify(seen.slice(0, 3)),
  );
  // The first session was admitted at open; then two tenants wait, so calm's p-th session starts within 1 + 2p.
  const calm = order.flatMap((tenant, i) => (tenant === 'calm' ? [i + 1] : []));
  assert.deepEqual(calm, [3, 5, 7]);
  assert.equal(fair.stats().inUse, 0);
  await fair.close();

  // First come, first served: calm's sessions start after every hot one.
  const fifo = limiter({ concurrency: 1 });
  const starved = (await sessionStarts(fifo, plan)).flatMap((tenant, i) => (tenant === 'calm' ? [i + 1] : []));
  assert.deepEqual(starved, [31, 32, 33]);
  await fifo.close();
});

test("sessions: a limit per key of the session's key (here its tenant): at most one session per tenant at once, tenants side by side (a pipe's stages too)", async () => {
  const now = new Map();
  let peak = 0;
  let running = 0;
  let together = 0;
  const l = limiter({ concurrency: 1, key: (item) => String(item.key).split(':')[0] });
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        const n = (now.get(e.tenant) ?? 0) + 1;
        now.set(e.tenant, n);
        peak = Math.max(peak, n);
        together = Math.max(together, ++running);
        await sleep(1);
        running--;
        now.set(e.tenant, n - 1);
        yield e;
        return;
      }
    },
    { limiter: l },
  );
  const pipe = fn.pipe(
    streamFn(async function* (events) {
      for await (const e of events) yield e;
    }),
  );
  for (const f of [fn, pipe]) {
    await runSessions(
      f,
      Array.from({ length: 12 }, (_, i) => ['a', 'b', 'c'][i % 3]),
    );
    assert.equal(peak, 1, 'one session per tenant at a time');
    assert.ok(together >= 2, `sessions of different tenants run at once (${together} at most)`);
    together = 0;
    assert.ok(l.stats().admitted >= 12);
    assert.equal(l.stats().inUse, 0);
  }
});
